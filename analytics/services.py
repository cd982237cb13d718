"""Performance reports: the one place that turns a request into metrics.

API views, management commands, the refresh task and the dashboard call these
functions. Equity is the starting capital of the accounts in scope plus realised
PnL: a period report starts from the equity at the period's start (starting
capital + PnL realised before it), so its returns and drawdowns are measured
against the account's real equity, not against zero.
"""

from __future__ import annotations

import json
import operator
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, tzinfo
from pathlib import Path
from typing import Any

import numpy as np
from django.core.exceptions import ValidationError
from django.core.serializers.json import DjangoJSONEncoder
from django.core.validators import validate_slug
from django.db import DEFAULT_DB_ALIAS, transaction
from django.utils import timezone

from analytics import selectors
from analytics.importers import ROW_FIELDS, TradeBatch, TradeImportError, read_trade_batches
from analytics.metrics import (
    PerformanceInputs,
    TradeSeries,
    equity_points,
    performance,
    scan_trades,
)
from analytics.models import MetricSnapshot, RealisedPnlCheckpoint
from analytics.periods import (
    Period,
    Window,
    day_bounds,
    from_micros,
    intersect,
    local_midnight,
    period_window,
)
from analytics.selectors import TradeFilters
from analytics.staging import TradeStaging
from execution.models import ExchangeAccount
from lifecycle.models import Strategy
from tradingsite.live_config import site_config

DEFAULT_TOP_N = 5
SNAPSHOT_PERIODS = (Period.ALL, Period.TODAY, Period.WEEK, Period.MONTH)
MAX_EQUITY_POINTS = 2000


@dataclass(frozen=True)
class ReportRequest:
    """What a report covers: a calendar period, optionally narrowed, and trade filters."""

    period: Period = Period.ALL
    filters: TradeFilters = field(default_factory=TradeFilters)
    start: datetime | None = None
    end: datetime | None = None
    top_n: int = DEFAULT_TOP_N

    @property
    def cacheable(self) -> bool:
        """Snapshots exist for whole periods, overall and per strategy."""
        return (self.start is None and self.end is None and self.top_n == DEFAULT_TOP_N
                and self.filters.symbol is None and self.filters.exit_reason is None)


@dataclass(frozen=True)
class PreparedReport:
    """A report's inputs read from the database."""

    window: Window
    trades: TradeSeries
    starting_capital: float
    realised_before: float
    bounds_us: np.ndarray

    @property
    def start_equity(self) -> float:
        return self.starting_capital + self.realised_before


def prepare_report(request: ReportRequest, now: datetime, using: str = DEFAULT_DB_ALIAS
                   ) -> PreparedReport:
    """Window, trades, base equity and day boundaries of a report: the metrics' inputs."""
    tz = timezone.get_default_timezone()
    calendar = period_window(request.period, now, tz)
    window = intersect(calendar, request.start, request.end)
    trades = selectors.trade_series(selectors.trades_in(request.filters, window, using), using)
    capital = float(selectors.starting_capital(request.filters, using))
    before = 0.0
    if window.start is not None:
        recurring = window.start == calendar.start
        before = float(selectors.realised_pnl_before(request.filters, window.start,
                                                     checkpoint=recurring, using=using))
    return PreparedReport(window, trades, capital, before, _daily_bounds(window, trades, now, tz))


def _daily_bounds(window: Window, trades: TradeSeries, now: datetime, tz: tzinfo) -> np.ndarray:
    """Local days from the window's start (ALL: the first trade's day) to its end or now."""
    if window.start is not None:
        first = window.start
    elif len(trades):
        first = local_midnight(from_micros(int(trades.closed_at_us[0])).astimezone(tz).date(), tz)
    else:
        return np.empty(0, dtype=np.int64)
    last = now
    if len(trades):
        last = max(last, from_micros(int(trades.closed_at_us[-1]) + 1))
    if window.end is not None:
        last = min(last, window.end)
    return day_bounds(first, last, tz)


