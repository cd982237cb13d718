"""Execution metrics: pure, vectorised functions over order columns (no Django here).

Definitions (over the orders given, e.g. those created in a period):

- ``orders``: number of orders; ``filled``, ``rejects`` (refused by the exchange or
  by the slippage/size checks), ``failures`` (given up: no answer, fatal error),
  ``expired``, ``cancelled``: orders in that final status; ``open``: not final yet.
- ``finished``: orders that ended on their own (filled, rejected, failed, expired);
  ``success_rate`` = filled / finished × 100 — cancelled orders (an operator or
  shutdown decision) and open ones are left out (``None`` when nothing finished).
- ``retries``: placement retries summed; ``orders_retried``: orders retried at
  least once; ``timeouts``: orders that exceeded ``orderTimeoutSeconds``.
- ``latency_avg_ms`` / ``latency_p95_ms``: first send → acknowledgement, over
  acknowledged orders; p95 by nearest rank (the smallest latency that at least
  95 % of the orders do not exceed).
- ``slippage_avg_percent`` / ``slippage_worst_percent``: signed slippage of the
  filled orders (adverse is positive, so "worst" is the maximum).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

ENDED_ON_THEIR_OWN = ("filled", "rejected", "failed", "expired")


@dataclass(frozen=True)
class ExecutionMetrics:
    orders: int
    finished: int
    filled: int
    rejects: int
    failures: int
    expired: int
    cancelled: int
    open: int
    success_rate: float | None
    retries: int
    orders_retried: int
    timeouts: int
    latency_avg_ms: float | None
    latency_p95_ms: float | None
    slippage_avg_percent: float | None
    slippage_worst_percent: float | None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _float_array(values: Sequence[Any]) -> np.ndarray:
    return np.array([np.nan if v is None else float(v) for v in values], dtype=float)


def _rounded(value: float, places: int) -> float | None:
    return None if np.isnan(value) else round(float(value), places)


def nearest_rank(values: np.ndarray, quantile: float) -> float:
    """The smallest value that at least ``quantile`` of ``values`` do not exceed."""
    ordered = np.sort(values)
    return float(ordered[max(1, math.ceil(quantile * len(ordered))) - 1])


def execution_metrics(*, status: Sequence[str], retries: Sequence[int],
                      timed_out: Sequence[bool], latency_ms: Sequence[float | None],
                      slippage_percent: Sequence[Any]) -> ExecutionMetrics:
    """Metrics of one set of orders, given column by column (equal lengths)."""
    statuses = np.asarray(status, dtype=object)
    n = len(statuses)
    if not (len(retries) == len(timed_out) == len(latency_ms) == len(slippage_percent) == n):
        raise ValueError("every column must have one value per order")
    counts = {name: int(np.count_nonzero(statuses == name)) if n else 0
              for name in ("filled", "rejected", "failed", "expired", "cancelled")}
    finished = sum(counts[name] for name in ENDED_ON_THEIR_OWN)
    retry_counts = np.asarray(retries, dtype=int) if n else np.zeros(0, dtype=int)
    latency = _float_array(latency_ms)
    latency = latency[~np.isnan(latency)]
    slippage = _float_array(slippage_percent)[statuses == "filled"] if n else np.zeros(0)
    slippage = slippage[~np.isnan(slippage)]
    return ExecutionMetrics(
        orders=n, finished=finished, filled=counts["filled"], rejects=counts["rejected"],
        failures=counts["failed"], expired=counts["expired"], cancelled=counts["cancelled"],
        open=n - finished - counts["cancelled"],
        success_rate=round(counts["filled"] / finished * 100, 4) if finished else None,
        retries=int(retry_counts.sum()), orders_retried=int(np.count_nonzero(retry_counts)),
        timeouts=int(np.count_nonzero(np.asarray(timed_out, dtype=bool))) if n else 0,
        latency_avg_ms=_rounded(latency.mean(), 3) if latency.size else None,
        latency_p95_ms=round(nearest_rank(latency, 0.95), 3) if latency.size else None,
        slippage_avg_percent=_rounded(slippage.mean(), 6) if slippage.size else None,
        slippage_worst_percent=_rounded(slippage.max(), 6) if slippage.size else None,
    )
