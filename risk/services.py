"""The risk monitor's writes: the periodic check, alerts, emergency closes, retention.

One check (``run_risk_check``) claims the strategies whose interval has elapsed,
loads their held positions and recent candles in a constant number of queries,
scores every position in one vectorised call (``risk.scoring``), writes the
snapshots and the latest score in bulk, syncs the alerts, asks for the emergency
close of critical positions and pushes the results after commit.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import numpy as np
from django.db import DEFAULT_DB_ALIAS, IntegrityError, transaction
from django.utils import timezone

from execution.models import ActionKind, CloseReason
from lifecycle.models import Position, PositionSide, PositionState, Strategy
from lifecycle.services import position_request_close
from risk import scoring, selectors
from risk.bulk import insert_rows, update_rows
from risk.models import AlertSeverity, HealthSnapshot, RiskAlert, StrategyRiskCheck
from risk.selectors import MonitoredStrategy
from risk.serializers import alert_payload, alert_payloads
from tradingsite.errors import InvalidStateTransition
from tradingsite.live import broadcast, broadcast_many

log = logging.getLogger(__name__)

RISK_ACTOR = "risk"
DANGER_WARNING = "danger_warning"
DANGER_CRITICAL = "danger_critical"
COLLAPSE_PREFIX = "collapse_"
SEVERITY_RANK = {AlertSeverity.INFO: 0, AlertSeverity.WARNING: 1, AlertSeverity.CRITICAL: 2}
COMPONENT_LABELS = {"time_at_risk": "Time at risk", "drawdown": "Drawdown", "volume": "Volume",
                    "volatility": "Volatility", "profitability": "Profitability"}

P = {name: i for i, name in enumerate(selectors.TICK_POSITION_FIELDS)}
HOLDING = frozenset(PositionState.holding())


def is_health_alert(kind: str) -> bool:
    """Kinds the check raises and resolves itself (others, e.g. slippage, stay until closed)."""
    return kind in (DANGER_WARNING, DANGER_CRITICAL) or kind.startswith(COLLAPSE_PREFIX)


@dataclass
class RiskCheckResult:
    checked_at: datetime
    strategies: list[str] = field(default_factory=list)
    positions: int = 0
    levels: dict[str, int] = field(default_factory=dict)
    incomplete_data: int = 0
    alerts_raised: int = 0
    alerts_resolved: int = 0
    closes_requested: list[int] = field(default_factory=list)
    duration_ms: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "checked_at": self.checked_at.isoformat()}


# --- alerts ---------------------------------------------------------------------------

def raise_alert(*, position: Position | None = None, kind: str, severity: str,
                message: str, subject: str = "") -> RiskAlert:
    """Open an alert, or refresh the open one of the same position and kind.

    A repeat updates ``last_seen``, ``occurrences``, the message and the severity;
    ``alert.raised`` is pushed when the alert is new or its severity changed.
    Alerts without a position are deduplicated by kind and ``subject`` (what the
    alert is about, e.g. an account and symbol).
    """
    if severity not in AlertSeverity.values:
        raise ValueError(f"severity must be one of {AlertSeverity.values}, got {severity!r}")
    with transaction.atomic():
        alert, changed = _upsert_alert(position_id=position.pk if position else None, kind=kind,
                                       severity=severity, message=message, now=timezone.now(),
                                       subject=subject)
        alert.symbol = position.symbol if position else None
        if changed:
            broadcast("alert.raised", alert_payload(alert))
    return alert


def _upsert_alert(*, position_id: int | None, kind: str, severity: str, message: str,
                  now: datetime, subject: str = "") -> tuple[RiskAlert, bool]:
    """The open alert of (position, kind, subject), created or refreshed; True if new or
    re-graded."""
    open_alert = RiskAlert.objects.select_for_update().filter(
        position_id=position_id, kind=kind, subject=subject[:160], resolved_at__isnull=True)
    alert = open_alert.first()
    if alert is None:
        try:
            with transaction.atomic():
                return RiskAlert.objects.create(
                    position_id=position_id, kind=kind[:64], subject=subject[:160],
                    severity=severity, message=message, first_seen=now, last_seen=now), True
        except IntegrityError:
            alert = open_alert.get()
    regraded = alert.severity != severity
    alert.last_seen, alert.occurrences = now, alert.occurrences + 1
    alert.severity, alert.message = severity, message
    alert.save(update_fields=["last_seen", "occurrences", "severity", "message"])
    return alert, regraded


def resolve_alerts(alerts: list[RiskAlert], *, now: datetime | None = None) -> int:
    """Mark these open alerts resolved and push ``alert.resolved`` for each."""
    if not alerts:
        return 0
    now = now or timezone.now()
    RiskAlert.objects.filter(pk__in=[a.pk for a in alerts], resolved_at__isnull=True).update(
        resolved_at=now)
    for alert in alerts:
        alert.resolved_at = now
    for payload in alert_payloads(alerts):
        broadcast("alert.resolved", payload)
    return len(alerts)


def resolve_position_alerts(*, position_id: int, now: datetime | None = None) -> int:
    """Resolve every open alert of a position (it closed: none of them applies any more)."""
    alerts = list(selectors.alerts_with_symbol().filter(position_id=position_id,
                                                        resolved_at__isnull=True))
    return resolve_alerts(alerts, now=now)


def acknowledge_alerts(*, alert_ids: list[int], by: str, now: datetime | None = None) -> int:
    """Record that an operator has seen these alerts; already acknowledged ones are left as they are."""
    now = now or timezone.now()
    with transaction.atomic():
        pending = list(selectors.alerts_with_symbol().select_for_update(of=("self",))
                       .filter(pk__in=alert_ids, acknowledged=False))
        RiskAlert.objects.filter(pk__in=[a.pk for a in pending]).update(
            acknowledged=True, acknowledged_at=now, acknowledged_by=by[:150])
        for alert in pending:
            alert.acknowledged, alert.acknowledged_at, alert.acknowledged_by = True, now, by[:150]
        for payload in alert_payloads(pending):
            broadcast("alert.acknowledged", payload)
    return len(pending)


def acknowledge_alert(*, alert_id: int, by: str) -> RiskAlert:
    """Acknowledge one alert (idempotent) and return it."""
    acknowledge_alerts(alert_ids=[alert_id], by=by)
    return selectors.alerts_with_symbol().get(pk=alert_id)


# --- the periodic check ---------------------------------------------------------------

def strategy_check_row(*, strategy_id: int, using: str = DEFAULT_DB_ALIAS) -> StrategyRiskCheck:
    """The strategy's check row (never checked yet when new)."""
    return StrategyRiskCheck.objects.using(using).get_or_create(strategy_id=strategy_id)[0]