def _window_dict(window: Window, prepared: PreparedReport) -> dict[str, Any]:
    return {"start": window.start, "end": window.end,
            "days": max(len(prepared.bounds_us) - 1, 0)}


def performance_report(request: ReportRequest, *, now: datetime | None = None,
                       using: str = DEFAULT_DB_ALIAS) -> dict[str, Any]:
    """Compute the full report now (never from a snapshot)."""
    now = now or timezone.now()
    cfg = site_config().performance_analytics
    prepared = prepare_report(request, now, using)
    result = performance(prepared.trades, PerformanceInputs(
        start_equity=prepared.start_equity, bounds_us=prepared.bounds_us,
        annualization=cfg.annualization_days,
        risk_free_daily=cfg.risk_free_rate / cfg.annualization_days, top_n=request.top_n))
    details = selectors.trade_details(
        [t["id"] for t in result["top_trades"] + result["worst_trades"]], using)
    for key in ("top_trades", "worst_trades"):
        result[key] = [_trade_row(details[t["id"]]) for t in result[key]]
    return {
        "period": str(request.period),
        "filters": _filters_dict(request.filters),
        "window": _window_dict(prepared.window, prepared),
        "time_zone": str(timezone.get_default_timezone()),
        "starting_capital": prepared.starting_capital,
        "realised_before_window": prepared.realised_before,
        **result,
        "computed_at": now,
        "cached": False,
    }


def _filters_dict(filters: TradeFilters) -> dict[str, str | None]:
    return {"strategy": filters.strategy, "symbol": filters.symbol,
            "exit_reason": filters.exit_reason}


def _trade_row(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"], "strategy": row["strategy__name"], "symbol": row["symbol"],
        "side": row["side"], "quantity": float(row["quantity"]),
        "entry_price": float(row["entry_price"]), "exit_price": float(row["exit_price"]),
        "opened_at": row["opened_at"], "closed_at": row["closed_at"],
        "fees": float(row["fees"]), "pnl": float(row["pnl"]),
        "pnl_percent": float(row["pnl_percent"]), "holding_seconds": row["holding_seconds"],
        "exit_reason": row["exit_reason"],
    }


def cached_performance_report(request: ReportRequest, *, now: datetime | None = None,
                              using: str = DEFAULT_DB_ALIAS) -> dict[str, Any]:
    """The snapshot of this period and scope when it covers the current window, else compute.

    A snapshot lags by fewer than ``metricsInterval`` closed trades (plus one beat
    interval); ``trades_since`` in the answer says by how many.
    """
    now = now or timezone.now()
    if request.cacheable:
        calendar = period_window(request.period, now, timezone.get_default_timezone())
        snapshot = (MetricSnapshot.objects.using(using)
                    .filter(period=request.period, scope=request.filters.scope,
                            window_start=calendar.start).first())
        if snapshot is not None:
            since = (selectors.trades_in(request.filters, using=using)
                     .filter(id__gt=snapshot.last_trade_id or 0).count())
            return {**snapshot.report, "computed_at": snapshot.computed_at, "cached": True,
                    "trades_since": since}
    return performance_report(request, now=now, using=using)


# --- equity curve ---------------------------------------------------------------------------


def equity_curve(request: ReportRequest, *, resolution: str = "trade",
                 max_points: int = MAX_EQUITY_POINTS, now: datetime | None = None,
                 using: str = DEFAULT_DB_ALIAS) -> dict[str, Any]:
    """Realised equity over the window: after every trade (downsampled) or per local day."""
    now = now or timezone.now()
    prepared = prepare_report(request, now, using)
    trades, start_equity = prepared.trades, prepared.start_equity
    start_us = int(prepared.bounds_us[0]) if len(prepared.bounds_us) else None
    if resolution == "day":
        daily = scan_trades(trades, start_equity, start_us, prepared.bounds_us[1:]).daily_equity
        times, values = prepared.bounds_us[:-1], daily
        total = len(daily)
    else:
        times, values = equity_points(trades.closed_at_us, trades.pnl, start_equity, start_us,
                                      max_points)
        total = len(trades) + (start_us is not None)
    return {
        "period": str(request.period),
        "filters": _filters_dict(request.filters),
        "window": _window_dict(prepared.window, prepared),
        "resolution": resolution,
        "start_equity": start_equity,
        "total_points": total,
        "downsampled": len(values) < total,
        "points": [{"time": from_micros(int(t)), "equity": float(v)}
                   for t, v in zip(times, values, strict=True)],
    }


