"""The live-trading configuration: defaults, bounds, layering, validation, JSON form.

One place holds every default and every bound (the dataclasses below). The
effective config of a strategy is built in layers, each checked by the one
validator here (``build``) with the offending key — and the layer it came from —
named:

1. the defaults here;
2. the config file ``settings.LIVE_TRADING_FILE`` (written by ``live_config --import``);
3. ``settings.LIVE_TRADING`` (env ``LIVE_TRADING_CONFIG``: inline JSON or a file path);
4. single keys from the environment: ``LIVE_TRADING__LIFECYCLE__MAX_HOLDING_TIME_MINUTES=90``;
5. the strategy's own ``live_trading`` overrides.

Every numeric key has an inclusive lower and upper bound (``bounds_table()``, the
README's table). The bounds are chosen so that no value can switch supervision off
by accident: holding limits end within a year, the risk check runs at least every
100 candles, a health threshold of 0 (no position ever critical) is refused. Only
the switches say "off": ``enableAutomaticTimeout``, ``riskMonitoring.enabled``,
``emergencyCloseOnCritical``.

Keys are accepted in the camelCase JSON form of the original specification or in
snake_case; export always writes camelCase under a top-level ``liveTrading``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import types
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union, get_args, get_origin, get_type_hints

ENV_PREFIX = "LIVE_TRADING__"
ROOT = "liveTrading"
MAX_FILE_BYTES = 1_000_000  # a config is a few hundred bytes; refuse to read a huge file


class LiveConfigError(ValueError):
    """A configuration value is invalid; each error is ``(dotted camelCase key, message)``."""

    def __init__(self, errors: list[tuple[str, str]]):
        self.errors = errors
        super().__init__("; ".join(f"{key}: {msg}" for key, msg in errors))


def _num(low: float, high: float, *, unit: str = "", doc: str = "") -> dict[str, Any]:
    """Inclusive bounds of a numeric key; every numeric key has both."""
    return {"min": low, "max": high, "unit": unit, "doc": doc}


def _switch(doc: str = "") -> dict[str, Any]:
    return {"doc": doc}


def _limit(low: float, high: float, *, unit: str = "", doc: str = "") -> dict[str, Any]:
    """A numeric key that may also be ``null``: the limit is off (the only way to turn it off)."""
    return {**_num(low, high, unit=unit, doc=doc), "optional": True}


def _choice(*choices: str, doc: str = "") -> dict[str, Any]:
    """A text key that takes one of ``choices``, spelled exactly."""
    return {"choices": choices, "doc": doc}


YEAR_MINUTES = 525_600
HOUR_MS = 3_600_000


@dataclass(frozen=True)
class LifecycleConfig:
    max_holding_time_minutes: int = field(default=240, metadata=_num(
        1, YEAR_MINUTES, unit="minutes", doc="A position older than this times out (CRITICAL)."))
    warning_threshold_minutes: int = field(default=180, metadata=_num(
        1, YEAR_MINUTES, unit="minutes",
        doc="A position older than this enters WARNING; below maxHoldingTimeMinutes."))
    enable_automatic_timeout: bool = field(default=True, metadata=_switch(
        "Queue an emergency close when a position times out (the only way to switch it off)."))


@dataclass(frozen=True)
class RiskWeights:
    time_at_risk: float = field(default=0.20, metadata=_num(0, 1, doc="Weight; weights sum to 1."))
    drawdown: float = field(default=0.30, metadata=_num(0, 1, doc="Weight; weights sum to 1."))
    volume: float = field(default=0.20, metadata=_num(0, 1, doc="Weight; weights sum to 1."))
    volatility: float = field(default=0.15, metadata=_num(0, 1, doc="Weight; weights sum to 1."))
    profitability: float = field(default=0.15, metadata=_num(0, 1,
                                                             doc="Weight; weights sum to 1."))


@dataclass(frozen=True)
class RiskMonitoringConfig:
    enabled: bool = field(default=True, metadata=_switch("Score open positions."))
    check_interval_candles: int = field(default=5, metadata=_num(
        1, 100, unit="candles", doc="Score open positions every N candles of the timeframe."))
    health_score_threshold: float = field(default=30, metadata=_num(
        1, 100, doc="Below this score a position is CRITICAL."))
    warning_score_threshold: float = field(default=60, metadata=_num(
        1, 100, doc="Below this score a position is WARNING; ≥ the critical one."))
    emergency_close_on_critical: bool = field(default=True, metadata=_switch(
        "Emergency-close a CRITICAL position."))
    weights: RiskWeights = field(default_factory=RiskWeights)
    drawdown_limit_percent: float = field(default=5.0, metadata=_num(
        0.01, 100, unit="%", doc="Adverse move from the best price that scores 0."))
    loss_limit_percent: float = field(default=3.0, metadata=_num(
        0.01, 100, unit="%", doc="Unrealised loss (after fees) that scores 0."))
    profit_target_percent: float = field(default=3.0, metadata=_num(
        0.01, 100, unit="%", doc="Unrealised profit (after fees) that scores 100."))
    fee_rate_percent: float = field(default=0.055, metadata=_num(
        0, 5, unit="%", doc="Taker fee per side assumed for unrealised PnL."))
    volume_lookback_candles: int = field(default=20, metadata=_num(
        2, 1000, unit="candles", doc="Rolling window for the average volume."))
    volume_recent_candles: int = field(default=3, metadata=_num(
        1, 1000, unit="candles", doc="Candles averaged as 'recent' volume; below the lookback."))
    volatility_short_candles: int = field(default=12, metadata=_num(
        2, 1000, unit="candles", doc="Window of the recent realised volatility."))
    volatility_long_candles: int = field(default=96, metadata=_num(
        3, 1000, unit="candles", doc="Window of the baseline realised volatility."))
    volatility_spike_ratio: float = field(default=3.0, metadata=_num(
        1.01, 100, doc="Recent/baseline volatility ratio that scores 0 (≤ 1 scores 100)."))
    missing_data_score: float = field(default=50, metadata=_num(
        0, 100, doc="Neutral score of a component whose market data is missing."))
    stale_data_candles: int = field(default=3, metadata=_num(
        1, 100, unit="candles", doc="Market data older than this counts as missing."))
    component_collapse_score: float = field(default=10, metadata=_num(
        0, 100, doc="A component below this raises an alert."))
    snapshot_retention_days: int = field(default=7, metadata=_num(
        1, 3650, unit="days", doc="Health snapshots older than this are pruned."))


@dataclass(frozen=True)
class OrderExecutionConfig:
    max_retries: int = field(default=3, metadata=_num(
        0, 10, doc="Retries of a transient failure (1 s → 2 s → 4 s with the default delay)."))
    retry_delay_ms: int = field(default=1000, metadata=_num(
        0, HOUR_MS, unit="ms", doc="First retry delay; doubles on every retry."))
    order_timeout_seconds: float = field(default=30, metadata=_num(
        1, 3600, unit="s", doc="An order not final after this is cancelled and read back."))
    max_slippage_percent: float = field(default=0.5, metadata=_num(
        0.01, 100, unit="%", doc="Estimated slippage above this refuses a normal order."))
    status_poll_interval_ms: int = field(default=1000, metadata=_num(
        100, HOUR_MS, unit="ms", doc="Delay between status polls of an open order."))
    in_doubt_lookups: int = field(default=3, metadata=_num(
        1, 20, doc="Lookups by client order id before an order in doubt counts as absent."))
    in_doubt_grace_seconds: float = field(default=30, metadata=_num(
        1, 3600, unit="s", doc="Time those lookups are spread over."))
    action_lease_seconds: float = field(default=15, metadata=_num(
        1, 3600, unit="s", doc="A running action whose worker went silent this long is taken "
                               "over."))


@dataclass(frozen=True)
class PerformanceAnalyticsConfig:
    enabled: bool = field(default=True, metadata=_switch("Refresh cached reports."))
    metrics_interval: int = field(default=10, metadata=_num(
        1, 10_000, unit="trades", doc="Refresh cached reports every N closed trades."))
    annualization_days: int = field(default=365, metadata=_num(
        1, 366, unit="days", doc="Days per year for Sharpe and Sortino."))
    risk_free_rate: float = field(default=0.0, metadata=_num(
        0, 1, doc="Yearly risk-free rate as a fraction (0.04 = 4 %)."))


@dataclass(frozen=True)
class ShutdownConfig:
    close_positions_on_shutdown: bool = field(default=False, metadata=_switch(
        "Close every open position on shutdown."))
    shutdown_timeout_seconds: float = field(default=60, metadata=_num(
        1, 3600, unit="s", doc="The whole shutdown sequence ends within this."))
    cancel_orders_on_shutdown: bool = field(default=True, metadata=_switch(
        "Cancel open entry orders on shutdown."))


# Keys of ``portfolio`` that a strategy's overrides may set; the others concern equity, which
# belongs to an account (or the whole platform), so they are set on the account.
STRATEGY_PORTFOLIO_KEYS = ("max_open_positions", "max_notional_per_order",
                           "max_orders_per_minute")


@dataclass(frozen=True)
class PortfolioConfig:
    """The portfolio guard's limits (``guard``): every limit is off (``null``) by default.

    The site's values are the limits of the whole platform and, unless overridden, of each
    account and each strategy; the strictest scope of an order decides.
    """

    daily_loss_limit_amount: float | None = field(default=None, metadata=_limit(
        0.01, 1e12, unit="(quote currency)",
        doc="Loss since the day's starting equity (live: realised + unrealised) that trips the "
            "account or the platform."))
    daily_loss_limit_percent: float | None = field(default=None, metadata=_limit(
        0.01, 100, unit="%", doc="The same loss as % of the day's starting equity (the day in "
                                 "TIME_ZONE)."))
    max_drawdown_percent: float | None = field(default=None, metadata=_limit(
        0.01, 100, unit="%", doc="Fall of live equity from its peak (since armed) that trips the "
                                 "account or the platform."))
    max_open_positions: int | None = field(default=None, metadata=_limit(
        1, 100_000, doc="Positions held plus entries on their way, per scope."))
    max_exposure_percent: float | None = field(default=None, metadata=_limit(
        0.01, 10_000, unit="%", doc="Gross notional of an account's positions and pending "
                                    "entries, as % of its equity."))
    max_symbol_exposure_percent: float | None = field(default=None, metadata=_limit(
        0.01, 10_000, unit="%", doc="The same for one symbol of the account."))
    max_notional_per_order: float | None = field(default=None, metadata=_limit(
        0.01, 1e12, unit="(quote currency)", doc="Quantity × price of one entry order."))
    max_orders_per_minute: int | None = field(default=None, metadata=_limit(
        1, 1000, doc="Entries per scope in any 60 s (closes are never counted nor refused)."))
    on_trip: str = field(default="HALTED", metadata=_choice(
        "REDUCING", "HALTED", doc="State a tripped scope moves to (closes go on in both)."))
    close_all_on_trip: bool = field(default=False, metadata=_switch(
        "Cancel the entry orders still on their way and emergency-close every position of a "
        "tripped scope, through the action queue."))


@dataclass(frozen=True)
class BotsConfig:
    """Positions a trading bot hands over (``bots`` app): closed through the bot that owns them."""

    bot_close_timeout_seconds: float = field(default=30, metadata=_num(
        1, 3600, unit="s", doc="A bot's close not confirmed (exit fill webhook or its trade "
                               "record) after this raises a CRITICAL alert."))
    fallback_direct_close: bool = field(default=False, metadata=_switch(
        "After that alert, close with a reduce-only order of the platform's own (the bot "
        "then still believes its trade open)."))
    bot_sync_seconds: float = field(default=60, metadata=_num(
        5, 86400, unit="s", doc="Read each bot's open trades this often: adopt trades whose "
                                "webhook was lost, close positions the bot no longer holds."))


@dataclass(frozen=True)
class NotificationsConfig:
    retry_first_delay_seconds: float = field(default=1, metadata=_num(
        0.1, 3600, unit="s", doc="First retry of a failed delivery; doubles on every failure "
                                 "(site-wide)."))
    retry_max_delay_seconds: float = field(default=600, metadata=_num(
        1, 86_400, unit="s", doc="Retries of a delivery are at most this far apart."))
    give_up_after_hours: float = field(default=24, metadata=_num(
        1, 720, unit="h", doc="A message not delivered within this is given up and shown "
                                 "as failed."))
    dedup_window_seconds: float = field(default=300, metadata=_num(
        1, 86_400, unit="s", doc="Repeats of one kind on one object within this are folded "
                                 "into a digest."))
    rate_limit_messages: int = field(default=10, metadata=_num(
        1, 10_000, unit="messages", doc="Per channel and rateLimitSeconds (unless the channel "
                                        "sets its own); the excess goes into a digest."))
    rate_limit_seconds: float = field(default=60, metadata=_num(
        1, 86_400, unit="s", doc="The rate-limit window; a digest follows a window after "
                                 "its first folded message."))
    retention_days: int = field(default=30, metadata=_num(
        1, 3650, unit="days", doc="Notifications and their delivery logs older than this "
                                  "are pruned."))


@dataclass(frozen=True)
class WatchdogConfig:
    interval_seconds: float = field(default=15, metadata=_num(
        1, 3600, unit="s", doc="How often the watchdog reads /healthz."))
    beat_silence_seconds: float = field(default=60, metadata=_num(
        5, 86_400, unit="s", doc="Beat sent no periodic task for this long: beat is silent "
                                 "(also a task this late is reported)."))
    worker_silence_seconds: float = field(default=60, metadata=_num(
        1, 86_400, unit="s", doc="No worker answered a ping for this long: workers are "
                                 "silent."))
    platform_silence_seconds: float = field(default=30, metadata=_num(
        1, 86_400, unit="s", doc="/healthz unreachable, or its database or broker failing, "
                                 "for this long: the platform is down."))
    probe_timeout_seconds: float = field(default=2, metadata=_num(
        0.1, 30, unit="s", doc="Each /healthz probe, and the watchdog's request, ends "
                               "within this."))


@dataclass(frozen=True)
class AccountSyncConfig:
    """How each exchange account's live truth is kept: per account (its own overrides)."""

    streams: bool = field(default=True, metadata=_switch(
        "Keep one websocket stream per account where the exchange has one (else REST only)."))
    reconcile_interval_seconds: float = field(default=60, metadata=_num(
        5, 3600, unit="s", doc="Open orders, fills, positions and balances reconciled over "
                               "REST this often (and after every reconnect)."))
    mark_refresh_seconds: float = field(default=5, metadata=_num(
        1, 300, unit="s", doc="Marks and unrealised PnL of open positions refreshed this "
                              "often; older than three intervals is stale."))
    adopt_external_positions: bool = field(default=False, metadata=_switch(
        "Supervise a position opened on the account outside the platform (else alert only)."))


