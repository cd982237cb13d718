"""Execution metrics: pure, vectorised functions over order columns (no Django here).

Definitions (over the orders given, e.g. those created in a period):

- ``orders``: number of orders; ``finished``: those in a final state.
- ``success_rate``: filled / finished × 100 (``None`` when nothing finished).
- ``retries``: placement retries summed; ``timeouts``: orders cancelled for
  exceeding ``orderTimeoutSeconds``; ``rejects``: refused by the exchange or by
  the slippage/size checks; ``failures``: given up (no answer, fatal error).
- ``latency_avg_ms`` / ``latency_p95_ms``: first send → acknowledgement, over
  acknowledged orders (p95 with linear interpolation between ranks).
- ``slippage_avg_percent`` / ``slippage_worst_percent``: signed slippage of the
  filled orders (adverse is positive, so "worst" is the maximum).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

FINAL = ("filled", "cancelled", "rejected", "failed", "expired")


@dataclass(frozen=True)
class ExecutionMetrics:
    orders: int
    finished: int
    filled: int
    success_rate: float | None
    retries: int
    timeouts: int
    rejects: int
    failures: int
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


def execution_metrics(*, status: Sequence[str], retries: Sequence[int],
                      timed_out: Sequence[bool], latency_ms: Sequence[float | None],
                      slippage_percent: Sequence[Any]) -> ExecutionMetrics:
    """Metrics of one set of orders, given column by column (equal lengths)."""
    statuses = np.asarray(status, dtype=object)
    n = len(statuses)
    if not (len(retries) == len(timed_out) == len(latency_ms) == len(slippage_percent) == n):
        raise ValueError("every column must have one value per order")
    finished = int(np.isin(statuses, FINAL).sum()) if n else 0
    filled_mask = statuses == "filled" if n else np.zeros(0, dtype=bool)
    filled = int(filled_mask.sum())
    latency = _float_array(latency_ms)
    latency = latency[~np.isnan(latency)]
    slippage = _float_array(slippage_percent)[filled_mask] if n else np.zeros(0)
    slippage = slippage[~np.isnan(slippage)]
    return ExecutionMetrics(
        orders=n, finished=finished, filled=filled,
        success_rate=round(filled / finished * 100, 4) if finished else None,
        retries=int(np.asarray(retries, dtype=int).sum()) if n else 0,
        timeouts=int(np.asarray(timed_out, dtype=bool).sum()) if n else 0,
        rejects=int((statuses == "rejected").sum()) if n else 0,
        failures=int((statuses == "failed").sum()) if n else 0,
        latency_avg_ms=_rounded(latency.mean(), 3) if latency.size else None,
        latency_p95_ms=_rounded(np.percentile(latency, 95), 3) if latency.size else None,
        slippage_avg_percent=_rounded(slippage.mean(), 6) if slippage.size else None,
        slippage_worst_percent=_rounded(slippage.max(), 6) if slippage.size else None,
    )
