"""The operator's console end to end: the API and the dashboard over a supervised position,
and the live push a browser receives while the platform closes it."""

from __future__ import annotations

from datetime import timedelta

import pytest

from tests.integration.conftest import ETH, START, paper_account, strategy_on, write_candles

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
        "entry_price": "2500", "external_ref": "bot-7"}, content_type="application/json")
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
    # lifecycle WARNING (35 of 60 minutes) while the health is SAFE: two separate signals.
    # time 100 × (1 − 35/60); drawdown 18 from the 2 520 peak = 0.71 % of 5 %; volume and
    # volatility calm; profitability (+0.08 % − 0.1 % fees + 3) / 6
    assert {key: health[key] for key in ("state", "score", "components", "danger_level",
                                         "last_price", "unrealised_pnl", "data_complete")} == {
        "state": "WARNING", "score": 76.5, "danger_level": "SAFE",
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
