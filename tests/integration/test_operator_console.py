"""The operator's console end to end: the API and the dashboard over a supervised position,
and the live push a browser receives while the platform closes it."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
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
from lifecycle.services import position_open
from tests.integration.conftest import ETH, START, paper_account, strategy_on, write_candles
from tradingsite import live
from tradingsite.asgi import application

pytestmark = pytest.mark.integration

RISK = {"riskMonitoring": {"checkIntervalCandles": 1, "volumeRecentCandles": 2,
                           "volumeLookbackCandles": 4, "volatilityShortCandles": 2,
                           "volatilityLongCandles": 24, "feeRatePercent": 0.05},
        "lifecycle": {"warningThresholdMinutes": 30, "maxHoldingTimeMinutes": 60}}


@pytest.mark.django_db
def test_a_bot_hands_over_a_position_the_operator_watches_and_closes_it_from_the_api(
        platform, client, staff_user):
    account = paper_account()
    strategy = strategy_on(account, "handed-over", **RISK)
    client.force_login(staff_user)
    platform.schedule("risk.tasks.check_risk", 300)
    platform.schedule("lifecycle.tasks.check_timeouts", 60)
    write_candles(ETH, ["2500"] * 25, end=START)

    handed = client.post("/api/lifecycle/positions", {
        "strategy": strategy.name, "symbol": ETH, "side": "long", "quantity": "2",
        "entry_price": "2500", "entry_fee": "2.75", "external_ref": "bot-7"},
        content_type="application/json")
    again = client.post("/api/lifecycle/positions", {
        "strategy": strategy.name, "symbol": ETH, "side": "long", "quantity": "2",
        "entry_price": "2500", "entry_fee": "2.75", "external_ref": "bot-7"},
        content_type="application/json")
    position_id = handed.json()["id"]
    for minutes, close in ((5, "2510"), (10, "2520"), (15, "2505"), (20, "2490"), (25, "2495"),
                           (30, "2500"), (35, "2502")):
        write_candles(ETH, [close], end=START + timedelta(minutes=minutes))
        platform.run(until=START + timedelta(minutes=minutes))

    assert (handed.status_code, again.status_code, again.json()["id"]) == (201, 200,
                                                                           position_id)
    tracked = client.get("/api/lifecycle/tracked-positions").json()
    assert tracked["counts"] == {"OPEN": 0, "WARNING": 1, "CRITICAL": 0, "CLOSING": 0}
    [row] = tracked["results"]
    assert {key: row[key] for key in ("id", "state", "source", "external_ref", "warning_due_at",
                                      "timeout_due_at", "age_minutes", "minutes_to_timeout",
                                      "close_action_id")} == {
        "id": position_id, "state": "WARNING", "source": "api", "external_ref": "bot-7",
        "warning_due_at": "2026-03-02T08:30:00Z", "timeout_due_at": "2026-03-02T09:00:00Z",
        "age_minutes": 35.0, "minutes_to_timeout": 25.0, "close_action_id": None}
    [health] = client.get("/api/health/position-health").json()["results"]
    # lifecycle WARNING (35 of 60 minutes) while the health alone is SAFE: the one danger
    # level is WARNING (a WARNING position is never SAFE).
    # time 100 × (1 − 35/60); drawdown 18 from the 2 520 peak = 0.71 % of 5 %; volume and
    # volatility calm; profitability (+0.08 % − 0.1 % fees + 3) / 6
    assert {key: health[key] for key in ("state", "score", "components", "danger_level",
                                         "health_danger_level", "last_price", "unrealised_pnl",
                                         "data_complete")} == {
        "state": "WARNING", "score": 76.5, "danger_level": "WARNING", "health_danger_level": "SAFE",
        "components": {"time_at_risk": 41.67, "drawdown": 85.71, "volume": 100.0,
                       "volatility": 100.0, "profitability": 49.67},
        "last_price": "2502.0000000000", "unrealised_pnl": -1.0, "data_complete": True}
    assert client.get("/").status_code == 200

    closing = client.post(f"/api/lifecycle/positions/{position_id}/close",
                          {"note": "taking it off"}, content_type="application/json")
    platform.run()

    [action] = client.get("/api/execution/actions").json()["results"]
    assert closing.json() == {"position": position_id, "action_id": action["id"],
                              "action_state": "pending", "created": True}
    assert (action["state"], action["attempts"], action["result"]["status"],
            action["result"]["pnl"]) == ("done", 1, "filled", "-5.999725")
    [trade] = client.get("/api/analytics/trades").json()["results"]
    # sold at the 2 499.75 bid: (2 499.75 − 2 500) × 2 − fees (2.75 in + 2.749725 out)
    assert (trade["position"], trade["exit_reason"], trade["exit_price"], trade["fees"],
            trade["pnl"], trade["holding_seconds"]) == (
        position_id, "manual", "2499.7500000000", "5.4997250000", "-5.9997250000", 35 * 60)
    report = client.get("/api/analytics/performance?period=ALL&fresh=true").json()
    metrics = {name: metric["value"] for name, metric in report["metrics"].items()}
    assert (report["trade_count"], report["start_equity"], report["end_equity"]) == (
        1, 100000.0, 99994.000275)
    assert (metrics["total_pnl"], metrics["fees_paid"], metrics["losses"],
            metrics["holding_seconds_mean"]) == (-5.999725, 5.499725, 1, 2100.0)
    execution = client.get("/api/analytics/execution").json()["overall"]
    assert {key: execution[key]["value"] for key in (
        "orders", "filled", "retries", "timeouts", "slippage_percent_mean")} == {
        "orders": 1, "filled": 1, "retries": 0, "timeouts": 0, "slippage_percent_mean": 0.01}


@pytest.fixture
def channel_layer(request):
    """A fresh channel layer for this test: in memory, or Redis for the ``redis`` case."""
    previous = dict(channel_layers.backends)
    if request.param == "redis":
        layer = RedisChannelLayer(hosts=[redis_url()], prefix=f"live-{uuid4().hex[:8]}")
    else:
        layer = InMemoryChannelLayer()
    channel_layers.backends["default"] = layer
    yield layer
    channel_layers.backends.clear()
    channel_layers.backends.update(previous)


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("channel_layer", ["memory", pytest.param("redis", marks=pytest.mark.redis)],
                         indirect=True)
async def test_a_dashboard_watches_a_position_time_out_and_close_live(
        platform, channel_layer, staff_user):
    def setup() -> tuple[int, bytes]:
        account = paper_account()
        strategy = strategy_on(account, "watched", **RISK)
        position = position_open(strategy=strategy, symbol=ETH, side="long",
                                 quantity=Decimal("2"), entry_price=Decimal("2500"))
        platform.schedule("lifecycle.tasks.check_timeouts", 60)
        browser = Client()
        browser.force_login(staff_user)
        # the opening's own event goes out before the dashboard joins: over Redis it is handed
        # to the layer by the publisher's thread, which could otherwise be after the join
        live.flush()
        return position.pk, f"sessionid={browser.cookies['sessionid'].value}".encode()

    position_id, cookie = await database_sync_to_async(setup)()
    dashboard = WebsocketCommunicator(application, "/ws/health/", headers=[
        (b"host", b"127.0.0.1"), (b"origin", b"http://127.0.0.1"), (b"cookie", cookie)])
    try:
        assert (await dashboard.connect())[0]
        assert (await dashboard.receive_json_from(timeout=5))["event"] == "hello"

        await database_sync_to_async(platform.run)(until=START + timedelta(minutes=60))

        events = [await dashboard.receive_json_from(timeout=5) for _ in range(6)]
        assert await dashboard.receive_nothing(timeout=0.1)
    finally:
        await dashboard.disconnect()
        await database_sync_to_async(connections.close_all)()
        if isinstance(channel_layer, RedisChannelLayer):
            await sync_to_async(live.shutdown)()  # its connections belong to the publisher's loop
            await channel_layer.flush()
            await channel_layer.close_pools()
    received = [(e["event"], e["payload"].get("from_state"),
                 e["payload"].get("to_state") or e["payload"].get("state")) for e in events]
    expected = [("positions.state_changed", "OPEN", "WARNING"),
                ("positions.state_changed", "WARNING", "CRITICAL"),
                ("position.state_changed", "CRITICAL", "CLOSING"),
                ("position.state_changed", "CLOSING", "CLOSED"),
                ("trade.closed", None, None),
                ("position.closed", None, "CLOSED")]
    if isinstance(channel_layer, RedisChannelLayer):
        # channels_redis orders a channel's messages by time.time(), frozen here: the four
        # events of 09:00 arrive in any order (in production they are microseconds apart)
        assert sorted(received, key=repr) == sorted(expected, key=repr)
    else:
        assert received == expected
    payloads = {(e["event"], e["payload"].get("to_state")): e["payload"] for e in events}
    warned = payloads[("positions.state_changed", "WARNING")]
    critical = payloads[("positions.state_changed", "CRITICAL")]
    assert (warned["ids"], warned["state_changed_at"], critical["state_changed_at"]) == (
        [position_id], "2026-03-02T08:30:00Z", "2026-03-02T09:00:00Z")
    closed = payloads[("position.closed", None)]
    # sold 2 at the 2 499.75 bid: −0.5 − 2 × 2 499.75 × 0.055 %
    assert (closed["id"], closed["exit_reason"], closed["exit_price"], closed["pnl"]) == (
        position_id, "timeout", "2499.7500000000", "-3.2497250000")