def run_risk_check(*, now: datetime | None = None, force: bool = False,
                   strategy_ids: list[int] | None = None) -> RiskCheckResult:
    """Score the held positions of every strategy whose check interval has elapsed.

    ``force`` checks the strategies regardless of the interval (operator, command).
    A strategy another worker is checking right now is skipped.
    """
    now = now or timezone.now()
    started = time.perf_counter()
    result = RiskCheckResult(checked_at=now)
    with transaction.atomic():
        claimed = _claim_strategies(now=now, force=force, strategy_ids=strategy_ids)
        if not claimed:
            return result
        tick = _score_tick([m for m, _ in claimed], now)
        _write_positions(tick)
        _write_snapshots(tick)
        raised, resolved = _sync_alerts(tick)
        result.closes_requested = _request_emergency_closes(tick)
        result.strategies = [m.strategy.name for m, _ in claimed]
        result.positions = tick.size
        levels = tick.scores.level_names()
        result.levels = {str(name): int((levels == name).sum()) for name in scoring.LEVEL_NAMES}
        result.incomplete_data = int((~tick.scores.data_complete).sum())
        result.alerts_raised, result.alerts_resolved = len(raised), len(resolved)
        result.duration_ms = int((time.perf_counter() - started) * 1000)
        _mark_checked(claimed, tick, now, result.duration_ms)
        broadcast_many([("health.updated", {"checked_at": now, "positions": _health_items(tick)}),
                        *(("alert.raised", payload) for payload in alert_payloads(raised))])
    if result.closes_requested:
        log.warning("risk check: emergency close requested for positions %s",
                    result.closes_requested)
    return result


