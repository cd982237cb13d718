"""Reads of the risk monitor: a tick's positions and candles, health views, the report."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, NamedTuple

import numpy as np
from django.db.models import Count, F, Prefetch, Q, QuerySet
from django.utils import timezone

from execution.models import Candle
from lifecycle.models import Position, PositionState, Strategy
from risk import scoring
from risk.models import HealthSnapshot, RiskAlert, StrategyRiskCheck
from tradingsite.live_config import LiveConfigError, LiveTradingConfig, site_config

log = logging.getLogger(__name__)

TIMEFRAME_SECONDS = {"1m": 60, "3m": 180, "5m": 300, "15m": 900, "30m": 1800, "1h": 3600,
                     "2h": 7200, "4h": 14400, "6h": 21600, "12h": 43200, "1d": 86400}

# The columns a risk tick reads of each position, in this order.
class TickPosition(NamedTuple):
    """What a risk tick reads of a held position (one row, by name)."""

    id: int
    strategy_id: int
    symbol: str
    side: str
    quantity: Decimal
    entry_price: Decimal
    peak_price: Decimal
    trough_price: Decimal
    last_price: Decimal | None
    last_price_at: datetime | None
    opened_at: datetime
    state: str


TICK_POSITION_FIELDS = TickPosition._fields


def timeframe_seconds(timeframe: str) -> int:
    try:
        return TIMEFRAME_SECONDS[timeframe]
    except KeyError:
        raise ValueError(f"unknown timeframe {timeframe!r}") from None


@dataclass(frozen=True)
class MonitoredStrategy:
    """A strategy with its effective live-trading config."""

    strategy: Strategy
    config: LiveTradingConfig

    @property
    def check_interval(self) -> timedelta:
        return timedelta(seconds=self.config.risk_monitoring.check_interval_candles
                         * timeframe_seconds(self.strategy.timeframe))

    def is_due(self, last_checked_at: datetime | None, now: datetime) -> bool:
        return last_checked_at is None or now - last_checked_at >= self.check_interval


def monitored_strategies(strategy_ids: Iterable[int] | None = None) -> list[MonitoredStrategy]:
    """Strategies whose risk monitoring is enabled, with their effective config."""
    strategies = Strategy.objects.select_related("account").order_by("pk")
    if strategy_ids is not None:
        strategies = strategies.filter(pk__in=list(strategy_ids))
    monitored = [MonitoredStrategy(s, _config_or_site_defaults(s)) for s in strategies]
    return [m for m in monitored if m.config.risk_monitoring.enabled]


def _config_or_site_defaults(strategy: Strategy) -> LiveTradingConfig:
    """A strategy whose stored overrides became invalid is still watched, with the site config."""
    try:
        return strategy.effective_config()
    except LiveConfigError as exc:
        log.error("strategy %s: invalid live-trading overrides (%s); risk monitoring uses the "
                  "site config", strategy.name, exc)
        return site_config()


def lock_strategy_checks(strategy_ids: list[int]) -> dict[int, StrategyRiskCheck]:
    """The check rows of these strategies that no other worker holds (inside a transaction)."""
    StrategyRiskCheck.objects.bulk_create(
        [StrategyRiskCheck(strategy_id=pk) for pk in strategy_ids], ignore_conflicts=True)
    # Only the check rows: the model's ordering joins the strategy, whose row must stay
    # free for the foreign-key checks of every other writer (the timeout pass, fills).
    rows = StrategyRiskCheck.objects.select_for_update(skip_locked=True, of=("self",)).filter(
        strategy_id__in=strategy_ids).order_by("strategy_id")
    return {row.strategy_id: row for row in rows}


def tick_positions(strategy_ids: list[int]) -> list[TickPosition]:
    """The positions still held by these strategies, as named rows in id order."""
    return list(map(TickPosition._make, Position.objects.filter(
        strategy_id__in=strategy_ids, state__in=PositionState.active())
        .order_by("id").values_list(*TICK_POSITION_FIELDS)))


def recent_candles(windows: dict[tuple[str, str], tuple[set[str], datetime]]) -> list[tuple]:
    """Candles ``(exchange_id, symbol, timeframe, open_time, close, volume)`` in one query.

    ``windows`` maps ``(exchange_id, timeframe)`` to the symbols and the earliest
    open time wanted.
    """
    if not windows:
        return []
    condition = Q()
    for (exchange_id, timeframe), (symbols, since) in windows.items():
        condition |= Q(exchange_id=exchange_id, timeframe=timeframe, symbol__in=sorted(symbols),
                       open_time__gte=since)
    return list(Candle.objects.filter(condition).order_by().values_list(
        "exchange_id", "symbol", "timeframe", "open_time", "close", "volume"))


def open_alerts_of_strategies(strategy_ids: list[int]) -> list[RiskAlert]:
    """Open alerts of these strategies' positions, with the position's state and symbol."""
    return list(RiskAlert.objects.filter(resolved_at__isnull=True,
                                         position__strategy_id__in=strategy_ids)
                .annotate(position_state=F("position__state"), symbol=F("position__symbol")))


def alerts_with_symbol() -> QuerySet[RiskAlert]:
    return RiskAlert.objects.annotate(symbol=F("position__symbol"))


# --- health views (API, report) -----------------------------------------------------

def position_health_queryset() -> QuerySet[Position]:
    """Positions still held, worst score first, each with its latest snapshot."""
    latest = HealthSnapshot.objects.order_by("-taken_at", "-id")
    return (Position.objects.filter(state__in=PositionState.active())
            .select_related("strategy")
            .prefetch_related(Prefetch("health_snapshots", queryset=latest[:1],
                                       to_attr="latest_snapshots"))
            .order_by(F("health_score").asc(nulls_last=True), "id"))


def health_item(*, position_id: int, strategy: str, symbol: str, side: str, state: str,
                score: float | None, components: dict[str, float] | None, danger_level: str,
                minutes_to_timeout: float, last_price: Any, unrealised_pnl: float | None,
                data_complete: bool, missing: list[str], checked_at: datetime | str | None
                ) -> dict[str, Any]:
    """One position's health, as the live push, the API and the report show it.

    The live push passes JSON-ready values (strings for prices and times): it sends
    10,000 of these per tick.
    """
    return {"id": position_id, "strategy": strategy, "symbol": symbol, "side": side,
            "state": state, "score": score, "components": components,
            "danger_level": danger_level, "minutes_to_timeout": minutes_to_timeout,
            "last_price": last_price, "unrealised_pnl": unrealised_pnl,
            "data_complete": data_complete, "missing": missing, "checked_at": checked_at}


def position_health_items(positions: list[Position], now: datetime | None = None
                          ) -> list[dict[str, Any]]:
    """Health items of positions loaded by ``position_health_queryset``."""
    now = now or timezone.now()
    configs: dict[int, LiveTradingConfig] = {}
    for position in positions:
        if position.strategy_id not in configs:
            configs[position.strategy_id] = position.strategy.effective_config()
    sides = np.array([1.0 if p.side == "long" else -1.0 for p in positions])
    entries = np.array([float(p.entry_price) for p in positions])
    prices = np.array([float(p.last_price) if p.last_price is not None else np.nan
                       for p in positions])
    fees = np.array([configs[p.strategy_id].risk_monitoring.fee_rate_percent for p in positions])
    pnl = scoring.pnl_percent(sides, entries, prices, fees) if positions else np.array([])
    items = []
    for i, position in enumerate(positions):
        snapshot = (position.latest_snapshots or [None])[0]
        limit = configs[position.strategy_id].lifecycle.max_holding_time_minutes
        value = pnl[i] * entries[i] * float(position.quantity) / 100.0
        items.append(health_item(
            position_id=position.pk, strategy=position.strategy.name, symbol=position.symbol,
            side=position.side, state=position.state,
            score=float(position.health_score) if position.health_score is not None else None,
            components=snapshot_components(snapshot) if snapshot else None,
            danger_level=position.danger_level,
            minutes_to_timeout=minutes_to_timeout(position.holding_seconds(now) / 60, limit),
            last_price=position.last_price,
            unrealised_pnl=round(float(value), 8) if np.isfinite(value) else None,
            data_complete=snapshot.data_complete if snapshot else False,
            missing=list(snapshot.missing) if snapshot else list(scoring.COMPONENTS),
            checked_at=position.health_checked_at))
    return items


def snapshot_components(snapshot: HealthSnapshot) -> dict[str, float]:
    return {"time_at_risk": float(snapshot.time_score),
            "drawdown": float(snapshot.drawdown_score),
            "volume": float(snapshot.volume_score),
            "volatility": float(snapshot.volatility_score),
            "profitability": float(snapshot.profitability_score)}


def minutes_to_timeout(minutes_open: float, max_holding_minutes: float) -> float:
    return round(max(0.0, max_holding_minutes - minutes_open), 1)


def health_report(*, worst: int = 10, now: datetime | None = None) -> dict[str, Any]:
    """Counts per danger level, the worst positions, open alerts and the last checks."""
    now = now or timezone.now()
    held = Position.objects.filter(state__in=PositionState.active())
    counts = {"SAFE": 0, "WARNING": 0, "CRITICAL": 0, "UNSCORED": 0}
    for row in held.order_by().values("danger_level").annotate(n=Count("id")):
        counts[row["danger_level"] or "UNSCORED"] += row["n"]
    worst_positions = position_health_items(list(position_health_queryset()[:worst]), now)
    open_alerts = list(alerts_with_symbol().filter(resolved_at__isnull=True)
                       .order_by("-last_seen", "-id"))
    checks = [{"strategy": c.strategy.name, "last_checked_at": c.last_checked_at,
               "positions_checked": c.positions_checked, "duration_ms": c.duration_ms}
              for c in StrategyRiskCheck.objects.select_related("strategy")]
    return {"generated_at": now, "positions": sum(counts.values()), "counts": counts,
            "worst_positions": worst_positions, "open_alerts": open_alerts, "checks": checks}
