"""Reading closed trades from CSV or from a freqtrade backtest result.

Trades are parsed and validated one at a time while ``services.import_trade_file``
inserts them in batches inside one transaction: an error names the line (CSV) or
trade (freqtrade) and the field, and rolls back everything, so nothing is imported.

**CSV** (UTF-8, header row, comma-separated). Columns:

====================  ========  ==========================================================
column                required  meaning
====================  ========  ==========================================================
symbol                yes       e.g. ``BTC/USDT:USDT``
side                  yes       ``long`` or ``short`` (``buy``/``sell`` accepted)
quantity              yes       base quantity, > 0
entry_price           yes       > 0
exit_price            yes       > 0
opened_at             yes       ISO 8601; without an offset it is taken as UTC
closed_at             yes       ISO 8601, not before ``opened_at``
strategy              no*       strategy name (*required unless ``--strategy`` is given)
fees                  no        total fees paid, ≥ 0 (default 0)
pnl                   no        realised PnL net of fees (default: ±(exit − entry) × quantity − fees)
pnl_percent           no        PnL % of entry notional (default: pnl ÷ (entry × quantity) × 100)
exit_reason           no        signal, timeout, risk, manual or shutdown (default signal)
external_ref          no        your id of the trade; a trade whose strategy and
                                ``external_ref`` are already imported is skipped
====================  ========  ==========================================================

**freqtrade** backtest result (``backtest-result-….json``, or the ``.zip`` newer
versions write): ``{"strategy": {name: {"trades": [...]}}}``; from each trade
``pair``, ``open_date``, ``close_date``, ``open_rate``, ``close_rate``, ``amount``,
``profit_abs`` (→ pnl), ``profit_ratio`` (× 100 → pnl %), ``fee_open``/``fee_close``
(rates: fees = (fee_open × open_rate + fee_close × close_rate) × amount),
``is_short`` and ``exit_reason`` (``sell_reason`` in old files): stop losses and
liquidations become ``risk``, forced/emergency exits ``manual``, every other reason
(roi, exit signal, custom exits) ``signal``. The strategy is the result's name
unless ``--strategy`` is given; ``external_ref`` is ``freqtrade:<pair>:<open ms>``.
"""

from __future__ import annotations

import csv
import io
import json
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from execution.models import CloseReason
from lifecycle.models import PositionSide
from tradingsite.errors import DomainError

CSV_REQUIRED = ("symbol", "side", "quantity", "entry_price", "exit_price", "opened_at",
                "closed_at")
CSV_OPTIONAL = ("strategy", "fees", "pnl", "pnl_percent", "exit_reason", "external_ref")

FREQTRADE_RISK_EXITS = {"stop_loss", "stoploss", "stoploss_on_exchange", "trailing_stop_loss",
                        "liquidation"}
FREQTRADE_MANUAL_EXITS = {"force_exit", "force_sell", "emergency_exit", "emergency_sell"}

# Column limits of lifecycle.Trade: (decimal places, largest absolute value).
_MONEY = (10, Decimal("1e18"))
_QTY = (12, Decimal("1e16"))
_PERCENT = (6, Decimal("1e8"))
_MAX_HOLDING_SECONDS = 2**31 - 1


class TradeImportError(DomainError):
    """A trade file is wrong; the message names where and which field."""

    code = "trade_import_error"

    def __init__(self, where: str, field: str | None, message: str):
        self.where, self.field = where, field
        super().__init__(f"{where}, field '{field}': {message}" if field else f"{where}: {message}")


@dataclass(frozen=True)
class ImportedTrade:
    where: str
    strategy: str | None
    symbol: str
    side: str
    quantity: Decimal
    entry_price: Decimal
    exit_price: Decimal
    opened_at: datetime
    closed_at: datetime
    fees: Decimal
    pnl: Decimal
    pnl_percent: Decimal
    exit_reason: str
    external_ref: str

    @property
    def holding_seconds(self) -> int:
        return int((self.closed_at - self.opened_at).total_seconds())


