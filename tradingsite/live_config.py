"""The live-trading configuration: defaults, layering, validation, JSON form.

One place holds every default (the dataclasses below). The effective config of a
strategy is built in layers, each validated with the offending key named:

1. the defaults here;
2. the config file ``settings.LIVE_TRADING_FILE`` (written by ``live_config --import``);
3. ``settings.LIVE_TRADING`` (env ``LIVE_TRADING_CONFIG``: inline JSON or a file path);
4. single keys from the environment: ``LIVE_TRADING__LIFECYCLE__MAX_HOLDING_TIME_MINUTES=90``;
5. the strategy's own ``live_trading`` overrides.

Keys are accepted in the camelCase JSON form of the original specification or in
snake_case; export always writes camelCase under a top-level ``liveTrading``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_type_hints

ENV_PREFIX = "LIVE_TRADING__"


class LiveConfigError(ValueError):
    """A configuration value is invalid; ``key`` is its dotted camelCase path."""

    def __init__(self, errors: list[tuple[str, str]]):
        self.errors = errors
        super().__init__("; ".join(f"{key}: {msg}" for key, msg in errors))


def _rule(*, gt: float | None = None, ge: float | None = None, le: float | None = None,
          lt: float | None = None, choices: tuple[str, ...] | None = None,
          doc: str = "") -> dict[str, Any]:
    return {"gt": gt, "ge": ge, "le": le, "lt": lt, "choices": choices, "doc": doc}


@dataclass(frozen=True)
class LifecycleConfig:
    max_holding_time_minutes: int = field(
        default=240, metadata=_rule(gt=0, doc="Minutes after which a position times out (CRITICAL)."))
    warning_threshold_minutes: int = field(
        default=180, metadata=_rule(gt=0, doc="Minutes after which a position enters WARNING."))
    enable_automatic_timeout: bool = field(
        default=True, metadata=_rule(doc="Queue an emergency close when a position times out."))


@dataclass(frozen=True)
class RiskWeights:
    time_at_risk: float = field(default=0.20, metadata=_rule(ge=0, le=1))
    drawdown: float = field(default=0.30, metadata=_rule(ge=0, le=1))
    volume: float = field(default=0.20, metadata=_rule(ge=0, le=1))
    volatility: float = field(default=0.15, metadata=_rule(ge=0, le=1))
    profitability: float = field(default=0.15, metadata=_rule(ge=0, le=1))


@dataclass(frozen=True)
class RiskMonitoringConfig:
    enabled: bool = field(default=True, metadata=_rule())
    check_interval_candles: int = field(
        default=5, metadata=_rule(gt=0, doc="Score open positions every N candles of the timeframe."))
    health_score_threshold: float = field(
        default=30, metadata=_rule(ge=0, le=100, doc="Below this score a position is CRITICAL."))
    warning_score_threshold: float = field(
        default=60, metadata=_rule(ge=0, le=100, doc="Below this score a position is WARNING."))
    emergency_close_on_critical: bool = field(default=True, metadata=_rule())
    weights: RiskWeights = field(default_factory=RiskWeights)
    drawdown_limit_percent: float = field(
        default=5.0, metadata=_rule(gt=0, doc="Adverse move from the best price that scores 0."))
    loss_limit_percent: float = field(
        default=3.0, metadata=_rule(gt=0, doc="Unrealised loss (after fees) that scores 0."))
    profit_target_percent: float = field(
        default=3.0, metadata=_rule(gt=0, doc="Unrealised profit (after fees) that scores 100."))
    fee_rate_percent: float = field(
        default=0.055, metadata=_rule(ge=0, lt=5, doc="Taker fee per side assumed for unrealised PnL."))
    volume_lookback_candles: int = field(
        default=20, metadata=_rule(gt=1, doc="Rolling window for the average volume."))
    volume_recent_candles: int = field(
        default=3, metadata=_rule(gt=0, doc="Candles averaged as 'recent' volume."))
    volatility_short_candles: int = field(
        default=12, metadata=_rule(gt=1, doc="Window of the recent realised volatility."))
    volatility_long_candles: int = field(
        default=96, metadata=_rule(gt=2, doc="Window of the baseline realised volatility."))
    volatility_spike_ratio: float = field(
        default=3.0, metadata=_rule(gt=1, doc="Recent/baseline volatility ratio that scores 0 "
                                              "(a ratio of 1 or less scores 100)."))
    missing_data_score: float = field(
        default=50, metadata=_rule(ge=0, le=100, doc="Neutral score of a component whose market "
                                                     "data is missing (flagged on the snapshot)."))
    stale_data_candles: int = field(
        default=3, metadata=_rule(gt=0, doc="Market data older than this many candles of the "
                                            "timeframe counts as missing."))
    component_collapse_score: float = field(
        default=10, metadata=_rule(ge=0, le=100, doc="A component below this raises an alert."))
    snapshot_retention_days: int = field(
        default=7, metadata=_rule(gt=0, doc="Health snapshots older than this are pruned."))


@dataclass(frozen=True)
class OrderExecutionConfig:
    max_retries: int = field(default=3, metadata=_rule(ge=0, le=10))
    retry_delay_ms: int = field(default=1000, metadata=_rule(ge=0))
    order_timeout_seconds: float = field(default=30, metadata=_rule(gt=0))
    max_slippage_percent: float = field(default=0.5, metadata=_rule(gt=0, lt=100))
    status_poll_interval_ms: int = field(default=1000, metadata=_rule(gt=0))
    in_doubt_lookups: int = field(
        default=3, metadata=_rule(ge=1, le=20, doc="Targeted lookups by client order id that "
                                                   "must all miss before an order whose "
                                                   "outcome is unknown counts as absent."))
    in_doubt_grace_seconds: float = field(
        default=30, metadata=_rule(ge=1, le=3600, doc="Those lookups span at least this long "
                                                      "from the moment the doubt began."))
    action_lease_seconds: float = field(
        default=15, metadata=_rule(ge=1, le=3600, doc="A running action whose worker went "
                                                      "silent this long is taken over."))


@dataclass(frozen=True)
class PerformanceAnalyticsConfig:
    enabled: bool = field(default=True, metadata=_rule())
    metrics_interval: int = field(
        default=10, metadata=_rule(gt=0, doc="Refresh cached reports every N closed trades."))
    annualization_days: int = field(default=365, metadata=_rule(gt=0))
    risk_free_rate: float = field(default=0.0, metadata=_rule(ge=0, lt=1))


@dataclass(frozen=True)
class ShutdownConfig:
    close_positions_on_shutdown: bool = field(default=False, metadata=_rule())
    shutdown_timeout_seconds: float = field(default=60, metadata=_rule(gt=0))
    cancel_orders_on_shutdown: bool = field(default=True, metadata=_rule())


@dataclass(frozen=True)
class LiveTradingConfig:
    enabled: bool = field(default=True, metadata=_rule())
    lifecycle: LifecycleConfig = field(default_factory=LifecycleConfig)
    risk_monitoring: RiskMonitoringConfig = field(default_factory=RiskMonitoringConfig)
    order_execution: OrderExecutionConfig = field(default_factory=OrderExecutionConfig)
    performance_analytics: PerformanceAnalyticsConfig = field(
        default_factory=PerformanceAnalyticsConfig)
    shutdown: ShutdownConfig = field(default_factory=ShutdownConfig)

    def to_json_dict(self) -> dict[str, Any]:
        """The JSON form of DESIGN.md: ``{"liveTrading": {...camelCase...}}``."""
        return {"liveTrading": _to_camel_dict(self)}

    def with_overrides(self, overrides: dict[str, Any] | None, *, where: str = "liveTrading"
                       ) -> LiveTradingConfig:
        """A new config with ``overrides`` (partial, camelCase or snake_case) applied."""
        if not overrides:
            return self
        return _apply(self, _unwrap(overrides), where)


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


def _unwrap(data: dict[str, Any]) -> dict[str, Any]:
    if isinstance(data, dict) and set(data) in ({"liveTrading"}, {"live_trading"}):
        return next(iter(data.values()))
    return data


# --- building and validating ----------------------------------------------------

def _coerce(value: Any, typ: type, key: str) -> Any:
    if typ is bool:
        if isinstance(value, bool):
            return value
        raise LiveConfigError([(key, f"expected true or false, got {value!r}")])
    if typ is int:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (
                isinstance(value, float) and not value.is_integer()):
            raise LiveConfigError([(key, f"expected a whole number, got {value!r}")])
        return int(value)
    if typ is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise LiveConfigError([(key, f"expected a finite number, got {value!r}")])
        return value
    return value


def _check_rule(value: Any, rule: dict[str, Any], key: str) -> list[tuple[str, str]]:
    errors = []
    if rule.get("gt") is not None and not value > rule["gt"]:
        errors.append((key, f"must be greater than {rule['gt']}, got {value!r}"))
    if rule.get("ge") is not None and not value >= rule["ge"]:
        errors.append((key, f"must be at least {rule['ge']}, got {value!r}"))
    if rule.get("lt") is not None and not value < rule["lt"]:
        errors.append((key, f"must be less than {rule['lt']}, got {value!r}"))
    if rule.get("le") is not None and not value <= rule["le"]:
        errors.append((key, f"must be at most {rule['le']}, got {value!r}"))
    return errors


def _apply(obj: Any, data: Any, path: str) -> Any:
    if not isinstance(data, dict):
        raise LiveConfigError([(path, f"expected an object, got {type(data).__name__}")])
    hints = get_type_hints(type(obj))
    fields = {f.name: f for f in dataclasses.fields(obj)}
    changes: dict[str, Any] = {}
    errors: list[tuple[str, str]] = []
    for raw_key, value in data.items():
        name = camel_to_snake(raw_key) if raw_key not in fields else raw_key
        key = f"{path}.{snake_to_camel(name)}"
        if name not in fields:
            errors.append((f"{path}.{raw_key}", "unknown key"))
            continue
        typ = hints[name]
        try:
            if dataclasses.is_dataclass(typ):
                changes[name] = _apply(getattr(obj, name), value, key)
            else:
                coerced = _coerce(value, typ, key)
                rule_errors = _check_rule(coerced, fields[name].metadata, key)
                if rule_errors:
                    errors.extend(rule_errors)
                else:
                    changes[name] = coerced
        except LiveConfigError as exc:
            errors.extend(exc.errors)
    if errors:
        raise LiveConfigError(errors)
    return dataclasses.replace(obj, **changes)


def cross_field_errors(cfg: LiveTradingConfig, path: str = "liveTrading") -> list[tuple[str, str]]:
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
    return errors


def build(overrides: list[tuple[str, dict[str, Any]]], base: LiveTradingConfig | None = None
          ) -> LiveTradingConfig:
    """Apply layers ``(label, partial dict)`` in order, then the cross-field rules."""
    cfg = base or LiveTradingConfig()
    for label, layer in overrides:
        cfg = cfg.with_overrides(layer, where=label)
    errors = cross_field_errors(cfg)
    if errors:
        raise LiveConfigError(errors)
    return cfg


def parse_json_text(text: str, *, source: str) -> dict[str, Any]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise LiveConfigError([(source, f"not valid JSON: {exc}")]) from exc
    if not isinstance(data, dict):
        raise LiveConfigError([(source, "expected a JSON object")])
    return _unwrap(data)


def env_layer(environ: dict[str, str] | os._Environ[str] | None = None) -> dict[str, Any]:
    """``LIVE_TRADING__SECTION__KEY=value`` variables as a nested partial config."""
    environ = os.environ if environ is None else environ
    layer: dict[str, Any] = {}
    for name, raw in environ.items():
        if not name.startswith(ENV_PREFIX):
            continue
        parts = [p.lower() for p in name[len(ENV_PREFIX):].split("__")]
        try:
            value: Any = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        node = layer
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return layer


def site_layers() -> list[tuple[str, dict[str, Any]]]:
    """The layers that come from settings, files and the environment (not strategies)."""
    from django.conf import settings

    layers: list[tuple[str, dict[str, Any]]] = []
    file_path = Path(getattr(settings, "LIVE_TRADING_FILE", ""))
    if str(file_path) not in {"", "."} and file_path.is_file():
        layers.append(("liveTrading",
                       parse_json_text(file_path.read_text(encoding="utf-8"),
                                       source=str(file_path))))
    configured = getattr(settings, "LIVE_TRADING", None)
    if isinstance(configured, dict) and configured:
        layers.append(("liveTrading", _unwrap(configured)))
    elif isinstance(configured, str) and configured.strip():
        text = configured.strip()
        if not text.startswith("{"):
            try:
                text = Path(text).read_text(encoding="utf-8")
            except OSError as exc:
                raise LiveConfigError([("LIVE_TRADING_CONFIG", f"cannot read {text!r}: {exc}")]
                                      ) from exc
        layers.append(("liveTrading", parse_json_text(text, source="LIVE_TRADING_CONFIG")))
    env = env_layer()
    if env:
        layers.append(("liveTrading", env))
    return layers


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


def strategy_config(overrides: dict[str, Any] | None) -> LiveTradingConfig:
    """The effective config of a strategy: site config plus its overrides, validated."""
    if not overrides:
        return site_config()
    cfg = site_config().with_overrides(overrides, where="liveTrading")
    errors = cross_field_errors(cfg)
    if errors:
        raise LiveConfigError(errors)
    return cfg
