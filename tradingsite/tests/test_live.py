from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer

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