def _claim_strategies(*, now: datetime, force: bool, strategy_ids: list[int] | None
                      ) -> list[tuple[MonitoredStrategy, StrategyRiskCheck]]:
    monitored = selectors.monitored_strategies(strategy_ids)
    if not monitored:
        return []
    checks = selectors.lock_strategy_checks([m.strategy.pk for m in monitored])
    return [(m, checks[m.strategy.pk]) for m in monitored if m.strategy.pk in checks
            and (force or m.is_due(checks[m.strategy.pk].last_checked_at, now))]


@dataclass
class _Tick:
    """Everything one check knows about its positions, index-aligned with ``rows``."""

    now: datetime
    rows: list[tuple]
    strategies: dict[int, MonitoredStrategy]
    scores: scoring.HealthScores
    minutes_open: np.ndarray
    max_holding: np.ndarray
    quantity: np.ndarray
    entry: np.ndarray
    peak: list[Decimal]
    trough: list[Decimal]
    last_price: list[Decimal | None]
    last_price_at: list[datetime | None]
    price_used: list[Decimal | None]
    missing: list[list[str]]

    @property
    def size(self) -> int:
        return len(self.rows)

    def holding(self) -> np.ndarray:
        return np.array([row[P["state"]] in HOLDING for row in self.rows], dtype=bool)

    def setting(self, i: int) -> Any:
        return self.strategies[self.rows[i][P["strategy_id"]]].config


@dataclass
class _MarketLayout:
    """Which market row (exchange × symbol × timeframe × windows × staleness) each position reads."""

    position_row: np.ndarray                         # (N,) row of each position
    position_group: np.ndarray                       # (N,) index of its strategy in the tick
    keys: list[tuple[str, str, str, tuple[int, ...], int]]
    by_series: dict[tuple[str, str, str], list[int]]  # candle series → rows fed by it

    @property
    def timeframe_seconds(self) -> np.ndarray:
        return np.array([selectors.timeframe_seconds(k[2]) for k in self.keys], dtype=float)

    @property
    def stale_candles(self) -> np.ndarray:
        return np.array([k[4] for k in self.keys], dtype=float)

    @property
    def windows(self) -> scoring.MarketWindows:
        return scoring.MarketWindows.of([k[3] for k in self.keys])


def _market_layout(rows: list[tuple], strategies: dict[int, MonitoredStrategy]) -> _MarketLayout:
    per_strategy = {}
    for group, (pk, m) in enumerate(strategies.items()):
        risk = m.config.risk_monitoring
        per_strategy[pk] = (group, m.strategy.account.exchange_id, m.strategy.timeframe,
                            scoring.windows_of(risk), risk.stale_data_candles)
    index: dict[tuple, int] = {}
    by_series: dict[tuple[str, str, str], list[int]] = defaultdict(list)
    position_row = np.empty(len(rows), dtype=np.int64)
    position_group = np.empty(len(rows), dtype=np.int64)
    for i, row in enumerate(rows):
        group, exchange_id, timeframe, windows, stale = per_strategy[row[P["strategy_id"]]]
        key = (exchange_id, row[P["symbol"]], timeframe, windows, stale)
        if key not in index:
            index[key] = len(index)
            by_series[key[:3]].append(index[key])
        position_row[i], position_group[i] = index[key], group
    return _MarketLayout(position_row, position_group, list(index), by_series)