# --- snapshots ------------------------------------------------------------------------------


def snapshot_scopes(using: str = DEFAULT_DB_ALIAS) -> list[TradeFilters]:
    """Overall, and each strategy that has trades."""
    names = (Strategy.objects.using(using).filter(trades__isnull=False).distinct()
             .order_by("name").values_list("name", flat=True))
    return [TradeFilters(), *(TradeFilters(strategy=name) for name in names)]


def reports_refresh(*, now: datetime | None = None, force: bool = False,
                    using: str = DEFAULT_DB_ALIAS) -> int:
    """Recompute the snapshots that are due; returns how many were written.

    A snapshot is due when none exists, when its calendar window has moved on
    (a new day, week or month), or when ``metricsInterval`` trades have closed in
    its scope since it was computed.
    """
    now = now or timezone.now()
    cfg = site_config().performance_analytics
    if not cfg.enabled:
        return 0
    interval = cfg.metrics_interval
    tz = timezone.get_default_timezone()
    written = 0
    for filters in snapshot_scopes(using):
        last_id = selectors.last_trade_id(filters, using)
        for period in SNAPSHOT_PERIODS:
            window_start = period_window(period, now, tz).start
            snapshot = (MetricSnapshot.objects.using(using)
                        .filter(period=period, scope=filters.scope).first())
            if not (force or _snapshot_due(snapshot, window_start, filters, interval, using)):
                continue
            report = performance_report(ReportRequest(period=period, filters=filters),
                                        now=now, using=using)
            MetricSnapshot.objects.using(using).update_or_create(
                period=period, scope=filters.scope,
                defaults={"window_start": window_start, "computed_at": now,
                          "trade_count": report["trade_count"], "last_trade_id": last_id,
                          "report": _jsonable(report)})
            written += 1
    # Checkpoints older than any current calendar window are never read again.
    RealisedPnlCheckpoint.objects.using(using).filter(before__lt=now - timedelta(days=35)).delete()
    return written


def _snapshot_due(snapshot: MetricSnapshot | None, window_start: datetime | None,
                  filters: TradeFilters, interval: int, using: str) -> bool:
    if snapshot is None or snapshot.window_start != window_start:
        return True
    new_trades = (selectors.trades_in(filters, using=using)
                  .filter(id__gt=snapshot.last_trade_id or 0)[:interval].count())
    return new_trades >= interval