@dataclass(frozen=True)
class LiveTradingConfig:
    enabled: bool = field(default=True, metadata=_switch(
        "Kept for the original JSON form; the switches below are what the platform reads."))
    lifecycle: LifecycleConfig = field(default_factory=LifecycleConfig)
    risk_monitoring: RiskMonitoringConfig = field(default_factory=RiskMonitoringConfig)
    order_execution: OrderExecutionConfig = field(default_factory=OrderExecutionConfig)
    performance_analytics: PerformanceAnalyticsConfig = field(
        default_factory=PerformanceAnalyticsConfig)
    shutdown: ShutdownConfig = field(default_factory=ShutdownConfig)
    bots: BotsConfig = field(default_factory=BotsConfig)
    notifications: NotificationsConfig = field(default_factory=NotificationsConfig)
    watchdog: WatchdogConfig = field(default_factory=WatchdogConfig)
    portfolio: PortfolioConfig = field(default_factory=PortfolioConfig)
    account_sync: AccountSyncConfig = field(default_factory=AccountSyncConfig)

    def to_json_dict(self) -> dict[str, Any]:
        """The JSON form of DESIGN.md: ``{"liveTrading": {...camelCase...}}``."""
        return {ROOT: _to_camel_dict(self)}

    def with_overrides(self, overrides: Any, *, source: str = "") -> LiveTradingConfig:
        """A new config with ``overrides`` (partial, camelCase or snake_case) applied.

        ``source`` (a file, a variable) is named in every error message.
        """
        data = _unwrap(overrides, source)
        if data == {}:
            return self
        return _apply(self, data, ROOT, source)