def _load_market(layout: _MarketLayout, now: datetime
                 ) -> tuple[scoring.MarketMatrix, dict[int, Decimal], np.ndarray]:
    """The candle matrix (stale rows blanked), each row's latest close as stored, and the
    time of that close (epoch seconds)."""
    tf, stale = layout.timeframe_seconds, layout.stale_candles
    windows = layout.windows
    candles, latest_close = _load_candles(layout, windows, now)
    market = scoring.build_market_matrix(
        row=candles[0], open_time=candles[1], close=candles[2], volume=candles[3],
        timeframe_seconds=tf, windows=windows)
    now_ts = now.timestamp()
    close_time = np.minimum(market.latest_open + tf, now_ts)
    with np.errstate(invalid="ignore"):
        too_old = close_time < now_ts - stale * tf
    return market.without_rows(too_old), latest_close, close_time


def _score_tick(monitored: list[MonitoredStrategy], now: datetime) -> _Tick:
    """Load positions and candles (two queries), move prices, score in one call."""
    by_id = {m.strategy.pk: m for m in monitored}
    rows = selectors.tick_positions(list(by_id))
    layout = _market_layout(rows, by_id)
    market, latest_close, close_time = _load_market(layout, now)
    row = layout.position_row
    now_ts = now.timestamp()

    # The price: the latest candle close unless the position knows a newer one; a price
    # older than the staleness limit counts as missing.
    tf = layout.timeframe_seconds[row]
    own_price = _floats(r[P["last_price"]] for r in rows)
    own_time = _floats(r[P["last_price_at"]].timestamp() if r[P["last_price_at"]] else None
                       for r in rows)
    candle_price, candle_time = market.closes[row, -1], close_time[row]
    with np.errstate(invalid="ignore"):
        use_candle = np.isfinite(candle_price) & ~(own_time > candle_time)
        own_fresh = np.isfinite(own_price) & (own_time >= now_ts - layout.stale_candles[row] * tf)
    price = np.where(use_candle, candle_price, np.where(own_fresh, own_price, np.nan))

    # Best and worst prices since open: every candle closed since, not only the last one.
    opened = _floats(r[P["opened_at"]].timestamp() for r in rows)
    highest, lowest = scoring.price_extremes(
        market, row, scoring.candles_closed_since(opened, market.latest_open[row], tf))
    new_peak = np.fmax(np.fmax(_floats(r[P["peak_price"]] for r in rows), highest), price)
    new_trough = np.fmin(np.fmin(_floats(r[P["trough_price"]] for r in rows), lowest), price)

    configs = [m.config for m in by_id.values()]
    group = layout.position_group
    max_holding = np.array([c.lifecycle.max_holding_time_minutes for c in configs],
                           dtype=float)[group]
    minutes_open = (now_ts - opened) / 60.0
    entry = _floats(r[P["entry_price"]] for r in rows)
    side = np.array([1.0 if r[P["side"]] == PositionSide.LONG else -1.0 for r in rows])
    scores = scoring.score_positions(
        scoring.PositionArrays(side=side, entry_price=entry, peak_price=new_peak,
                               trough_price=new_trough, price=price, minutes_open=minutes_open,
                               max_holding_minutes=max_holding, market_row=row),
        market,
        scoring.ScoringParams.stack([scoring.params_from_config(c.risk_monitoring)
                                     for c in configs], group))

    last_price = [latest_close[r] if fresh else stored[P["last_price"]]
                  for r, fresh, stored in zip(row.tolist(), use_candle.tolist(), rows, strict=True)]
    last_price_at = [datetime.fromtimestamp(t, tz=UTC) if fresh else stored[P["last_price_at"]]
                     for t, fresh, stored in zip(candle_time.tolist(), use_candle.tolist(), rows,
                                                 strict=True)]
    return _Tick(
        now=now, rows=rows, strategies=by_id, scores=scores, minutes_open=minutes_open,
        max_holding=max_holding, quantity=_floats(r[P["quantity"]] for r in rows), entry=entry,
        peak=[_moved(r[P["peak_price"]], v, up=True) for r, v in zip(rows, new_peak, strict=True)],
        trough=[_moved(r[P["trough_price"]], v, up=False)
                for r, v in zip(rows, new_trough, strict=True)],
        last_price=last_price, last_price_at=last_price_at,
        price_used=[p if known else None for p, known in
                    zip(last_price, np.isfinite(price).tolist(), strict=True)],
        missing=scores.missing_lists())


