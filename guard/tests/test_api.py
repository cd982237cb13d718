"""The operator's surfaces: trading_state, /api/guard/, /api/audit/, and the 409 of a refusal."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from execution.models import Order
from guard.models import OrderRefusal, TradingScope
from guard.services import guard_evaluate
from guard.tests.conftest import BTC, entry, held
from tradingsite.models import AuditEvent

pytestmark = pytest.mark.django_db


def place(api, strategy, **fields):
    body = {"strategy": strategy.name, "symbol": BTC, "side": "buy", "quantity": "0.5", **fields}
    return api.post("/api/execution/orders/place", body, format="json")


def test_a_global_halt_set_by_trading_state_refuses_an_api_entry_with_trading_halted(
        staff_api, book_strategy, capsys):
    call_command("trading_state", scope="global", state="HALTED", reason="risk review",
                 actor="alice")

    response = place(staff_api, book_strategy)

    assert response.status_code == 409
    body = response.json()
    assert (body["code"], body["reason_code"], body["scope"], body["detail"]) == (
        "trading_halted", "TRADING_HALTED", "global", "trading is halted: risk review (by alice)")
    assert (body["numbers"]["state"], body["numbers"]["reason"], body["numbers"]["by"]) == (
        "HALTED", "risk review", "alice")
    assert not Order.objects.exists()
    refusal = OrderRefusal.objects.get()
    assert (refusal.reason_code, refusal.requested_by, refusal.strategy_id) == (
        "TRADING_HALTED", "operator", book_strategy.pk)
    assert list(AuditEvent.objects.order_by("id").values_list("action", "actor")) == [
        ("trading_state.set", "alice"), ("order.refused", "operator")]
    halt = staff_api.get("/api/trading/halt/").json()
    assert (halt["trading_halted"], halt["reason"], halt["halted_by"]) == (
        True, "risk review", "alice")
    assert capsys.readouterr().out.startswith("global: HALTED since ")


def test_the_halt_commands_are_the_platforms_state(book_strategy, capsys):
    call_command("halt_trading", reason="exchange maintenance")
    halted = TradingScope.objects.get(kind="global")
    call_command("resume_trading")
    resumed = TradingScope.objects.get(kind="global")

    assert (halted.state, halted.state_reason, halted.state_by) == (
        "HALTED", "exchange maintenance", "operator (cli)")
    assert (resumed.state, resumed.state_reason) == ("ACTIVE", "trading resumed")
    assert [(e.before, e.after) for e in AuditEvent.objects.order_by("id")] == [
        ({"state": "ACTIVE", "state_reason": "", "state_by": "",
          "state_since": AuditEvent.objects.order_by("id")[0].before["state_since"]},
         {"state": "HALTED", "state_reason": "exchange maintenance", "state_by": "operator (cli)",
          "state_since": AuditEvent.objects.order_by("id")[0].after["state_since"]}),
        ({"state": "HALTED", "state_reason": "exchange maintenance",
          "state_since": AuditEvent.objects.order_by("id")[1].before["state_since"]},
         {"state": "ACTIVE", "state_reason": "trading resumed",
          "state_since": AuditEvent.objects.order_by("id")[1].after["state_since"]})]
    assert entry(book_strategy).pk is not None


def test_reducing_at_the_platform_is_a_halt_of_new_entries_for_the_old_readers(staff_api):
    call_command("trading_state", scope="global", state="REDUCING", reason="de-risk")

    halt = staff_api.get("/api/trading/halt/").json()

    assert (halt["trading_halted"], halt["reason"]) == (True, "reducing only: de-risk")


def test_trading_state_needs_a_scope_and_a_reason_to_set():
    with pytest.raises(CommandError, match="--set needs --reason"):
        call_command("trading_state", scope="global", state="HALTED", reason="  ")
    with pytest.raises(CommandError, match="--set needs --scope"):
        call_command("trading_state", state="HALTED", reason="x")
    with pytest.raises(CommandError, match="no account named 'nope'"):
        call_command("trading_state", scope="account:nope")
    with pytest.raises(CommandError, match="scope must be global, account:NAME or strategy:NAME"):
        call_command("trading_state", scope="desk:1")
    assert not AuditEvent.objects.exists()


def test_trading_state_lists_every_scope_with_its_limits_as_json(book_strategy, limits, capsys):
    limits(maxOpenPositions=5, dailyLossLimitPercent=3)
    held(book_strategy, 2, quantity=Decimal("0.1"), last_price=Decimal("50000"))
    guard_evaluate()

    call_command("trading_state", json=True)

    scopes = {row["scope"]: row for row in json.loads(capsys.readouterr().out)}
    assert set(scopes) == {"global", "account:guarded", "strategy:guarded-trend"}
    account = scopes["account:guarded"]
    assert (account["state"], account["equity"], account["day_start_equity"]) == (
        "ACTIVE", "10000.0000000000", "10000.0000000000")
    limits_of = {limit["key"]: limit for limit in account["limits"]}
    assert (limits_of["maxOpenPositions"]["value"], limits_of["maxOpenPositions"]["limit"],
            limits_of["maxOpenPositions"]["remaining"]) == (
        "2.0000000000", "5.0000000000", "3.0000000000")
    assert (limits_of["dailyLossLimitPercent"]["value"],
            limits_of["dailyLossLimitPercent"]["used_percent"]) == ("0.0000000000", "0.0000")
    assert limits_of["maxExposurePercent"]["limit"] is None
    assert [limit["key"] for limit in scopes["strategy:guarded-trend"]["limits"]] == [
        "maxOpenPositions", "maxNotionalPerOrder", "maxOrdersPerMinute"]


def test_the_guard_overview_is_readable_by_viewers(viewer_api, book_strategy, limits):
    limits(maxDrawdownPercent=10)
    held(book_strategy, quantity=Decimal("0.1"), last_price=Decimal("50000"))
    guard_evaluate()

    response = viewer_api.get("/api/guard/")

    assert response.status_code == 200
    body = response.json()
    by_scope = {row["scope"]: row for row in body["scopes"]}
    drawdown = next(limit for limit in by_scope["global"]["limits"]
                    if limit["key"] == "maxDrawdownPercent")
    assert (drawdown["limit"], drawdown["value"], drawdown["remaining"],
            drawdown["used_percent"]) == ("10.0000000000", "0.0000000000", "10.0000000000",
                                          "0.0000")
    assert by_scope["global"]["equity"] == "10000.0000000000"
    assert (body["recent_trips"], body["recent_refusals"]) == ([], [])


def test_staff_set_a_scope_state_with_a_reason(staff_api, book_strategy):
    response = staff_api.post("/api/guard/state", {
        "scope": "strategy:guarded-trend", "state": "REDUCING", "reason": "fills look off"},
        format="json")

    assert response.status_code == 200
    assert (response.json()["scope"], response.json()["state"], response.json()["by"]) == (
        "strategy:guarded-trend", "REDUCING", "operator")
    event = AuditEvent.objects.get()
    assert (event.action, event.actor, event.reason) == ("trading_state.set", "operator",
                                                         "fills look off")


@pytest.mark.parametrize(("body", "status", "answer"), [
    ({"scope": "global", "state": "HALTED"}, 400, {"reason": ["This field is required."]}),
    ({"scope": "global", "state": "HALTED", "reason": "   "}, 400,
     {"reason": ["Enter at least one visible character."]}),
    ({"scope": "global", "state": "halted", "reason": "x"}, 400,
     {"state": ['"halted" is not a valid choice.']}),
    ({"scope": "desk:7", "state": "HALTED", "reason": "x"}, 400,
     {"scope": ["Enter a valid value."]}),
    ({"scope": "global", "state": "HALTED", "reason": "x", "note": "y"}, 400,
     {"note": ["Unknown field."]}),
    ({"scope": "account:nope", "state": "HALTED", "reason": "x"}, 404,
     {"detail": "no account named 'nope'", "code": "scope_not_found"}),
])
def test_a_bad_state_request_is_refused_by_field_and_changes_nothing(staff_api, book_strategy,
                                                                    body, status, answer):
    response = staff_api.post("/api/guard/state", body, format="json")

    assert (response.status_code, response.json()) == (status, answer)
    assert not AuditEvent.objects.exists()
    assert not TradingScope.objects.exclude(state="ACTIVE").exists()


def test_viewers_may_not_set_a_state(viewer_api, book_strategy):
    response = viewer_api.post("/api/guard/state", {
        "scope": "global", "state": "HALTED", "reason": "x"}, format="json")
    assert response.status_code == 403
    assert not AuditEvent.objects.exists()


def test_trips_and_refusals_are_listed_and_filtered(staff_api, book_strategy, limits):
    limits(maxNotionalPerOrder=100)
    with pytest.raises(Exception):
        entry(book_strategy)

    refusals = staff_api.get("/api/guard/refusals?reason_code=MAX_NOTIONAL_PER_ORDER").json()
    none = staff_api.get("/api/guard/refusals?reason_code=ORDER_RATE").json()
    trips = staff_api.get("/api/guard/trips?open=true&scope=global").json()

    assert [(r["reason_code"], r["scope"], r["strategy"], r["quantity"]) for r in
            refusals["results"]] == [("MAX_NOTIONAL_PER_ORDER", "global", "guarded-trend",
                                      "0.100000000000")]
    assert (none["count"], trips["count"]) == (0, 0)


def test_the_audit_log_is_for_staff_and_filterable(staff_api, viewer_api, book_strategy):
    call_command("trading_state", scope="global", state="HALTED", reason="r1", actor="alice")
    call_command("trading_state", scope="global", state="ACTIVE", reason="r2", actor="bob")

    mine = staff_api.get("/api/audit/?actor=bob").json()
    viewer = viewer_api.get("/api/audit/")

    assert [(e["action"], e["actor"], e["reason"], e["target_type"]) for e in mine["results"]] == [
        ("trading_state.set", "bob", "r2", "guard.tradingscope")]
    assert viewer.status_code == 403


def test_the_admin_exports_the_audit_log_as_csv(admin_client, book_strategy):
    call_command("trading_state", scope="global", state="HALTED", reason="=HYPERLINK(x)",
                 actor="alice")
    ids = [str(pk) for pk in AuditEvent.objects.values_list("pk", flat=True)]

    response = admin_client.post("/admin/tradingsite/auditevent/", {
        "action": "download_csv", "_selected_action": ids})

    lines = b"".join(response.streaming_content).decode().splitlines()
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert lines[0] == ("id,created_at,actor,action,target_type,target_id,target_repr,before,"
                        "after,reason")
    assert lines[1].startswith(f"{ids[0]},") and lines[1].endswith(",'=HYPERLINK(x)")
    assert len(lines) == 2


def test_the_audit_log_is_exported_as_csv_with_the_filters(staff_api, viewer_api, book_strategy):
    call_command("trading_state", scope="global", state="HALTED", reason="r1", actor="alice")
    call_command("trading_state", scope="global", state="ACTIVE", reason="+r2", actor="bob")

    response = staff_api.get("/api/audit/csv?actor=bob")
    refused = staff_api.get("/api/audit/csv?since=yesterday")

    lines = b"".join(response.streaming_content).decode().splitlines()
    assert (response.status_code, response["Content-Type"]) == (200, "text/csv; charset=utf-8")
    assert len(lines) == 2 and lines[1].endswith(",'+r2")
    assert ",bob,trading_state.set,guard.tradingscope," in lines[1]
    assert (refused.status_code, list(refused.json())) == (400, ["since"])
    assert viewer_api.get("/api/audit/csv").status_code == 403