# --- name mapping --------------------------------------------------------------

def snake_to_camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.capitalize() for part in rest)


def camel_to_snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def _to_camel_dict(obj: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        out[snake_to_camel(f.name)] = (
            _to_camel_dict(value) if dataclasses.is_dataclass(value) else value)
    return out


def _json_type(value: Any) -> str:
    """The JSON name of a value's type, for messages an operator reads."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list | tuple):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _shown(value: Any) -> str:
    """A value as JSON, shortened: a 5,000-digit number must not flood the log."""
    try:
        text = json.dumps(value)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= 40 else f"{text[:24]}… ({len(text)} characters)"


def _number(value: float) -> str:
    """525600, 3600000, 0.01: plain digits, never ``3.6e+06``."""
    return str(int(value)) if float(value).is_integer() else repr(value)


def _in(source: str) -> str:
    return f" (in {source})" if source else ""


def _unwrap(data: Any, source: str) -> dict[str, Any]:
    """The ``liveTrading`` block of a document (or the document when it is the block)."""
    if isinstance(data, dict) and len(data) == 1 and set(data) <= {ROOT, "live_trading"}:
        data = next(iter(data.values()))
    if not isinstance(data, dict):
        raise LiveConfigError([(ROOT, f"expected an object, got {_json_type(data)}"
                                      f"{_in(source)}")])
    return data


# --- the validator ----------------------------------------------------------------

def _coerce(value: Any, typ: type, key: str, source: str) -> Any:
    if typ is bool:
        if isinstance(value, bool):
            return value
        raise LiveConfigError([(key, f"expected true or false, got {_shown(value)}"
                                     f"{_in(source)}")])
    if isinstance(value, bool) or not isinstance(value, int | float) or (
            isinstance(value, float) and not math.isfinite(value)):
        kind = "a whole number" if typ is int else "a finite number"
        raise LiveConfigError([(key, f"expected {kind}, got {_shown(value)}{_in(source)}")])
    if typ is int:
        if isinstance(value, float) and not value.is_integer():
            raise LiveConfigError([(key, f"expected a whole number, got {_shown(value)}"
                                         f"{_in(source)}")])
        return int(value)
    return value


def _optional(typ: Any) -> tuple[Any, bool]:
    """``(inner type, True)`` for ``X | None``, else ``(typ, False)``."""
    if isinstance(typ, types.UnionType) or get_origin(typ) is Union:
        inner = [arg for arg in get_args(typ) if arg is not type(None)]
        return inner[0], True
    return typ, False


def _check_choice(value: Any, rule: Mapping[str, Any], key: str, source: str) -> Any:
    choices = rule["choices"]
    if isinstance(value, str) and value in choices:
        return value
    listed = " or ".join(f'"{choice}"' for choice in choices)
    raise LiveConfigError([(key, f"expected {listed}, got {_shown(value)}{_in(source)}")])


def _check_bounds(value: int | float, rule: Mapping[str, Any], key: str,
                  source: str) -> list[tuple[str, str]]:
    low, high = rule["min"], rule["max"]
    if low <= value <= high:
        return []
    unit = f" {rule['unit']}" if rule.get("unit") else ""
    return [(key, f"must be between {_number(low)} and {_number(high)}{unit}, got {_shown(value)}"
                  f"{_in(source)}")]


def _apply(obj: Any, data: Any, path: str, source: str) -> Any:
    if not isinstance(data, dict):
        raise LiveConfigError([(path, f"expected an object, got {_json_type(data)}"
                                      f"{_in(source)}")])
    hints = get_type_hints(type(obj))
    fields = {f.name: f for f in dataclasses.fields(obj)}
    changes: dict[str, Any] = {}
    given_as: dict[str, str] = {}
    errors: list[tuple[str, str]] = []
    for raw_key, value in data.items():
        raw_key = str(raw_key)
        name = raw_key if raw_key in fields else camel_to_snake(raw_key)
        key = f"{path}.{snake_to_camel(name)}"
        if name not in fields:
            shown = raw_key if len(raw_key) <= 40 else f"{raw_key[:24]}…"
            errors.append((f"{path}.{shown}", f"unknown key{_in(source)}"))
            continue
        if name in given_as:
            errors.append((key, f"given twice (as {given_as[name]} and {raw_key}){_in(source)}"))
            continue
        given_as[name] = raw_key
        typ, optional = _optional(hints[name])
        rule = fields[name].metadata
        try:
            if dataclasses.is_dataclass(typ):
                changes[name] = _apply(getattr(obj, name), value, key, source)
                continue
            if value is None and optional:  # null: this limit is off
                changes[name] = None
                continue
            if "choices" in rule:
                changes[name] = _check_choice(value, rule, key, source)
                continue
            coerced = _coerce(value, typ, key, source)
        except LiveConfigError as exc:
            errors.extend(exc.errors)
            continue
        if typ is bool:
            changes[name] = coerced
        elif bound_errors := _check_bounds(coerced, rule, key, source):
            errors.extend(bound_errors)
        else:
            changes[name] = coerced
    if errors:
        raise LiveConfigError(errors)
    return dataclasses.replace(obj, **changes)


def cross_field_errors(cfg: LiveTradingConfig, path: str = ROOT) -> list[tuple[str, str]]:
    """Rules that relate several keys; each error names the key to change."""
    errors = []
    lc = cfg.lifecycle
    if lc.warning_threshold_minutes >= lc.max_holding_time_minutes:
        errors.append((f"{path}.lifecycle.warningThresholdMinutes",
                       f"must be less than maxHoldingTimeMinutes ({lc.max_holding_time_minutes}), "
                       f"got {lc.warning_threshold_minutes}"))
    rm = cfg.risk_monitoring
    if rm.health_score_threshold > rm.warning_score_threshold:
        errors.append((f"{path}.riskMonitoring.healthScoreThreshold",
                       f"must not exceed warningScoreThreshold ({rm.warning_score_threshold}), "
                       f"got {rm.health_score_threshold}"))
    total = sum(getattr(rm.weights, f.name) for f in dataclasses.fields(rm.weights))
    if abs(total - 1.0) > 1e-9:
        errors.append((f"{path}.riskMonitoring.weights",
                       f"must sum to 1, got {round(total, 12)}"))
    if rm.volatility_short_candles >= rm.volatility_long_candles:
        errors.append((f"{path}.riskMonitoring.volatilityShortCandles",
                       f"must be less than volatilityLongCandles ({rm.volatility_long_candles})"))
    if rm.volume_recent_candles >= rm.volume_lookback_candles:
        errors.append((f"{path}.riskMonitoring.volumeRecentCandles",
                       f"must be less than volumeLookbackCandles ({rm.volume_lookback_candles})"))
    nt = cfg.notifications
    if nt.retry_first_delay_seconds > nt.retry_max_delay_seconds:
        errors.append((f"{path}.notifications.retryFirstDelaySeconds",
                       f"must not exceed retryMaxDelaySeconds ({nt.retry_max_delay_seconds:g}), "
                       f"got {nt.retry_first_delay_seconds:g}"))
    return errors


Layer = tuple[str, Any]  # (source named in errors, partial config)


def strategy_layer_errors(layer: Any, source: str = "") -> list[tuple[str, str]]:
    """``portfolio`` keys a strategy may not set: those about equity belong to its account."""
    data = _unwrap(layer, source)
    section = next((value for key, value in data.items()
                    if camel_to_snake(str(key)) == "portfolio"), None)
    if not isinstance(section, dict):
        return []  # not a section: the validator names it
    return [(f"{ROOT}.portfolio.{snake_to_camel(camel_to_snake(str(key)))}",
             "applies to an account or the whole platform, not to one strategy: set it on the "
             f"account (guard){_in(source)}")
            for key in section if camel_to_snake(str(key)) not in STRATEGY_PORTFOLIO_KEYS
            and camel_to_snake(str(key)) in _PORTFOLIO_FIELDS]


_PORTFOLIO_FIELDS = {f.name for f in dataclasses.fields(PortfolioConfig)}


def build(layers: Iterable[Layer], base: LiveTradingConfig | None = None, *,
          strategy: bool = False) -> LiveTradingConfig:
    """THE validator: apply layers ``(source, partial dict)`` in order, then the cross-field rules.

    Every layer of every origin (file, environment, strategy, import) goes through
    here; all errors of a layer are reported together. ``strategy``: the layers are a
    strategy's overrides, which may set only some ``portfolio`` keys.
    """
    cfg = base or LiveTradingConfig()
    for source, layer in layers:
        cfg = cfg.with_overrides(layer, source=source)
        if strategy and (scope_errors := strategy_layer_errors(layer, source)):
            raise LiveConfigError(scope_errors)
    errors = cross_field_errors(cfg)
    if errors:
        raise LiveConfigError(errors)
    return cfg


# --- reading sources -----------------------------------------------------------------

def _refuse_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            raise ValueError(f"key {key!r} given twice")
        seen[key] = value
    return seen


def _refuse_constant(name: str) -> None:
    raise ValueError(f"{name} is not a number")


def parse_json_text(text: str, *, source: str) -> dict[str, Any]:
    """A JSON document's ``liveTrading`` block; every failure is one line naming ``source``."""
    try:
        data = json.loads(text, object_pairs_hook=_refuse_duplicates,
                          parse_constant=_refuse_constant)
    except json.JSONDecodeError as exc:
        raise LiveConfigError([(source, f"not valid JSON: {exc}")]) from None
    except RecursionError:
        raise LiveConfigError([(source, "not valid JSON: nested too deeply")]) from None
    except ValueError as exc:  # duplicate keys, NaN/Infinity, a number of > 4300 digits
        raise LiveConfigError([(source, f"not valid JSON: {exc}")]) from None
    if not isinstance(data, dict):
        raise LiveConfigError([(source, f"expected a JSON object, got {_json_type(data)}")])
    return _unwrap(data, source)


def read_config_file(path: Path, *, source: str | None = None) -> dict[str, Any]:
    """A config file's ``liveTrading`` block: unreadable, huge or binary files named in one line."""
    source = source or str(path)
    try:
        with path.open("rb") as handle:
            raw = handle.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise LiveConfigError([(source, f"cannot read: {exc.strerror or exc}")]) from None
    if len(raw) > MAX_FILE_BYTES:
        raise LiveConfigError([(source, f"larger than {MAX_FILE_BYTES:,} bytes: not a config "
                                        "file")])
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise LiveConfigError([(source, f"not UTF-8 text (byte 0x{raw[exc.start]:02x} at "
                                        f"offset {exc.start}): not a JSON config file")]) from None
    return parse_json_text(text, source=source)


def _env_value(raw: str) -> Any:
    try:
        return json.loads(raw, parse_constant=_refuse_constant)
    except (ValueError, RecursionError):
        return raw  # compared as a string, so the error says "expected ..., got '...'"


def _env_entries(environ: Mapping[str, str] | None) -> list[tuple[str, list[str], Any]]:
    environ = os.environ if environ is None else environ
    entries = []
    for name in sorted(environ):
        if not name.startswith(ENV_PREFIX):
            continue
        parts = [p.lower() for p in name[len(ENV_PREFIX):].split("__")]
        if not all(parts):
            raise LiveConfigError([(name, "expected LIVE_TRADING__SECTION__KEY, got an empty "
                                          "part")])
        entries.append((name, parts, _env_value(environ[name])))
    return entries


def env_variables(environ: Mapping[str, str] | None = None) -> list[Layer]:
    """Each ``LIVE_TRADING__SECTION__KEY=value`` variable as its own layer, named in errors."""
    layers: list[Layer] = []
    for name, parts, value in _env_entries(environ):
        for part in reversed(parts):
            value = {part: value}
        layers.append((name, value))
    return layers


def env_layer(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The ``LIVE_TRADING__…`` variables merged into one nested partial config (for display)."""
    merged: dict[str, Any] = {}
    for _, parts, value in _env_entries(environ):
        node = merged
        for part in parts[:-1]:
            if not isinstance(node.get(part), dict):
                node[part] = {}
            node = node[part]
        node[parts[-1]] = value
    return merged


def file_layers() -> list[Layer]:
    """The config file written by ``live_config --import``, when there is one."""
    from django.conf import settings

    file_path = Path(getattr(settings, "LIVE_TRADING_FILE", ""))
    if str(file_path) in {"", "."} or not file_path.is_file():
        return []
    return [(str(file_path), read_config_file(file_path))]


def override_layers() -> list[Layer]:
    """The layers above the file: ``LIVE_TRADING_CONFIG`` then each ``LIVE_TRADING__…``."""
    from django.conf import settings

    layers: list[Layer] = []
    configured = getattr(settings, "LIVE_TRADING", None)
    if isinstance(configured, dict) and configured:
        layers.append(("settings.LIVE_TRADING", configured))
    elif isinstance(configured, str) and configured.strip():
        text = configured.strip()
        if text.startswith("{"):
            layers.append(("LIVE_TRADING_CONFIG", parse_json_text(text,
                                                                 source="LIVE_TRADING_CONFIG")))
        else:
            source = f"LIVE_TRADING_CONFIG={text}"
            layers.append((source, read_config_file(Path(text), source=source)))
    layers.extend(env_variables())
    return layers


def site_layers() -> list[Layer]:
    """The layers that come from settings, files and the environment (not strategies)."""
    return file_layers() + override_layers()


_site_cache: dict[str, LiveTradingConfig] = {}


def site_config() -> LiveTradingConfig:
    """The platform-wide effective config (cached; cleared when settings change)."""
    cfg = _site_cache.get("site")
    if cfg is None:
        cfg = build(site_layers())
        _site_cache["site"] = cfg
    return cfg


def clear_cache() -> None:
    _site_cache.clear()


# Sections that belong to an exchange account, not to a strategy (and the reverse).
ACCOUNT_SECTIONS = frozenset({"accountSync", "account_sync"})


def _refuse_sections(overrides: Any, *, allowed: bool, where: str) -> None:
    """A strategy may not set ``accountSync``; an account may set nothing else."""
    data = _unwrap(overrides, "")
    wrong = [key for key in data if (str(key) in ACCOUNT_SECTIONS) != allowed]
    if wrong:
        hint = ("set it on the exchange account" if not allowed
                else "set it on the strategy or the site config")
        raise LiveConfigError([(f"{ROOT}.{snake_to_camel(camel_to_snake(str(key)))}",
                                f"not a {where} setting: {hint}") for key in wrong])


def strategy_config(overrides: Any) -> LiveTradingConfig:
    """The effective config of a strategy: site config plus its overrides, validated."""
    if overrides == {}:
        return site_config()
    _refuse_sections(overrides, allowed=False, where="strategy")
    return build([("", overrides)], base=site_config(), strategy=True)


def account_sync_config(overrides: Any, *, account: str = "") -> AccountSyncConfig:
    """An exchange account's ``accountSync``: site config plus the account's overrides.

    Only the ``accountSync`` section may be overridden per account; the one validator
    (``build``) checks it and names the account in every error.
    """
    if not overrides:
        return site_config().account_sync
    _refuse_sections(overrides, allowed=True, where="per-account")
    source = f"account {account}" if account else ""
    return build([(source, overrides)], base=site_config()).account_sync


# --- documentation ------------------------------------------------------------------------

def bounds_table() -> list[tuple[str, str, str, str]]:
    """``(key, default, bounds, meaning)`` of every key, in declaration order (README table)."""
    rows: list[tuple[str, str, str, str]] = []

    def walk(obj: Any, path: str) -> None:
        for f in dataclasses.fields(obj):
            value = getattr(obj, f.name)
            key = f"{path}.{snake_to_camel(f.name)}" if path else snake_to_camel(f.name)
            if dataclasses.is_dataclass(value):
                walk(value, key)
                continue
            meta = f.metadata
            if isinstance(value, bool):
                bounds = "true / false"
            elif "choices" in meta:
                bounds = " / ".join(meta["choices"])
            else:
                unit = f" {meta['unit']}" if meta.get("unit") else ""
                low, high = (f"{int(v):,}" if float(v).is_integer() else repr(v)
                             for v in (meta["min"], meta["max"]))
                bounds = f"{low} … {high}{unit}"
                if meta.get("optional"):
                    bounds = f"null (off) or {bounds}"
            rows.append((key, json.dumps(value), bounds, meta.get("doc", "")))

    walk(LiveTradingConfig(), "")
    return rows


def bounds_markdown() -> str:
    lines = ["| key | default | bounds | meaning |", "|---|---|---|---|"]
    lines += [f"| `{key}` | {default} | {bounds} | {doc} |"
              for key, default, bounds, doc in bounds_table()]
    return "\n".join(lines)