def _load_candles(layout: _MarketLayout, windows: scoring.MarketWindows, now: datetime
                  ) -> tuple[tuple[np.ndarray, ...], dict[int, Decimal]]:
    """The candles every market row needs, in one query, as flat arrays; and each row's
    latest close as stored (Decimal)."""
    need = np.maximum(windows.volume_recent + windows.volume_lookback,
                      windows.volatility_long + 1)
    tf, stale = layout.timeframe_seconds, layout.stale_candles
    wanted: dict[tuple[str, str], tuple[set[str], datetime]] = {}
    for r, (exchange_id, symbol, timeframe, _, _) in enumerate(layout.keys):
        since = now - timedelta(seconds=float((need[r] + stale[r] + 1) * tf[r]))
        symbols, earliest = wanted.get((exchange_id, timeframe), (set(), since))
        symbols.add(symbol)
        wanted[(exchange_id, timeframe)] = (symbols, min(earliest, since))
    row_of, open_ts, close, volume = [], [], [], []
    latest: dict[int, tuple[datetime, Decimal]] = {}
    for exchange_id, symbol, timeframe, open_time, close_price, vol in \
            selectors.recent_candles(wanted):
        for r in layout.by_series.get((exchange_id, symbol, timeframe), ()):
            row_of.append(r)
            open_ts.append(open_time.timestamp())
            close.append(float(close_price))
            volume.append(float(vol))
            if r not in latest or open_time > latest[r][0]:
                latest[r] = (open_time, close_price)
    arrays = (np.array(row_of, dtype=np.int64), np.array(open_ts, dtype=float),
              np.array(close, dtype=float), np.array(volume, dtype=float))
    return arrays, {r: price for r, (_, price) in latest.items()}


def _floats(values: Any) -> np.ndarray:
    return np.array([np.nan if v is None else float(v) for v in values], dtype=float)


def _moved(stored: Decimal, candidate: float, *, up: bool) -> Decimal:
    """The stored extreme, or the candidate price when it goes beyond it.

    Candle prices round-trip through float exactly up to 15 significant digits.
    """
    if not np.isfinite(candidate):
        return stored
    beyond = candidate > float(stored) if up else candidate < float(stored)
    return Decimal(str(float(candidate))) if beyond else stored


def _decimals(scores: np.ndarray) -> list:
    """Scores (any shape) as nested lists of 2-decimal ``Decimal``s, for the database."""
    return np.vectorize(lambda x: Decimal(f"{x:.2f}"), otypes=[object])(scores).tolist()


def _write_positions(tick: _Tick) -> None:
    update_rows(Position, ("health_score", "danger_level", "health_checked_at", "peak_price",
                           "trough_price", "last_price", "last_price_at", "updated_at"),
                [(row[P["id"]], score, level, tick.now, peak, trough, price, price_at, tick.now)
                 for row, score, level, peak, trough, price, price_at in zip(
                     tick.rows, _decimals(tick.scores.score), tick.scores.level_names().tolist(),
                     tick.peak, tick.trough, tick.last_price, tick.last_price_at, strict=True)])


SNAPSHOT_FIELDS = ("position", "taken_at", "score", "time_score", "drawdown_score",
                   "volume_score", "volatility_score", "profitability_score", "danger_level",
                   "price", "data_complete", "missing")


