import asyncio
import threading

from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer

from tradingsite import live
from tradingsite.live import LIVE_GROUP, send_many


async def test_send_many_delivers_every_event_in_order():
    layer = get_channel_layer()
    channel = await layer.new_channel()
    await layer.group_add(LIVE_GROUP, channel)
    try:
        await sync_to_async(send_many)([("health.updated", {"n": 1}), ("alert.raised", {"n": 2})])
        received = [await layer.receive(channel), await layer.receive(channel)]
    finally:
        await layer.group_discard(LIVE_GROUP, channel)
    assert [(m["event"], m["payload"]) for m in received] == [
        ("health.updated", {"n": 1}), ("alert.raised", {"n": 2})]


class _StuckLayer:
    """A cross-process layer that hangs until released (Redis unreachable)."""

    def __init__(self) -> None:
        self.started, self.released = threading.Event(), threading.Event()
        self.sent: list[int] = []

    async def group_send(self, group: str, message: dict) -> None:
        self.started.set()
        await asyncio.to_thread(self.released.wait, 5)
        self.sent.append(message["payload"]["n"])


def test_a_hung_layer_keeps_only_the_newest_bursts_and_never_blocks_the_caller(monkeypatch):
    live.shutdown()
    layer = _StuckLayer()
    monkeypatch.setattr(live, "get_channel_layer", lambda: layer)
    monkeypatch.setattr(live, "PUBLISHER_BACKLOG", 3)

    live.send_now("health.updated", {"n": 0})
    assert layer.started.wait(5)  # burst 0 is with the layer, which hangs
    for n in range(1, 6):
        live.send_now("health.updated", {"n": n})  # returns at once all the same
    layer.released.set()
    live.flush()

    assert layer.sent == [0, 3, 4, 5]  # 1 and 2 were the oldest once the backlog was full
    assert live._publisher.dropped == 2
