import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction

from tradingsite.live import LIVE_GROUP, broadcast_many


@pytest.mark.django_db(transaction=True)
def test_broadcast_many_sends_in_order_after_commit():
    layer = get_channel_layer()
    channel = async_to_sync(layer.new_channel)()
    async_to_sync(layer.group_add)(LIVE_GROUP, channel)
    try:
        with transaction.atomic():
            broadcast_many([("health.updated", {"n": 1}), ("alert.raised", {"n": 2})])
        first = async_to_sync(layer.receive)(channel)
        second = async_to_sync(layer.receive)(channel)
    finally:
        async_to_sync(layer.group_discard)(LIVE_GROUP, channel)
    assert [(m["event"], m["payload"]) for m in (first, second)] == [
        ("health.updated", {"n": 1}), ("alert.raised", {"n": 2})]