def _write_snapshots(tick: _Tick) -> None:
    s = tick.scores
    insert_rows(HealthSnapshot, SNAPSHOT_FIELDS, [
        (row[P["id"]], tick.now, score, *components, level, price, complete, missing)
        for row, score, components, level, price, complete, missing in zip(
            tick.rows, _decimals(s.score), _decimals(s.components), s.level_names().tolist(),
            tick.price_used, s.data_complete.tolist(), tick.missing, strict=True)])


def _wanted_alerts(tick: _Tick) -> dict[tuple[int, str], tuple[str, str]]:
    """(position, kind) → (severity, message) of every health alert this tick calls for."""
    s = tick.scores
    holding = tick.holding()
    wanted: dict[tuple[int, str], tuple[str, str]] = {}
    for i in np.flatnonzero(holding & (s.level == scoring.WARNING)):
        risk = tick.setting(i).risk_monitoring
        wanted[(tick.rows[i][P["id"]], DANGER_WARNING)] = (
            AlertSeverity.WARNING, f"Health score {s.score[i]:.2f} is below the warning "
                                   f"threshold {risk.warning_score_threshold:g}.")
    for i in np.flatnonzero(holding & (s.level == scoring.CRITICAL)):
        risk = tick.setting(i).risk_monitoring
        wanted[(tick.rows[i][P["id"]], DANGER_CRITICAL)] = (
            AlertSeverity.CRITICAL, f"Health score {s.score[i]:.2f} is below the critical "
                                    f"threshold {risk.health_score_threshold:g}.")
    collapse_at = np.array([tick.setting(i).risk_monitoring.component_collapse_score
                            for i in range(tick.size)], dtype=float)
    collapsed = holding[:, None] & ~s.missing & (s.components < collapse_at[:, None])
    for i, c in zip(*np.nonzero(collapsed), strict=True):
        name = scoring.COMPONENTS[c]
        wanted[(tick.rows[i][P["id"]], COLLAPSE_PREFIX + name)] = (
            AlertSeverity.WARNING, f"{COMPONENT_LABELS[name]} component collapsed to "
                                   f"{s.components[i, c]:.2f} (below {collapse_at[i]:g}).")
    return wanted


def _sync_alerts(tick: _Tick) -> tuple[list[RiskAlert], list[RiskAlert]]:
    """Raise, refresh and resolve the health alerts of the checked positions.

    Alerts of positions that closed meanwhile are resolved too, whatever their kind.
    """
    wanted = _wanted_alerts(tick)
    checked = {row[P["id"]] for row in tick.rows if row[P["state"]] in HOLDING}
    open_alerts = selectors.open_alerts_of_strategies(list(tick.strategies))
    stale, seen = [], []
    for alert in open_alerts:
        key = (alert.position_id, alert.kind)
        if alert.position_state == PositionState.CLOSED or (
                alert.position_id in checked and is_health_alert(alert.kind)
                and key not in wanted):
            stale.append(alert)
        elif key in wanted:
            seen.append(alert)
    for alert in seen:
        alert.severity, alert.message = wanted[(alert.position_id, alert.kind)]
        alert.last_seen, alert.occurrences = tick.now, alert.occurrences + 1
    update_rows(RiskAlert, ("severity", "message", "last_seen", "occurrences"),
                [(a.pk, a.severity, a.message, a.last_seen, a.occurrences) for a in seen])
    already = {(a.position_id, a.kind) for a in open_alerts}
    symbols = {row[P["id"]]: row[P["symbol"]] for row in tick.rows}
    raised = _create_alerts([(pid, kind, *wanted[(pid, kind)]) for pid, kind in wanted
                             if (pid, kind) not in already], tick.now)
    for alert in raised:
        alert.symbol = symbols[alert.position_id]
    resolve_alerts(stale, now=tick.now)
    return raised, stale


