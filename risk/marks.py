"""Danger acted on in seconds: the price-driven health, recomputed on every fresh mark.

The full five-component check (``services.risk_check_run``) keeps its candle cadence.
Between two checks, each mark refresh of an account (``lifecycle.positions_marked``)
recomputes, for all of the account's held positions in one vectorised call
(``scoring.score_on_price``), the components that move with the price — drawdown and
profitability, and time at risk, which moves with the clock — and carries volume and
volatility from the last candle check (its snapshot). The score and danger level are
written where they changed; a position whose level changed gets a snapshot (the
record of why it went CRITICAL), its alert, and — when it turned CRITICAL and its
strategy has ``emergencyCloseOnCritical`` — its emergency close, queued at once.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

import numpy as np
from django.db import transaction
from django.db.models import F

from execution.models import ActionKind
from lifecycle.models import Position, PositionSide, PositionState
from lifecycle.services import position_request_close
from risk import scoring, selectors
from risk.models import AlertSeverity, HealthSnapshot
from risk.services import (
    DANGER_CRITICAL,
    DANGER_WARNING,
    RISK_ACTOR,
    SNAPSHOT_FIELDS,
    alert_raise,
)
from risk.tick import HOLDING, floats
from tradingsite.domain import CloseReason
from tradingsite.errors import InvalidStateTransition
from tradingsite.live import broadcast
from tradingsite.sql import insert_rows, update_rows

log = logging.getLogger(__name__)

MARK_FIELDS = ("id", "strategy_id", "symbol", "side", "quantity", "entry_price", "peak_price",
               "trough_price", "last_price", "opened_at", "state", "health_score",
               "danger_level")
PUSH_SCORE_STEP = 1.0


@dataclass
class MarkCheckResult:
    at: datetime
    positions: int = 0
    changed: int = 0
    levels_changed: dict[int, tuple[str, str]] = field(default_factory=dict)
    closes_requested: list[int] = field(default_factory=list)
    duration_ms: float = 0.0


def danger_on_marks(*, account_id: int, at: datetime) -> MarkCheckResult:
    """Recompute the price-driven health of the account's held positions (module doc)."""
    started = time.perf_counter()
    result = MarkCheckResult(at=at)
    monitored = {m.strategy.pk: m for m in selectors.monitored_strategies()
                 if m.strategy.account_id == account_id}
    if not monitored:
        return result
    rows = list(Position.objects.filter(strategy_id__in=list(monitored),
                                        state__in=PositionState.holding(),
                                        last_price__isnull=False)
                .order_by("id").values(*MARK_FIELDS))
    if not rows:
        return result
    carried = _carried_components(list(monitored))
    groups = {pk: i for i, pk in enumerate(monitored)}
    group = np.array([groups[r["strategy_id"]] for r in rows], dtype=np.int64)
    configs = [m.config for m in monitored.values()]
    now_ts = at.timestamp()
    opened = np.array([r["opened_at"].timestamp() for r in rows])
    volume = np.array([carried.get(r["id"], (np.nan, np.nan))[0] for r in rows])
    volatility = np.array([carried.get(r["id"], (np.nan, np.nan))[1] for r in rows])
    scores = scoring.score_on_price(
        scoring.PositionArrays(
            side=np.array([1.0 if r["side"] == PositionSide.LONG else -1.0 for r in rows]),
            entry_price=floats(r["entry_price"] for r in rows),
            peak_price=floats(r["peak_price"] for r in rows),
            trough_price=floats(r["trough_price"] for r in rows),
            price=floats(r["last_price"] for r in rows),
            minutes_open=(now_ts - opened) / 60.0,
            max_holding_minutes=np.array([c.lifecycle.max_holding_time_minutes
                                          for c in configs], dtype=float)[group],
            market_row=np.full(len(rows), -1, dtype=np.int64)),
        volume, volatility,
        scoring.ScoringParams.stack([scoring.params_from_config(c.risk_monitoring)
                                     for c in configs], group))
    result.positions = len(rows)
    levels = scores.level_names().tolist()
    changed = [i for i, r in enumerate(rows)
               if r["health_score"] is None or levels[i] != r["danger_level"]
               or abs(float(r["health_score"]) - scores.score[i]) >= 0.005]
    if not changed:
        result.duration_ms = (time.perf_counter() - started) * 1000
        return result
    moved = [i for i in changed if levels[i] != rows[i]["danger_level"]]
    with transaction.atomic():
        update_rows(Position, ("health_score", "danger_level"),
                    [(rows[i]["id"], Decimal(f"{scores.score[i]:.2f}"), levels[i])
                     for i in changed])
        insert_rows(HealthSnapshot, SNAPSHOT_FIELDS, [
            (rows[i]["id"], at, Decimal(f"{scores.score[i]:.2f}"),
             *[Decimal(f"{c:.2f}") for c in scores.components[i]], levels[i],
             rows[i]["last_price"], bool(scores.data_complete[i]),
             scores.missing_names(i)) for i in moved])
        for i in moved:
            result.levels_changed[rows[i]["id"]] = (rows[i]["danger_level"], levels[i])
            _alert(rows[i], levels[i], scores.score[i], monitored[rows[i]["strategy_id"]].config)
        result.closes_requested = _emergency_closes(
            [rows[i]["id"] for i in moved if levels[i] == "CRITICAL"
             and monitored[rows[i]["strategy_id"]].config.risk_monitoring
             .emergency_close_on_critical])
        # Pushed: level changes, and scores that moved by a point or more (a dashboard of
        # 10,000 positions need not hear every hundredth of a point every second).
        pushed = [i for i in changed if levels[i] != rows[i]["danger_level"]
                  or rows[i]["health_score"] is None
                  or abs(float(rows[i]["health_score"]) - scores.score[i]) >= PUSH_SCORE_STEP]
        if pushed:
            broadcast("health.marked", {"account": account_id, "at": at, "positions": [
                {"position_id": rows[i]["id"], "score": round(float(scores.score[i]), 2),
                 "danger_level": levels[i], "last_price": str(rows[i]["last_price"])}
                for i in pushed]})
    result.changed = len(changed)
    result.duration_ms = (time.perf_counter() - started) * 1000
    if result.closes_requested:
        log.warning("mark refresh: emergency close requested for positions %s",
                    result.closes_requested)
    return result


