"""The scale-out path on real services: a Celery worker on the Redis broker, the Redis layer.

These run in both passes whenever Redis is reachable (REQUIRE_SERVICES=1 makes a
missing Redis an error); in the PostgreSQL pass the worker's task reads PostgreSQL.
"""

import asyncio
import uuid

import pytest
from asgiref.sync import async_to_sync
from celery import Celery
from celery.contrib.testing.worker import start_worker
from channels.layers import get_channel_layer
from channels_redis.core import RedisChannelLayer
from django.db import connection

from conftest import redis_url
from tradingsite import live
from tradingsite.celery import app as platform_app
from tradingsite.live import LIVE_GROUP, send_now
from tradingsite.testing.factories import PositionFactory

pytestmark = pytest.mark.redis


@pytest.fixture
def redis_app(redis_client):
    """The platform's Celery configuration, with broker and results on the test Redis."""
    app = Celery("tradingsite-redis-test", set_as_current=False)
    app.config_from_object("django.conf:settings", namespace="CELERY")
    app.conf.update(broker_url=redis_url(), result_backend=redis_url(),
                    broker_transport_options={"visibility_timeout": 3600})

    @app.task(name="tests.open_positions_seen_by_worker", ignore_result=False)
    def open_positions_seen_by_worker() -> dict:
        from lifecycle.models import Position

        return {"vendor": connection.vendor, "symbols": sorted(
            Position.objects.values_list("symbol", flat=True))}

    yield app
    platform_app.set_current()
    platform_app.set_default()


@pytest.mark.django_db(transaction=True)
def test_a_worker_on_the_redis_broker_runs_a_task_against_the_database(redis_app):
    PositionFactory(symbol="BTC/USDT:USDT")
    PositionFactory(symbol="ETH/USDT:USDT")
    with start_worker(redis_app, pool="solo", perform_ping_check=False, shutdown_timeout=20):
        result = redis_app.tasks["tests.open_positions_seen_by_worker"].delay()
        seen = result.get(timeout=20)
        pinged = redis_app.tasks["tradingsite.tasks.ping"].apply_async(
            args=["over-redis"], ignore_result=False).get(timeout=20)
    assert seen == {"vendor": connection.vendor, "symbols": ["BTC/USDT:USDT", "ETH/USDT:USDT"]}
    assert pinged == "over-redis"


async def test_group_send_reaches_a_subscriber_over_channels_redis(redis_client):
    layer = RedisChannelLayer(hosts=[redis_url()], prefix=f"test-{uuid.uuid4().hex[:8]}")
    channel = await layer.new_channel()
    await layer.group_add(LIVE_GROUP, channel)
    await layer.group_send(LIVE_GROUP, {"type": "live.event", "event": "position.state",
                                        "payload": {"id": 7, "state": "WARNING"}})
    message = await asyncio.wait_for(layer.receive(channel), timeout=5)
    assert message == {"type": "live.event", "event": "position.state",
                       "payload": {"id": 7, "state": "WARNING"}}
    await layer.flush()


def test_the_platform_publish_helper_goes_through_the_redis_layer(settings, redis_client):
    settings.CHANNEL_LAYERS = {"default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        "CONFIG": {"hosts": [redis_url()], "prefix": f"test-{uuid.uuid4().hex[:8]}"}}}
    layer = get_channel_layer()
    assert isinstance(layer, RedisChannelLayer)
    channel = async_to_sync(layer.new_channel)()
    async_to_sync(layer.group_add)(LIVE_GROUP, channel)

    send_now("alert.raised", {"position": 3, "severity": "CRITICAL"})

    async def receive() -> dict:
        return await asyncio.wait_for(layer.receive(channel), timeout=5)

    assert async_to_sync(receive)() == {"type": "live.event", "event": "alert.raised",
                                        "payload": {"position": 3, "severity": "CRITICAL"}}


def test_a_burst_of_events_is_queued_at_once_and_arrives_in_order(settings, redis_client):
    """On Redis the caller only queues: the process's publisher sends, in order."""
    settings.CHANNEL_LAYERS = {"default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        "CONFIG": {"hosts": [redis_url()], "prefix": f"test-{uuid.uuid4().hex[:8]}"}}}
    layer = get_channel_layer()
    channel = async_to_sync(layer.new_channel)()
    async_to_sync(layer.group_add)(LIVE_GROUP, channel)

    for n in range(50):
        send_now("health.updated", {"n": n})
    live.flush()

    async def receive_all() -> list[int]:
        return [(await asyncio.wait_for(layer.receive(channel), timeout=5))["payload"]["n"]
                for _ in range(50)]

    assert async_to_sync(receive_all)() == list(range(50))