def _create_alerts(specs: list[tuple[int, str, str, str]], now: datetime) -> list[RiskAlert]:
    """Insert new alerts in one statement; if one was opened meanwhile, go one by one."""
    alerts = [RiskAlert(position_id=pid, kind=kind, severity=severity, message=message,
                        first_seen=now, last_seen=now) for pid, kind, severity, message in specs]
    try:
        with transaction.atomic():
            return RiskAlert.objects.bulk_create(alerts)
    except IntegrityError:
        created = []
        for alert in alerts:
            upserted, is_new = _upsert_alert(position_id=alert.position_id, kind=alert.kind,
                                             severity=alert.severity, message=alert.message,
                                             now=now)
            if is_new:
                created.append(upserted)
        return created


def _request_emergency_closes(tick: _Tick) -> list[int]:
    """One emergency close per critical position (a close already queued wins)."""
    critical = [tick.rows[i][P["id"]] for i in np.flatnonzero(
        tick.holding() & (tick.scores.level == scoring.CRITICAL))
        if tick.setting(i).risk_monitoring.emergency_close_on_critical]
    requested = []
    for position in Position.objects.filter(pk__in=critical, state__in=HOLDING).order_by("pk"):
        try:
            _, created = position_request_close(position=position, reason=CloseReason.RISK,
                                                actor=RISK_ACTOR, kind=ActionKind.EMERGENCY_CLOSE)
        except InvalidStateTransition:
            continue
        if created:
            requested.append(position.pk)
    return requested


def _mark_checked(claimed: list[tuple[MonitoredStrategy, StrategyRiskCheck]], tick: _Tick,
                  now: datetime, duration_ms: int) -> None:
    per_strategy = defaultdict(int)
    for row in tick.rows:
        per_strategy[row[P["strategy_id"]]] += 1
    checks = []
    for monitored, check in claimed:
        check.last_checked_at = now
        check.positions_checked = per_strategy[monitored.strategy.pk]
        check.duration_ms = duration_ms
        checks.append(check)
    StrategyRiskCheck.objects.bulk_update(checks, ["last_checked_at", "positions_checked",
                                                   "duration_ms"])


def _health_items(tick: _Tick) -> list[dict[str, Any]]:
    """The ``health.updated`` entries, built from whole columns (10,000 positions per tick)."""
    s = tick.scores
    pnl = s.pnl_percent * tick.entry * tick.quantity / 100.0
    pnl_values = [None if v != v else v for v in np.round(pnl, 8).tolist()]  # NaN → None
    to_timeout = np.round(np.maximum(0.0, tick.max_holding - tick.minutes_open), 1).tolist()
    names = {pk: m.strategy.name for pk, m in tick.strategies.items()}
    checked_at = tick.now.isoformat().replace("+00:00", "Z")
    return [
        selectors.health_item(
            position_id=row[P["id"]], strategy=names[row[P["strategy_id"]]],
            symbol=row[P["symbol"]], side=row[P["side"]], state=row[P["state"]], score=score,
            components=dict(zip(scoring.COMPONENTS, components, strict=True)),
            danger_level=level, minutes_to_timeout=minutes, last_price=price,
            unrealised_pnl=value, data_complete=complete, missing=missing,
            checked_at=checked_at)
        for row, score, components, level, minutes, price, value, complete, missing in zip(
            tick.rows, s.score.tolist(), s.components.tolist(), s.level_names().tolist(),
            to_timeout, [None if p is None else str(p) for p in tick.last_price], pnl_values,
            s.data_complete.tolist(), tick.missing, strict=True)]


# --- retention --------------------------------------------------------------------------

def prune_snapshots(*, now: datetime | None = None) -> int:
    """Delete snapshots older than each strategy's ``snapshotRetentionDays``; returns how many."""
    now = now or timezone.now()
    by_days: dict[int, list[int]] = defaultdict(list)
    for strategy in Strategy.objects.only("pk", "live_trading"):
        days = strategy.effective_config().risk_monitoring.snapshot_retention_days
        by_days[days].append(strategy.pk)
    deleted = 0
    for days, strategy_ids in by_days.items():
        deleted += HealthSnapshot.objects.filter(
            taken_at__lt=now - timedelta(days=days),
            position__strategy_id__in=strategy_ids).delete()[0]
    return deleted