def read_trade_file(path: Path, *, fmt: str = "auto") -> Iterator[ImportedTrade]:
    """Parse and validate the trades of ``path`` one by one (``fmt``: auto, csv, freqtrade)."""
    if fmt == "auto":
        fmt = "csv" if path.suffix.lower() == ".csv" else "freqtrade"
    try:
        if fmt == "csv":
            with path.open(encoding="utf-8-sig", newline="") as stream:
                yield from parse_csv(stream)
        else:
            yield from parse_freqtrade(_load_freqtrade_json(path), str(path.name))
    except OSError as exc:
        raise TradeImportError(str(path), None, f"cannot read: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise TradeImportError(str(path), None, f"not UTF-8 text: {exc.reason}") from exc


# --- CSV ------------------------------------------------------------------------------------


def parse_csv(stream: io.TextIOBase) -> Iterator[ImportedTrade]:
    reader = csv.DictReader(stream)
    columns = [c.strip() for c in reader.fieldnames or []]
    missing = [c for c in CSV_REQUIRED if c not in columns]
    if missing:
        raise TradeImportError("line 1 (header)", missing[0],
                               f"missing column; required: {', '.join(CSV_REQUIRED)}")
    unknown = [c for c in columns if c not in CSV_REQUIRED + CSV_OPTIONAL]
    if unknown:
        raise TradeImportError("line 1 (header)", unknown[0], "unknown column")
    reader.fieldnames = columns
    for row in reader:
        yield _csv_trade(_Fields(f"line {reader.line_num}", row))


def _csv_trade(f: _Fields) -> ImportedTrade:
    side = f.side("side")
    quantity = f.decimal("quantity", _QTY, positive=True)
    entry_price = f.decimal("entry_price", _MONEY, positive=True)
    exit_price = f.decimal("exit_price", _MONEY, positive=True)
    opened_at, closed_at = f.times("opened_at", "closed_at")
    fees = f.decimal("fees", _MONEY, minimum=Decimal(0), default=Decimal(0))
    direction = 1 if side == PositionSide.LONG else -1
    pnl = f.decimal("pnl", _MONEY, default=(exit_price - entry_price) * quantity * direction - fees)
    pnl_percent = f.decimal("pnl_percent", _PERCENT,
                            default=pnl / (entry_price * quantity) * 100)
    reason = f.text("exit_reason", default=CloseReason.SIGNAL).lower()
    if reason not in CloseReason.values:
        raise f.error("exit_reason", f"expected one of {', '.join(CloseReason.values)}, "
                                     f"got {reason!r}")
    return ImportedTrade(f.where, f.text("strategy", default="") or None, f.text("symbol"), side,
                         quantity, entry_price, exit_price, opened_at, closed_at, fees, pnl,
                         pnl_percent, reason, f.text("external_ref", default="")[:128])


# --- freqtrade --------------------------------------------------------------------------------


def _load_freqtrade_json(path: Path) -> Any:
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            names = [n for n in archive.namelist()
                     if n.endswith(".json") and not n.endswith((".meta.json", "_config.json"))]
            for name in names:
                data = _json(archive.read(name).decode("utf-8"), f"{path.name}:{name}")
                if isinstance(data, dict) and "strategy" in data:
                    return data
        raise TradeImportError(path.name, None, "no backtest result JSON in the archive")
    return _json(path.read_text(encoding="utf-8"), path.name)


def _json(text: str, source: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise TradeImportError(f"{source} line {exc.lineno}", None,
                               f"not valid JSON: {exc.msg}") from exc


def parse_freqtrade(data: Any, source: str) -> Iterator[ImportedTrade]:
    results = data.get("strategy") if isinstance(data, dict) else None
    if not isinstance(results, dict) or not results:
        raise TradeImportError(source, "strategy", "expected {name: {\"trades\": [...]}} "
                                                   "(a freqtrade backtest result)")
    for name, result in results.items():
        trades = result.get("trades") if isinstance(result, dict) else None
        if not isinstance(trades, list):
            raise TradeImportError(f"strategy {name!r}", "trades", "expected a list of trades")
        for number, raw in enumerate(trades, start=1):
            where = f"strategy {name!r} trade #{number}"
            if not isinstance(raw, dict):
                raise TradeImportError(where, None, "expected an object")
            yield _freqtrade_trade(name, _Fields(where, raw))


def _freqtrade_trade(strategy: str, f: _Fields) -> ImportedTrade:
    if f.raw.get("is_open"):
        raise f.error("is_open", "open trade: only closed trades can be imported")
    side = PositionSide.SHORT if f.raw.get("is_short") else PositionSide.LONG
    amount = f.decimal("amount", _QTY, positive=True)
    open_rate = f.decimal("open_rate", _MONEY, positive=True)
    close_rate = f.decimal("close_rate", _MONEY, positive=True)
    opened_at, closed_at = f.times("open_date", "close_date")
    fee_open = f.decimal("fee_open", _MONEY, minimum=Decimal(0), default=Decimal(0))
    fee_close = f.decimal("fee_close", _MONEY, minimum=Decimal(0), default=Decimal(0))
    fees = _quantize((fee_open * open_rate + fee_close * close_rate) * amount, _MONEY[0])
    pnl = f.decimal("profit_abs", _MONEY)
    pnl_percent = _quantize(f.decimal("profit_ratio", _MONEY) * 100, _PERCENT[0])
    reason_field = "exit_reason" if "exit_reason" in f.raw else "sell_reason"
    reason = f.text(reason_field, default="").lower()
    if reason in FREQTRADE_RISK_EXITS:
        exit_reason = CloseReason.RISK
    elif reason in FREQTRADE_MANUAL_EXITS:
        exit_reason = CloseReason.MANUAL
    else:
        exit_reason = CloseReason.SIGNAL
    pair = f.text("pair")
    opened_ms = int(opened_at.timestamp() * 1000)
    return ImportedTrade(f.where, strategy, pair, side, amount, open_rate, close_rate, opened_at,
                         closed_at, fees, pnl, pnl_percent, exit_reason,
                         f"freqtrade:{pair}:{opened_ms}"[:128])


# --- field parsing ------------------------------------------------------------------------------


def _quantize(value: Decimal, places: int) -> Decimal:
    return value.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_EVEN)


class _Fields:
    """Typed reads of one record's fields; every error names the record and the field."""

    def __init__(self, where: str, raw: dict[str, Any]):
        self.where, self.raw = where, raw

    def error(self, field: str, message: str) -> TradeImportError:
        return TradeImportError(self.where, field, message)

    def _value(self, field: str) -> Any:
        value = self.raw.get(field)
        return value.strip() if isinstance(value, str) else value

    def text(self, field: str, default: str | None = None) -> str:
        value = self._value(field)
        if value in (None, ""):
            if default is None:
                raise self.error(field, "required")
            return default
        if not isinstance(value, str):
            raise self.error(field, f"expected text, got {value!r}")
        if len(value) > 64 and field in ("symbol", "pair", "strategy"):
            raise self.error(field, "longer than 64 characters")
        return value

    def side(self, field: str) -> str:
        value = self.text(field).lower()
        sides = {"long": PositionSide.LONG, "buy": PositionSide.LONG,
                 "short": PositionSide.SHORT, "sell": PositionSide.SHORT}
        if value not in sides:
            raise self.error(field, f"expected long or short, got {value!r}")
        return sides[value]

    def decimal(self, field: str, limits: tuple[int, Decimal], *, positive: bool = False,
                minimum: Decimal | None = None, default: Decimal | None = None) -> Decimal:
        raw = self._value(field)
        if raw in (None, ""):
            if default is None:
                raise self.error(field, "required")
            value = default
        elif isinstance(raw, bool):
            raise self.error(field, f"expected a number, got {raw!r}")
        else:
            try:
                value = Decimal(str(raw))
            except InvalidOperation:
                raise self.error(field, f"expected a number, got {raw!r}")
            if not value.is_finite():
                raise self.error(field, f"expected a finite number, got {raw!r}")
        places, largest = limits
        shown = raw if raw not in (None, "") else str(value)
        if abs(value) >= largest:
            raise self.error(field, f"{shown!r} is too large (limit {largest:.0e})")
        if positive and value <= 0:
            raise self.error(field, f"must be > 0, got {shown!r}")
        if minimum is not None and value < minimum:
            raise self.error(field, f"must be ≥ {minimum}, got {shown!r}")
        return _quantize(value, places)

    def moment(self, field: str) -> datetime:
        raw = self._value(field)
        if raw in (None, ""):
            raise self.error(field, "required")
        try:
            if isinstance(raw, int | float) and not isinstance(raw, bool):
                return datetime.fromtimestamp(raw / 1000, tz=UTC)  # epoch milliseconds
            moment = datetime.fromisoformat(str(raw))
        except (ValueError, OverflowError, OSError):
            raise self.error(field, f"expected an ISO 8601 date and time, got {raw!r}")
        return moment if moment.tzinfo else moment.replace(tzinfo=UTC)

    def times(self, opened: str, closed: str) -> tuple[datetime, datetime]:
        opened_at, closed_at = self.moment(opened), self.moment(closed)
        if closed_at < opened_at:
            raise self.error(closed, f"{closed_at.isoformat()} is before {opened} "
                                     f"{opened_at.isoformat()}")
        if (closed_at - opened_at).total_seconds() > _MAX_HOLDING_SECONDS:
            raise self.error(closed, "holding time longer than 68 years")
        return opened_at, closed_at
