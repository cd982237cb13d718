"""The risk monitor's writes: the periodic check, alerts, emergency closes, retention.

One check (``risk_check_run``) claims the strategies whose interval has elapsed,
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
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import numpy as np
from django.db import DEFAULT_DB_ALIAS, IntegrityError, transaction
from django.utils import timezone

from execution.models import ActionKind
from lifecycle.models import Position, PositionState, Strategy
from lifecycle.services import position_request_close
from risk import scoring, selectors
from risk.models import AlertSeverity, HealthSnapshot, RiskAlert, StrategyRiskCheck
from risk.selectors import MonitoredStrategy
from risk.serializers import alert_payload, alert_payloads
from risk.signals import alerts_raised
from risk.tick import HOLDING, Tick, tick_assemble
from tradingsite.audit import audit_record
from tradingsite.domain import CloseReason
from tradingsite.errors import InvalidStateTransition
from tradingsite.live import broadcast, broadcast_many
from tradingsite.sql import insert_rows, update_rows

log = logging.getLogger(__name__)

RISK_ACTOR = "risk"
DANGER_WARNING = "danger_warning"
DANGER_CRITICAL = "danger_critical"
COLLAPSE_PREFIX = "collapse_"
SEVERITY_RANK = {AlertSeverity.INFO: 0, AlertSeverity.WARNING: 1, AlertSeverity.CRITICAL: 2}
COMPONENT_LABELS = {"time_at_risk": "Time at risk", "drawdown": "Drawdown", "volume": "Volume",
                    "volatility": "Volatility", "profitability": "Profitability"}


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

def alert_raise(*, position: Position | None = None, kind: str, severity: str,
                message: str, announce: bool = False, subject: str = "") -> RiskAlert:
    """Open an alert, or refresh the open one of the same position and kind.

    A repeat updates ``last_seen``, ``occurrences``, the message and the severity;
    ``alert.raised`` is pushed when the alert is new or its severity changed, or always
    with ``announce`` (the caller decided the operator must hear it again).
    Alerts without a position are deduplicated by kind and ``subject`` (what the
    alert is about, e.g. an account and symbol).
    Every call announces the alert
    (``risk.signals.alerts_raised``) inside this transaction: a caller raises what is news
    (the notification outbox folds repeats into a digest).
    """
    if severity not in AlertSeverity.values:
        raise ValueError(f"severity must be one of {AlertSeverity.values}, got {severity!r}")
    with transaction.atomic():
        alert, changed = _upsert_alert(position_id=position.pk if position else None, kind=kind,
                                       severity=severity, message=message, now=timezone.now(),
                                       subject=subject)
        alert.symbol = position.symbol if position else None
        alerts_raised.send(sender=RiskAlert, alerts=[alert])
        if changed or announce:
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


def order_alert_raise(order: Any, *, kind: str, critical: bool, message: str) -> RiskAlert:
    """Execution's ``order_alert`` hook: an alert about an order, on its position if it has one."""
    return alert_raise(position=order.position if order.position_id else None, kind=kind,
                       severity=AlertSeverity.CRITICAL if critical else AlertSeverity.WARNING,
                       message=message)


def account_alert_raise(*, kind: str, subject: str, critical: bool, message: str) -> RiskAlert:
    """Execution's ``account_alert`` hook: an alert about an account's book (``subject``:
    ``<account> <symbol>``), one open per kind and subject."""
    return alert_raise(kind=kind, subject=subject, message=message,
                       severity=AlertSeverity.CRITICAL if critical else AlertSeverity.WARNING)


def account_alert_resolve(*, kind: str, subject: str) -> int:
    """Execution's ``account_alert_resolve`` hook: the condition is gone."""
    return alerts_resolve(list(RiskAlert.objects.filter(
        position__isnull=True, kind=kind, subject=subject, resolved_at__isnull=True)))


def account_alert_subjects(*, kind: str) -> set[str]:
    """Execution's ``account_alert_subjects`` hook: subjects of the open alerts of ``kind``."""
    return set(RiskAlert.objects.filter(position__isnull=True, kind=kind,
                                        resolved_at__isnull=True).values_list("subject",
                                                                               flat=True))