def _carried_components(strategy_ids: list[int]) -> dict[int, tuple[float, float]]:
    """Volume and volatility of each position's last candle check (NaN where missing)."""
    carried = {}
    for pk, volume, volatility, missing in HealthSnapshot.objects.filter(
            position__strategy_id__in=strategy_ids,
            position__state__in=PositionState.holding(),
            taken_at=F("position__health_checked_at")).values_list(
            "position_id", "volume_score", "volatility_score", "missing"):
        gone = set(missing or ())
        carried[pk] = (np.nan if "volume" in gone else float(volume),
                       np.nan if "volatility" in gone else float(volatility))
    return carried


def _alert(row: dict[str, Any], level: str, score: float, config: Any) -> None:
    risk = config.risk_monitoring
    position = Position(pk=row["id"], symbol=row["symbol"])
    if level == "CRITICAL":
        alert_raise(position=position, kind=DANGER_CRITICAL, severity=AlertSeverity.CRITICAL,
                    message=f"Health score {score:.2f} is below the critical threshold "
                            f"{risk.health_score_threshold:g} (price {row['last_price']}).")
    elif level == "WARNING":
        alert_raise(position=position, kind=DANGER_WARNING, severity=AlertSeverity.WARNING,
                    message=f"Health score {score:.2f} is below the warning threshold "
                            f"{risk.warning_score_threshold:g} (price {row['last_price']}).")


def _emergency_closes(position_ids: list[int]) -> list[int]:
    requested = []
    for position in Position.objects.filter(pk__in=position_ids,
                                            state__in=HOLDING).order_by("pk"):
        try:
            _, created = position_request_close(position=position, reason=CloseReason.RISK,
                                                actor=RISK_ACTOR, kind=ActionKind.EMERGENCY_CLOSE,
                                                note="price-driven health on a fresh mark")
        except InvalidStateTransition:
            continue
        if created:
            requested.append(position.pk)
    return requested

