"""Read-side queries of execution: metrics per account and overall."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from typing import Any

from execution.metrics import ExecutionMetrics, execution_metrics
from execution.models import Order

COLUMNS = ("account__name", "status", "retries", "timed_out", "latency_ms", "slippage_percent")


def orders_in_period(*, since: datetime | None = None, until: datetime | None = None,
                     account: str | None = None):
    orders = Order.objects.all()
    if since:
        orders = orders.filter(created_at__gte=since)
    if until:
        orders = orders.filter(created_at__lt=until)
    if account:
        orders = orders.filter(account__name=account)
    return orders


def _metrics(rows: list[tuple]) -> ExecutionMetrics:
    columns = list(zip(*rows, strict=True)) if rows else [()] * len(COLUMNS)
    return execution_metrics(status=columns[1], retries=columns[2], timed_out=columns[3],
                             latency_ms=columns[4], slippage_percent=columns[5])


def execution_metrics_report(*, since: datetime | None = None, until: datetime | None = None,
                             account: str | None = None) -> dict[str, Any]:
    """``{"overall": {...}, "accounts": {name: {...}}}`` for orders created in the period."""
    rows = list(orders_in_period(since=since, until=until, account=account)
                .values_list(*COLUMNS))
    by_account: dict[str, list[tuple]] = defaultdict(list)
    for row in rows:
        by_account[row[0]].append(row)
    return {
        "since": since, "until": until,
        "overall": _metrics(rows).as_dict(),
        "accounts": {name: _metrics(account_rows).as_dict()
                     for name, account_rows in sorted(by_account.items())},
    }