def alerts_resolve(alerts: list[RiskAlert], *, now: datetime | None = None) -> int:
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


def position_alerts_resolve(*, position_id: int, now: datetime | None = None) -> int:
    """Resolve every open alert of a position (it closed: none of them applies any more)."""
    alerts = list(selectors.alerts_with_symbol().filter(position_id=position_id,
                                                        resolved_at__isnull=True))
    return alerts_resolve(alerts, now=now)


def alerts_acknowledge(*, alert_ids: list[int], by: str, now: datetime | None = None) -> int:
    """Record that an operator has seen these alerts; already acknowledged ones are left as they are."""
    now = now or timezone.now()
    with transaction.atomic():
        pending = list(selectors.alerts_with_symbol().select_for_update(of=("self",))
                       .filter(pk__in=alert_ids, acknowledged=False))
        RiskAlert.objects.filter(pk__in=[a.pk for a in pending]).update(
            acknowledged=True, acknowledged_at=now, acknowledged_by=by[:150])
        for alert in pending:
            alert.acknowledged, alert.acknowledged_at, alert.acknowledged_by = True, now, by[:150]
            audit_record(actor=by, action="alert.acknowledge", target=alert,
                         before={"acknowledged": False}, after={"acknowledged": True})
        for payload in alert_payloads(pending):
            broadcast("alert.acknowledged", payload)
    return len(pending)


def alert_acknowledge(*, alert_id: int, by: str) -> RiskAlert:
    """Acknowledge one alert (idempotent) and return it."""
    alerts_acknowledge(alert_ids=[alert_id], by=by)
    return selectors.alerts_with_symbol().get(pk=alert_id)


# --- the periodic check ---------------------------------------------------------------

def strategy_check_row(*, strategy_id: int, using: str = DEFAULT_DB_ALIAS) -> StrategyRiskCheck:
    """The strategy's check row (never checked yet when new)."""
    return StrategyRiskCheck.objects.using(using).get_or_create(strategy_id=strategy_id)[0]


