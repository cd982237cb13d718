"""The seam: every event the issue lists writes its notification in the event's transaction."""

from __future__ import annotations

import ast
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from django.conf import settings
from django.db import transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from execution.alerts import raise_order_alert, raise_slippage_alert
from execution.exchanges.paper import paper_exchange_for
from execution.models import OrderPurpose, OrderStatus
from execution.services import action_process, order_place, run_inline
from execution.tests.conftest import SYMBOL, configure
from lifecycle.services import position_request_close
from lifecycle.services import timeout_pass_run as check_timeouts
from notifications.models import Notification
from risk.models import AlertSeverity, RiskAlert
from risk.services import alert_raise, risk_check_run
from risk.tests.conftest import CLOSES, NOW, SMALL_WINDOWS, VOLUMES, add_candles, open_position
from tradingsite.signals import platform_started, platform_stopping
from tradingsite.testing.factories import OrderFactory, PositionFactory, StrategyFactory

pytestmark = pytest.mark.django_db


def kinds() -> list[tuple[str, str, int | None]]:
    return list(Notification.objects.order_by("pk").values_list("kind", "severity",
                                                                 "position_id"))


# --- alerts: one seam for every kind --------------------------------------------------------

@pytest.mark.parametrize("kind", ["slippage", "order_unknown", "order_reappeared",
                                  "fill_unapplied", "position_mismatch", "untracked_position",
                                  "danger_warning", "collapse_volume", "guard_tripped",
                                  "invariant_violated"])
def test_every_alert_kind_writes_a_notification_with_it(kind):
    position = PositionFactory()
    alert = alert_raise(position=position, kind=kind, severity=AlertSeverity.CRITICAL,
                        message="what happened")

    [notification] = Notification.objects.all()
    assert (notification.kind, notification.severity, notification.position_id,
            notification.dedupe_key, notification.context) == (
        kind, "CRITICAL", position.pk, f"{kind}:position:{position.pk}",
        {"alert_id": alert.pk, "message": "what happened"})


def test_execution_alerts_go_through_the_same_seam(paper_account, paper_strategy):
    position = PositionFactory(strategy=paper_strategy)
    order = OrderFactory(account=paper_account, strategy=paper_strategy, position=position,
                         client_order_id="close-7", purpose=OrderPurpose.EMERGENCY_CLOSE)
    raise_slippage_alert(order, detail="estimate 0.9 % > 0.5 %")
    raise_order_alert(order, kind="order_unknown", message="not found", critical=False)

    assert kinds() == [("slippage", "CRITICAL", position.pk),
                       ("order_unknown", "WARNING", position.pk)]


def test_an_alert_without_a_position_is_keyed_by_its_kind():
    alert_raise(kind="position_mismatch", severity=AlertSeverity.CRITICAL, message="differs")
    assert Notification.objects.get().dedupe_key == "position_mismatch:-"


def test_a_rolled_back_alert_leaves_no_notification():
    position = PositionFactory()
    with pytest.raises(ZeroDivisionError), transaction.atomic():
        alert_raise(position=position, kind="slippage", severity="CRITICAL", message="x")
        1 / 0
    assert (RiskAlert.objects.count(), Notification.objects.count()) == (0, 0)


def test_a_notification_that_cannot_be_written_never_blocks_the_alert(monkeypatch, caplog):
    position = PositionFactory()

    def broken(*args, **kwargs):
        raise RuntimeError("outbox bug")

    monkeypatch.setattr("notifications.services.insert_rows", broken)
    alert = alert_raise(position=position, kind="slippage", severity="CRITICAL", message="x")

    assert RiskAlert.objects.get().pk == alert.pk
    assert "notification not recorded: 1 × slippage" in caplog.text


def test_a_risk_tick_writes_its_alerts_notifications_in_one_statement(account, live_events):
    import time_machine

    with time_machine.travel(NOW, tick=False):
        strategy = StrategyFactory(account=account, live_trading=SMALL_WINDOWS)
        add_candles("A/USDT", CLOSES, VOLUMES)
        held = [open_position(strategy, symbol="A/USDT") for _ in range(30)]
        with CaptureQueriesContext(transaction.get_connection()) as queries:
            result = risk_check_run(strategy_ids=[strategy.pk])

    assert result.alerts_raised == 30
    writes = [q["sql"] for q in queries if ("INSERT INTO" in q["sql"] or "COPY" in q["sql"])
              and "notifications_notification" in q["sql"]]
    assert len(writes) == 1  # one INSERT executed for many rows (SQLite), one COPY (PostgreSQL)
    assert sorted(pid for _, _, pid in kinds()) == sorted(p.pk for p in held)
    assert {kind for kind, _, _ in kinds()} == {"danger_warning"}


def test_a_tick_that_only_refreshes_ongoing_alerts_writes_none(account, live_events):
    import time_machine

    with time_machine.travel(NOW, tick=False) as clock:
        strategy = StrategyFactory(account=account, live_trading=SMALL_WINDOWS)
        add_candles("A/USDT", CLOSES, VOLUMES)
        open_position(strategy, symbol="A/USDT")
        risk_check_run(strategy_ids=[strategy.pk])
        clock.shift(timedelta(seconds=30))
        risk_check_run(strategy_ids=[strategy.pk], force=True)

    assert Notification.objects.count() == 1


# --- the timeout pass, closes, trades ------------------------------------------------------

