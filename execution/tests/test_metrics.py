"""Execution metrics: the pure function, the per-account report and the command."""

from __future__ import annotations

import json
from datetime import timedelta
from decimal import Decimal
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from execution.metrics import execution_metrics
from execution.models import Order
from execution.selectors import execution_metrics_report
from tradingsite.testing.factories import ExchangeAccountFactory

COLUMNS = dict(
    status=["filled", "filled", "rejected", "failed", "cancelled", "open"],
    retries=[0, 2, 0, 3, 0, 0],
    timed_out=[False, False, False, False, True, False],
    latency_ms=[10, 30, None, None, 20, 40],
    slippage_percent=[Decimal("0.1"), Decimal("-0.05"), None, None, Decimal("0.3"), None],
)


def test_metrics_of_a_set_of_orders():
    metrics = execution_metrics(**COLUMNS)
    assert metrics.as_dict() == {
        "orders": 6, "finished": 4, "filled": 2, "rejects": 1, "failures": 1, "expired": 0,
        "cancelled": 1, "open": 1,
        "success_rate": 50.0,  # 2 filled of 4 that ended on their own (cancelled left out)
        "retries": 5, "orders_retried": 2, "timeouts": 1,
        "latency_avg_ms": 25.0,
        "latency_p95_ms": 40.0,  # nearest rank: ⌈0.95 × 4⌉ = 4th of 10, 20, 30, 40
        "slippage_avg_percent": 0.025,  # filled orders only: (0.1 − 0.05) / 2
        "slippage_worst_percent": 0.1,
    }


def test_metrics_of_no_orders_are_zero_or_unknown():
    metrics = execution_metrics(status=[], retries=[], timed_out=[], latency_ms=[],
                                slippage_percent=[])
    assert metrics.as_dict() == {
        "orders": 0, "finished": 0, "filled": 0, "rejects": 0, "failures": 0, "expired": 0,
        "cancelled": 0, "open": 0, "success_rate": None, "retries": 0, "orders_retried": 0,
        "timeouts": 0, "latency_avg_ms": None, "latency_p95_ms": None,
        "slippage_avg_percent": None, "slippage_worst_percent": None}


def test_columns_of_different_lengths_are_refused():
    with pytest.raises(ValueError, match="one value per order"):
        execution_metrics(**{**COLUMNS, "retries": [0]})


def _orders(account, rows):
    for i, (status, retries, timed_out, latency, slippage) in enumerate(rows):
        Order.objects.create(account=account, client_order_id=f"{account.name}-{i}",
                             symbol="BTC/USDT:USDT", side="buy", quantity=Decimal("1"),
                             status=status, retries=retries, timed_out=timed_out,
                             latency_ms=latency, slippage_percent=slippage)


@pytest.fixture
def two_accounts(db):
    bybit = ExchangeAccountFactory(name="bybit-main", exchange_id="bybit")
    paper = ExchangeAccountFactory(name="paper-main")
    _orders(bybit, [("filled", 1, False, 100, Decimal("0.2")),
                    ("rejected", 0, False, None, None)])
    _orders(paper, [("filled", 0, False, 2, Decimal("-0.1")), ("filled", 0, False, 4, None)])
    return bybit, paper


def test_the_report_is_per_account_and_overall(two_accounts):
    report = execution_metrics_report()
    assert report["overall"]["orders"] == 4
    assert report["overall"]["success_rate"] == 75.0
    assert report["overall"]["latency_avg_ms"] == pytest.approx(106 / 3, abs=1e-3)
    assert report["accounts"]["bybit-main"]["rejects"] == 1
    assert report["accounts"]["bybit-main"]["slippage_worst_percent"] == 0.2
    assert report["accounts"]["paper-main"]["success_rate"] == 100.0
    assert report["accounts"]["paper-main"]["slippage_avg_percent"] == -0.1
    only = execution_metrics_report(account="paper-main")
    assert list(only["accounts"]) == ["paper-main"]
    assert execution_metrics_report(since=timezone.now() + timedelta(hours=1))[
        "overall"]["orders"] == 0


def test_the_command_prints_a_table_and_json(two_accounts):
    out = StringIO()
    call_command("execution_metrics", stdout=out)
    lines = out.getvalue().splitlines()
    assert lines[0].split() == ["overall", "bybit-main", "paper-main"]
    assert lines[1].split() == ["Orders", "4", "2", "2"]
    assert lines[9].split() == ["Success", "rate", "%", "75.0", "50.0", "100.0"]
    assert lines[-1].split() == ["Slippage", "worst", "%", "0.2", "0.2", "-0.1"]

    out = StringIO()
    call_command("execution_metrics", "--json", "--since", "24h", "--account", "bybit-main",
                 stdout=out)
    data = json.loads(out.getvalue())
    assert data["overall"]["orders"] == 2
    assert list(data["accounts"]) == ["bybit-main"]


def test_the_command_refuses_a_bad_period(db):
    with pytest.raises(CommandError, match="--since: expected an ISO datetime or 30m/24h/7d"):
        call_command("execution_metrics", "--since", "last week")