def risk_check_run(*, now: datetime | None = None, force: bool = False,
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
        tick = tick_assemble([m for m, _ in claimed], now)
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


def _decimals(scores: np.ndarray) -> list:
    """Scores (any shape) as nested lists of 2-decimal ``Decimal``s, for the database."""
    return np.vectorize(lambda x: Decimal(f"{x:.2f}"), otypes=[object])(scores).tolist()


def _write_positions(tick: Tick) -> None:
    update_rows(Position, ("health_score", "danger_level", "health_checked_at", "peak_price",
                           "trough_price", "last_price", "last_price_at", "updated_at"),
                [(row.id, score, level, tick.now, peak, trough, price, price_at, tick.now)
                 for row, score, level, peak, trough, price, price_at in zip(
                     tick.rows, _decimals(tick.scores.score), tick.scores.level_names().tolist(),
                     tick.peak, tick.trough, tick.last_price, tick.last_price_at, strict=True)])


SNAPSHOT_FIELDS = ("position", "taken_at", "score", "time_score", "drawdown_score",
                   "volume_score", "volatility_score", "profitability_score", "danger_level",
                   "price", "data_complete", "missing")


def _write_snapshots(tick: Tick) -> None:
    s = tick.scores
    insert_rows(HealthSnapshot, SNAPSHOT_FIELDS, [
        (row.id, tick.now, score, *components, level, price, complete, missing)
        for row, score, components, level, price, complete, missing in zip(
            tick.rows, _decimals(s.score), _decimals(s.components), s.level_names().tolist(),
            tick.price_used, s.data_complete.tolist(), tick.missing, strict=True)])


def _wanted_alerts(tick: Tick) -> dict[tuple[int, str], tuple[str, str]]:
    """(position, kind) → (severity, message) of every health alert this tick calls for."""
    s = tick.scores
    holding = tick.holding()
    wanted: dict[tuple[int, str], tuple[str, str]] = {}
    for i in np.flatnonzero(holding & (s.level == scoring.WARNING)):
        risk = tick.setting(i).risk_monitoring
        wanted[(tick.rows[i].id, DANGER_WARNING)] = (
            AlertSeverity.WARNING, f"Health score {s.score[i]:.2f} is below the warning "
                                   f"threshold {risk.warning_score_threshold:g}.")
    for i in np.flatnonzero(holding & (s.level == scoring.CRITICAL)):
        risk = tick.setting(i).risk_monitoring
        wanted[(tick.rows[i].id, DANGER_CRITICAL)] = (
            AlertSeverity.CRITICAL, f"Health score {s.score[i]:.2f} is below the critical "
                                    f"threshold {risk.health_score_threshold:g}.")
    collapse_at = np.array([tick.setting(i).risk_monitoring.component_collapse_score
                            for i in range(tick.size)], dtype=float)
    collapsed = holding[:, None] & ~s.missing & (s.components < collapse_at[:, None])
    for i, c in zip(*np.nonzero(collapsed), strict=True):
        name = scoring.COMPONENTS[c]
        wanted[(tick.rows[i].id, COLLAPSE_PREFIX + name)] = (
            AlertSeverity.WARNING, f"{COMPONENT_LABELS[name]} component collapsed to "
                                   f"{s.components[i, c]:.2f} (below {collapse_at[i]:g}).")
    return wanted


def _sync_alerts(tick: Tick) -> tuple[list[RiskAlert], list[RiskAlert]]:
    """Raise, refresh and resolve the health alerts of the checked positions.

    Alerts of positions that closed meanwhile are resolved too, whatever their kind.
    """
    wanted = _wanted_alerts(tick)
    checked = {row.id for row in tick.rows if row.state in HOLDING}
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
    symbols = {row.id: row.symbol for row in tick.rows}
    raised = _create_alerts([(pid, kind, *wanted[(pid, kind)]) for pid, kind in wanted
                             if (pid, kind) not in already], tick.now)
    for alert in raised:
        alert.symbol = symbols[alert.position_id]
    if raised:
        alerts_raised.send(sender=RiskAlert, alerts=raised)
    alerts_resolve(stale, now=tick.now)
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


def _request_emergency_closes(tick: Tick) -> list[int]:
    """One emergency close per critical position (a close already queued wins)."""
    critical = [tick.rows[i].id for i in np.flatnonzero(
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


def _mark_checked(claimed: list[tuple[MonitoredStrategy, StrategyRiskCheck]], tick: Tick,
                  now: datetime, duration_ms: int) -> None:
    per_strategy = defaultdict(int)
    for row in tick.rows:
        per_strategy[row.strategy_id] += 1
    checks = []
    for monitored, check in claimed:
        check.last_checked_at = now
        check.positions_checked = per_strategy[monitored.strategy.pk]
        check.duration_ms = duration_ms
        checks.append(check)
    StrategyRiskCheck.objects.bulk_update(checks, ["last_checked_at", "positions_checked",
                                                   "duration_ms"])


def _health_items(tick: Tick) -> list[dict[str, Any]]:
    """The ``health.updated`` entries, built from whole columns (10,000 positions per tick)."""
    s = tick.scores
    pnl = s.pnl_percent * tick.entry * tick.quantity / 100.0
    pnl_values = [None if v != v else v for v in np.round(pnl, 8).tolist()]  # NaN → None
    to_timeout = np.round(np.maximum(0.0, tick.max_holding - tick.minutes_open), 1).tolist()
    names = {pk: m.strategy.name for pk, m in tick.strategies.items()}
    checked_at = tick.now.isoformat().replace("+00:00", "Z")
    return [
        selectors.health_item(
            position_id=row.id, strategy=names[row.strategy_id],
            symbol=row.symbol, side=row.side, state=row.state, score=score,
            components=dict(zip(scoring.COMPONENTS, components, strict=True)),
            danger_level=level, minutes_to_timeout=minutes, last_price=price,
            unrealised_pnl=value, data_complete=complete, missing=missing,
            checked_at=checked_at)
        for row, score, components, level, minutes, price, value, complete, missing in zip(
            tick.rows, s.score.tolist(), s.components.tolist(), s.level_names().tolist(),
            to_timeout, [None if p is None else str(p) for p in tick.last_price], pnl_values,
            s.data_complete.tolist(), tick.missing, strict=True)]


# --- retention --------------------------------------------------------------------------

def snapshots_prune(*, now: datetime | None = None) -> int:
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