def test_the_timeout_pass_writes_warnings_and_timeouts_in_its_transaction(strategy, dispatched):
    now = timezone.now()
    warned = PositionFactory(strategy=strategy, opened_at=now - timedelta(minutes=200))
    timed_out = PositionFactory(strategy=strategy, opened_at=now - timedelta(minutes=250))

    result = check_timeouts(now)

    assert (result.warned, result.timed_out) == (2, 1)
    assert kinds() == [("position_warning", "WARNING", warned.pk),
                       ("position_warning", "WARNING", timed_out.pk),
                       ("position_timeout", "CRITICAL", timed_out.pk)]
    timeout = Notification.objects.get(kind="position_timeout")
    assert (timeout.dedupe_key, timeout.context, timeout.created_at) == (
        f"position_timeout:position:{timed_out.pk}",
        {"to_state": "CRITICAL", "by": "timeout pass"}, now)


def test_closes_requested_failed_and_done_are_told(paper_account, paper_strategy, paper,
                                                   sleep):
    position = PositionFactory(strategy=paper_strategy, symbol=SYMBOL,
                               quantity=Decimal("0.5"), entry_price=Decimal("49000"))
    configure(paper_account, faults=[{"kind": "reject", "error": "insufficient_funds"}])
    action, _ = position_request_close(position=position, reason="risk", actor="risk")
    action_process(action.pk, drive=run_inline(sleep=sleep))  # rejected: the close fails

    retry, _ = position_request_close(position=position, reason="manual", actor="alice",
                                      note="flatten before the news")
    action_process(retry.pk, drive=run_inline(sleep=sleep))

    assert [(k, s) for k, s, _ in kinds()] == [
        ("close_requested", "CRITICAL"), ("close_failed", "CRITICAL"),
        ("close_requested", "INFO"), ("position_closed", "INFO")]
    requested, failed, manual, closed = Notification.objects.order_by("pk")
    assert requested.context == {"reason": "risk", "kind": "emergency_close", "actor": "risk",
                                 "action_id": action.pk, "note": ""}
    assert failed.context["reason"] == "ab not enough for new order"
    assert manual.context["note"] == "flatten before the news"
    assert closed.context["exit_reason"] == "manual"
    assert Decimal(closed.context["pnl"]) == position.trade.pnl


def test_an_order_that_ends_unfilled_is_told_once_in_its_final_write(paper_account,
                                                                     paper_strategy, sleep):
    configure(paper_account, faults=[{"kind": "reject", "error": "insufficient_funds"}])
    order = order_place(drive=run_inline(sleep=sleep), account=paper_account,
                        strategy=paper_strategy, symbol=SYMBOL, side="buy",
                        quantity=Decimal("0.5"))

    assert order.status == OrderStatus.REJECTED
    [notification] = Notification.objects.all()
    assert (notification.kind, notification.severity) == ("order_rejected", "WARNING")
    assert notification.context["error"] == "ab not enough for new order"
    assert notification.context["account"] == "paper-test"
    assert notification.dedupe_key == f"order_rejected:order:{order.pk}"


def test_an_operators_cancel_is_no_news(paper_account, paper_strategy, sleep):
    from execution.services import order_cancel

    configure(paper_account, faults=[{"kind": "stay_open"}])
    order = order_place(drive=lambda o: o, account=paper_account, strategy=paper_strategy,
                        symbol=SYMBOL, side="buy", quantity=Decimal("0.5"), order_type="limit",
                        price=Decimal("40000"))
    run_inline(sleep=sleep)(order)
    order_cancel(order, actor="alice")

    assert not Notification.objects.filter(kind__startswith="order_").exists()
    paper_exchange_for(paper_account)


# --- the platform ------------------------------------------------------------------------

def test_the_platform_starting_and_stopping_is_told():
    platform_started.send(sender=None, mode="worker", host="w1", pid=42, details="recovery ran")
    platform_stopping.send(sender=None, mode="worker", host="w1", pid=42, reason="SIGTERM",
                           clean=False)

    started, stopping = Notification.objects.order_by("pk")
    assert (started.kind, started.severity, started.dedupe_key) == (
        "platform_started", "INFO", "platform_started:w1:42")
    assert (stopping.kind, stopping.severity) == ("platform_stopping", "CRITICAL")
    assert stopping.context == {"mode": "worker", "host": "w1", "pid": 42, "clean": False,
                                "reason": "SIGTERM"}


def test_a_production_worker_start_is_told_after_its_recovery(monkeypatch):
    from operations import recovery

    class Stored:
        summary = "open orders checked: 0"

    monkeypatch.setattr(recovery, "recover", lambda **kwargs: Stored())
    recovery.on_worker_ready(sender=type("W", (), {"hostname": "celery@w1"})())

    notification = Notification.objects.get()
    assert notification.kind == "platform_started"
    assert notification.context["details"] == "recovery: open orders checked: 0"


# --- layering ---------------------------------------------------------------------------------

def test_no_other_app_imports_notifications():
    root = Path(settings.BASE_DIR)
    offenders = []
    for path in root.rglob("*.py"):
        relative = path.relative_to(root)
        if relative.parts[0] in ("notifications", ".venv", "var", "bench") or "tests" in \
                relative.parts:
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names = ([alias.name for alias in node.names] if isinstance(node, ast.Import) else
                     [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            if any(name == "notifications" or name.startswith("notifications.")
                   for name in names):
                offenders.append(str(relative))
    assert offenders == []
