"""Execution metrics from orders, per account and overall (hand-computed)."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import numpy as np
import pytest
import time_machine

from analytics.execution_metrics import execution_metrics, nearest_rank, summarise_orders
from tradingsite.testing.factories import ExchangeAccountFactory, OrderFactory

NOW = datetime(2026, 3, 4, 12, tzinfo=UTC)


def order(account, status, *, retries=0, timed_out=False, latency=None, slippage=None,
          created_at=NOW - timedelta(hours=1)):
    return OrderFactory(account=account, status=status, retries=retries, attempts=retries + 1,
                        timed_out=timed_out, latency_ms=latency, created_at=created_at,
                        slippage_percent=None if slippage is None else Decimal(slippage))


@pytest.fixture
def orders(db):
    bybit = ExchangeAccountFactory(name="bybit-main", exchange_id="bybit")
    paper = ExchangeAccountFactory(name="paper-1")
    ExchangeAccountFactory(name="zz-idle")
    order(bybit, "filled", latency=100, slippage="0.1")
    order(bybit, "filled", retries=2, latency=300, slippage="-0.05")
    order(bybit, "rejected", latency=50)
    order(bybit, "failed", retries=3, timed_out=True)
    order(bybit, "cancelled", latency=80)
    order(bybit, "open", latency=120)
    order(paper, "filled", latency=10, slippage="0.4")
    order(paper, "expired", timed_out=True, latency=20)
    order(paper, "filled", latency=30, slippage="0.2")
    order(paper, "filled", latency=5, created_at=NOW - timedelta(days=3))  # last week


def values(summary):
    return {name: metric["value"] for name, metric in summary.items() if isinstance(metric, dict)}


@time_machine.travel(NOW, tick=False)
def test_per_account_metrics(orders):
    report = execution_metrics(period="WEEK")
    bybit, paper, idle = report["accounts"]
    assert (bybit["account"], bybit["exchange_id"]) == ("bybit-main", "bybit")
    assert values(bybit) == {
        "orders": 6, "filled": 2, "rejected": 1, "failed": 1, "expired": 0, "cancelled": 1,
        "open": 1, "success_rate": 0.5, "retries": 5, "orders_retried": 2, "timeouts": 1,
        "latency_ms_mean": 130.0, "latency_ms_p95": 300.0,  # of 50 80 100 120 300
        "slippage_percent_mean": pytest.approx(0.025), "slippage_percent_worst": 0.1,
    }
    assert bybit["success_rate"]["sample_size"] == 4  # cancelled and open are left out
    assert bybit["latency_ms_p95"]["sample_size"] == 5
    assert values(paper)["success_rate"] == pytest.approx(2 / 3)
    assert values(paper)["latency_ms_p95"] == 30.0
    assert values(paper)["slippage_percent_mean"] == pytest.approx(0.3)
    assert values(paper)["timeouts"] == 1
    assert values(idle)["orders"] == 0
    assert idle["success_rate"] == {"value": None, "sample_size": 0,
                                    "undefined_reason": "no_orders"}
    assert idle["latency_ms_mean"]["undefined_reason"] == "no_samples"


@time_machine.travel(NOW, tick=False)
def test_overall_metrics_and_window(orders):
    overall = values(execution_metrics(period="WEEK")["overall"])
    assert overall["orders"] == 9
    assert overall["success_rate"] == pytest.approx(4 / 7)
    assert overall["latency_ms_mean"] == pytest.approx(710 / 8)
    assert overall["latency_ms_p95"] == 300.0
    assert overall["slippage_percent_mean"] == pytest.approx(0.1625)
    assert overall["slippage_percent_worst"] == 0.4
    assert values(execution_metrics()["overall"])["orders"] == 10  # ALL includes last week


@time_machine.travel(NOW, tick=False)
def test_one_account(orders):
    report = execution_metrics(account="paper-1")
    assert [a["account"] for a in report["accounts"]] == ["paper-1"]
    assert values(report["overall"])["orders"] == 4


def test_nearest_rank_percentile():
    values_ = np.array([1.0, 2.0, 3.0, 4.0])
    assert nearest_rank(values_, 0.95) == 4.0
    assert nearest_rank(values_, 0.5) == 2.0
    assert nearest_rank(np.array([7.0]), 0.95) == 7.0


def test_summary_of_no_orders():
    empty = np.empty(0)
    summary = summarise_orders(np.empty(0, dtype=object), empty.astype(int),
                               empty.astype(bool), empty, empty)
    assert summary["orders"] == {"value": 0, "sample_size": 0}
    assert summary["success_rate"]["undefined_reason"] == "no_orders"
