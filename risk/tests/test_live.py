"""The live push over /ws/health/: in memory and over Redis, authenticated users only."""

from uuid import uuid4

import pytest
from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from channels.layers import InMemoryChannelLayer, channel_layers
from channels.testing import WebsocketCommunicator
from channels_redis.core import RedisChannelLayer
from django.db import connections
from django.test import Client

from conftest import redis_url
from risk.tasks import check_risk
from risk.tests.conftest import CLOSES, VOLUMES, add_candles, open_position
from tradingsite import live
from tradingsite.asgi import application

# Database access from the consumer and from database_sync_to_async runs on other
# connections: the data must be committed (STACK.md pitfall 3).
pytestmark = pytest.mark.django_db(transaction=True)

ORIGIN = (b"origin", b"http://127.0.0.1")
HOST = (b"host", b"127.0.0.1")


@pytest.fixture(autouse=True)
async def _close_worker_connections():
    """The consumer's and the check's database connections live on asgiref's worker thread."""
    yield
    await database_sync_to_async(connections.close_all)()


@pytest.fixture
def use_layer():
    """Install a channel layer for this test only (layers are otherwise read once per process)."""
    previous = dict(channel_layers.backends)

    def install(layer):
        channel_layers.backends["default"] = layer
        return layer

    yield install
    channel_layers.backends.clear()
    channel_layers.backends.update(previous)


@pytest.fixture
def session_cookie(viewer_user) -> bytes:
    client = Client()
    client.force_login(viewer_user)
    return f"sessionid={client.cookies['sessionid'].value}".encode()


@pytest.fixture
def warning_position(frozen, risk_strategy):
    position = open_position(risk_strategy)
    add_candles("ETH/USDT:USDT", CLOSES, VOLUMES)
    return position


async def _events_after_check(session_cookie: bytes, count: int) -> list[dict]:
    communicator = WebsocketCommunicator(application, "/ws/health/",
                                         headers=[HOST, ORIGIN, (b"cookie", session_cookie)])
    connected, _ = await communicator.connect()
    assert connected
    assert await communicator.receive_json_from(timeout=5) == {
        "event": "hello", "payload": {"user": "viewer"}}
    await database_sync_to_async(check_risk)()  # the beat task, run in-process
    events = [await communicator.receive_json_from(timeout=5) for _ in range(count)]
    assert await communicator.receive_nothing(timeout=0.05)
    await communicator.disconnect()
    return events


def _assert_health_push(events: list[dict], position_id: int) -> None:
    assert [e["event"] for e in events] == ["health.updated", "alert.raised"]
    health = events[0]["payload"]
    assert health["checked_at"] == "2026-01-05T12:00:00Z"
    assert health["positions"] == [{
        "id": position_id, "strategy": "scalper", "symbol": "ETH/USDT:USDT", "side": "long",
        "state": "OPEN", "score": 59.65,
        "components": {"time_at_risk": 75.0, "drawdown": 60.0, "volume": 60.0,
                       "volatility": 50.0, "profitability": 47.67},
        "danger_level": "WARNING", "health_danger_level": "WARNING",
        "minutes_to_timeout": 180.0, "last_price": "99.9600000000",
        "unrealised_pnl": -0.28, "data_complete": True, "missing": [],
        "checked_at": "2026-01-05T12:00:00Z"}]
    alert = events[1]["payload"]
    assert (alert["position"], alert["kind"], alert["severity"], alert["symbol"],
            alert["is_open"]) == (position_id, "danger_warning", "WARNING", "ETH/USDT:USDT", True)


async def test_a_dashboard_receives_the_health_push_on_the_in_memory_layer(
        use_layer, session_cookie, warning_position):
    use_layer(InMemoryChannelLayer())
    _assert_health_push(await _events_after_check(session_cookie, 2), warning_position.pk)


@pytest.mark.redis
async def test_a_dashboard_receives_the_health_push_over_redis(
        use_layer, session_cookie, warning_position):
    layer = use_layer(RedisChannelLayer(hosts=[redis_url()], prefix=f"risk-{uuid4().hex[:8]}"))
    try:
        _assert_health_push(await _events_after_check(session_cookie, 2), warning_position.pk)
    finally:
        await sync_to_async(live.shutdown)()  # its connections belong to the publisher's loop
        await layer.flush()
        await layer.close_pools()


async def test_an_anonymous_websocket_is_refused(use_layer, db):
    use_layer(InMemoryChannelLayer())
    communicator = WebsocketCommunicator(application, "/ws/health/", headers=[HOST, ORIGIN])
    connected, code = await communicator.connect()
    assert (connected, code) == (False, 4401)


async def test_a_websocket_from_a_foreign_origin_is_refused(use_layer, session_cookie):
    use_layer(InMemoryChannelLayer())
    communicator = WebsocketCommunicator(application, "/ws/health/", headers=[
        HOST, (b"origin", b"http://evil.example"), (b"cookie", session_cookie)])
    connected, _ = await communicator.connect()
    assert connected is False