def _jsonable(report: dict[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(report, cls=DjangoJSONEncoder))


# --- import -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ImportResult:
    created: int
    skipped_duplicates: int
    strategies_created: list[str]


_STRATEGY, _CLOSED_AT = (operator.itemgetter(ROW_FIELDS.index(name))
                         for name in ("strategy", "closed_at"))
IMPORT_BATCH = 10_000  # rows per staged batch: memory stays flat (~30 MB of Python objects)
Progress = Callable[[str], None]


def import_trade_file(path: Path, *, strategy: str | None = None, fmt: str = "auto",
                      progress: Progress | None = None,
                      using: str = DEFAULT_DB_ALIAS) -> ImportResult:
    """Import the closed trades of a CSV or freqtrade file: all of them or, on error, none.

    The file is streamed: each trade is parsed and validated, then staged in batches of
    ``IMPORT_BATCH`` in a temporary table (``analytics.staging``), so memory stays flat
    however long the file is. Only after the last line is read do the trades move into
    ``lifecycle_trade``, with one statement in one transaction; an error anywhere —
    a bad line, a value the database refuses — leaves nothing imported.

    ``strategy`` puts every trade on that strategy; otherwise each trade names its own.
    A strategy that does not exist yet is created (in that same transaction) on the
    first paper account (by id), so imported history never lands on a live account by
    accident. Trades whose (strategy, external_ref) is already stored, or repeated in
    the file, are skipped: importing the same file twice is harmless.
    """
    strategies = _ImportStrategies(strategy, using)
    earliest: datetime | None = None
    with TradeStaging(using) as staging:
        for batch in read_trade_batches(path, fmt=fmt, size=IMPORT_BATCH):
            batch = strategies.named(batch)
            closed = min(map(_CLOSED_AT, batch.rows))
            earliest = closed if earliest is None else min(earliest, closed)
            staging.add(batch)
            if progress:
                progress(f"read {staging.staged} trades (up to {batch.where(len(batch.rows) - 1)}"
                         "), nothing imported yet")
        with transaction.atomic(using=using):
            created_strategies = strategies.create_missing()
            created = staging.publish(created_at=timezone.now())
            if earliest is not None:
                selectors.forget_checkpoints_after(earliest, using)
    return ImportResult(created, staging.staged - created, created_strategies)


class _ImportStrategies:
    """The strategy of each imported trade: checked while reading, created when publishing."""

    def __init__(self, override: str | None, using: str):
        self.override, self.using = override, using
        self.checked: dict[str, bool] = {}  # name → exists already
        self.paper_account: ExchangeAccount | None = None

    def named(self, batch: TradeBatch) -> TradeBatch:
        """The batch with every row's strategy name; an error names the first row without one."""
        if self.override:
            if self.override not in self.checked:
                self.checked[self.override] = self._exists_or_creatable(self.override,
                                                                        batch.where(0))
            return replace(batch, rows=[(self.override, *row[1:]) for row in batch.rows])
        new = set(map(_STRATEGY, batch.rows)) - self.checked.keys()
        if not new:
            return batch
        first = {}
        for index, row in enumerate(batch.rows):
            if row[0] in new and row[0] not in first:
                first[row[0]] = index
        for name, index in sorted(first.items(), key=lambda item: item[1]):  # the earliest first
            if name is None:
                raise TradeImportError(batch.where(index), "strategy",
                                       "required (add a strategy column or pass --strategy)")
            self.checked[name] = self._exists_or_creatable(name, batch.where(index))
        return batch

    def _exists_or_creatable(self, name: str, where: str) -> bool:
        if Strategy.objects.using(self.using).filter(name=name).exists():
            return True
        self.paper_account = (ExchangeAccount.objects.using(self.using)
                              .filter(exchange_id=ExchangeAccount.PAPER).order_by("id").first())
        if self.paper_account is None:
            raise TradeImportError(where, "strategy",
                                   f"unknown strategy {name[:64]!r} and no paper exchange "
                                   "account to create it on: create one, or the strategy, first")
        try:
            validate_slug(name)
        except ValidationError:
            raise TradeImportError(where, "strategy", f"{name[:64]!r} is not a valid strategy "
                                                      "name (letters, digits, - and _)") from None
        if len(name) > Strategy._meta.get_field("name").max_length:
            raise TradeImportError(where, "strategy", f"{name[:24]!r}… is longer than 64 "
                                                      "characters")
        return False

    def create_missing(self) -> list[str]:
        """Create the named strategies that do not exist, inside the import's transaction."""
        created = []
        for name, existed in self.checked.items():
            if existed:
                continue
            _, made = Strategy.objects.using(self.using).get_or_create(
                name=name, defaults={"account": self.paper_account,
                                     "description": "Created by import_trades."})
            if made:
                created.append(name)
        return created
