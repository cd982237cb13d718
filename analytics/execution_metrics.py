"""Execution quality from orders: success rate, retries, timeouts, latency, slippage.

``summarise_orders`` is pure numpy over order arrays; ``execution_metrics`` reads the
orders of a window from the database and summarises them overall and per exchange
account. The execution app can call either.

Definitions (an order counts in the window of its ``created_at``):

- **orders**: orders created; **filled / rejected / failed / expired / cancelled**:
  orders in that final status; **open**: orders not final yet.
- **success rate** = filled ÷ (filled + rejected + failed + expired): the share of
  orders that ended with a fill among those that ended on their own — cancelled
  orders (an operator or shutdown decision) and open ones are left out.
- **retries**: Σ retries; **orders retried**: orders with at least one retry.
- **timeouts**: orders that timed out at least once (``timed_out``).
- **latency** (ms, first send → acknowledgement): mean and p95 (nearest rank: the
  smallest latency that at least 95 % of the orders do not exceed).
- **slippage** (%, signed, adverse positive, over filled orders that have one):
  mean, and worst = the most adverse (the maximum).
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

import numpy as np
from django.db import DEFAULT_DB_ALIAS
from django.db.models import QuerySet
from django.utils import timezone

from analytics.metrics import Metric
from analytics.periods import Period, Window, intersect, period_window
from execution.models import ExchangeAccount, Order, OrderStatus

CUSTOM = "CUSTOM"  # the period of a window narrowed by start / end
NO_ORDERS = "no_orders"
NO_FINISHED_ORDERS = "no_finished_orders"
NO_SAMPLES = "no_samples"

EXECUTION_DEFINITIONS: dict[str, str] = {
    "orders": "Orders created in the window.",
    "filled": "Orders that ended filled.",
    "rejected": "Orders the exchange rejected.",
    "failed": "Orders that failed (non-retryable error or retries exhausted).",
    "expired": "Orders that expired.",
    "cancelled": "Orders cancelled (by the operator, shutdown or the pipeline).",
    "open": "Orders not in a final status yet.",
    "success_rate": "filled ÷ (filled + rejected + failed + expired); cancelled and open orders "
                    "are left out.",
    "retries": "Σ retries over the orders.",
    "orders_retried": "Orders retried at least once.",
    "timeouts": "Orders that timed out at least once.",
    "latency_ms_mean": "Mean latency from first send to acknowledgement, ms.",
    "latency_ms_p95": "95th percentile latency (nearest rank), ms.",
    "slippage_percent_mean": "Mean signed slippage of filled orders, % (adverse positive).",
    "slippage_percent_worst": "Most adverse slippage of a filled order, % (the maximum).",
}


def nearest_rank(sorted_values: np.ndarray, quantile: float) -> float:
    """The smallest value that at least ``quantile`` of the values do not exceed."""
    rank = max(1, math.ceil(quantile * len(sorted_values)))
    return float(sorted_values[rank - 1])


def summarise_orders(status: np.ndarray, retries: np.ndarray, timed_out: np.ndarray,
                     latency_ms: np.ndarray, slippage_percent: np.ndarray) -> dict[str, Any]:
    """Execution metrics of one set of orders (arrays aligned by order; NaN = unknown)."""
    n = len(status)
    counts = {name: int(np.count_nonzero(status == value)) for name, value in (
        ("filled", OrderStatus.FILLED), ("rejected", OrderStatus.REJECTED),
        ("failed", OrderStatus.FAILED), ("expired", OrderStatus.EXPIRED),
        ("cancelled", OrderStatus.CANCELLED))}
    finished = counts["filled"] + counts["rejected"] + counts["failed"] + counts["expired"]
    metrics: dict[str, Metric] = {"orders": Metric(n, n)}
    metrics.update({name: Metric(value, n) for name, value in counts.items()})
    metrics["open"] = Metric(n - finished - counts["cancelled"], n)
    metrics["success_rate"] = (Metric(counts["filled"] / finished, finished) if finished
                               else Metric(None, 0, NO_FINISHED_ORDERS if n else NO_ORDERS))
    metrics["retries"] = Metric(int(retries.sum()), n)
    metrics["orders_retried"] = Metric(int(np.count_nonzero(retries > 0)), n)
    metrics["timeouts"] = Metric(int(np.count_nonzero(timed_out)), n)

    latency = np.sort(latency_ms[~np.isnan(latency_ms)])
    if len(latency):
        metrics["latency_ms_mean"] = Metric(float(latency.mean()), len(latency))
        metrics["latency_ms_p95"] = Metric(nearest_rank(latency, 0.95), len(latency))
    else:
        metrics["latency_ms_mean"] = metrics["latency_ms_p95"] = Metric(None, 0, NO_SAMPLES)

    slippage = slippage_percent[(status == OrderStatus.FILLED) & ~np.isnan(slippage_percent)]
    if len(slippage):
        metrics["slippage_percent_mean"] = Metric(float(slippage.mean()), len(slippage))
        metrics["slippage_percent_worst"] = Metric(float(slippage.max()), len(slippage))
    else:
        metrics["slippage_percent_mean"] = metrics["slippage_percent_worst"] = Metric(
            None, 0, NO_SAMPLES)
    return {name: metric.as_dict() for name, metric in metrics.items()}


def execution_metrics(*, period: Period | str = Period.ALL, start: datetime | None = None,
                      end: datetime | None = None, account: str | None = None,
                      now: datetime | None = None,
                      using: str = DEFAULT_DB_ALIAS) -> dict[str, Any]:
    """Execution metrics of the orders created in a window: overall and per account."""
    now = now or timezone.now()
    window = intersect(period_window(period, now, timezone.get_default_timezone()), start, end)
    accounts = ExchangeAccount.objects.using(using).order_by("name")
    if account:
        accounts = accounts.filter(name=account)
    orders = _orders_in(window, using).filter(account__in=accounts)
    rows = list(orders.values_list("account_id", "status", "retries", "timed_out", "latency_ms",
                                   "slippage_percent"))
    arrays = _order_arrays(rows)
    per_account = []
    for acc in accounts:
        mask = arrays["account"] == acc.pk
        per_account.append({"account": acc.name, "exchange_id": acc.exchange_id,
                            "testnet": acc.testnet,
                            **summarise_orders(*(arrays[k][mask] for k in _FIELDS))})
    narrowed = start is not None or end is not None
    return {
        # A window narrowed by start/end is no calendar period any more: say so.
        "period": CUSTOM if narrowed else str(Period(period)),
        "window": {"start": window.start, "end": window.end},
        "overall": summarise_orders(*(arrays[k] for k in _FIELDS)),
        "accounts": per_account,
    }


_FIELDS = ("status", "retries", "timed_out", "latency_ms", "slippage_percent")


def _orders_in(window: Window, using: str) -> QuerySet[Order]:
    qs = Order.objects.using(using).all()
    if window.start is not None:
        qs = qs.filter(created_at__gte=window.start)
    if window.end is not None:
        qs = qs.filter(created_at__lt=window.end)
    return qs


def _order_arrays(rows: list[tuple]) -> dict[str, np.ndarray]:
    n = len(rows)
    columns = list(zip(*rows, strict=True)) if rows else [()] * 6
    return {
        "account": np.fromiter(columns[0], np.int64, n),
        "status": np.array(columns[1], dtype=object) if n else np.empty(0, dtype=object),
        "retries": np.fromiter(columns[2], np.int64, n),
        "timed_out": np.fromiter(columns[3], bool, n),
        "latency_ms": np.fromiter((np.nan if v is None else v for v in columns[4]),
                                  np.float64, n),
        "slippage_percent": np.fromiter((np.nan if v is None else float(v) for v in columns[5]),
                                        np.float64, n),
    }

