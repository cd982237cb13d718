"""Reading closed trades from CSV or from a freqtrade backtest result.

The file is streamed in batches (``read_trade_batches``): ``services.import_trade_file``
stages each batch and publishes them all at the end, or none. Everything the database
would refuse is refused here first, with the line (CSV) or trade (freqtrade) and the
field named: NUL characters, over-long text (never truncated), numbers beyond a column,
non-ASCII digits, time zone offsets outside −12:00 … +14:00, dates before 2000 or in
the future. Archives and JSON files are bounded by their uncompressed size.

The rules live in ``_Fields`` (one record at a time, with the precise message). A CSV
batch is first converted column by column (``_csv_columns``: the same rules, applied
with C-speed ``map``/``min``/``max``); when any value fails there, the batch is read
again record by record, which names the first bad line and field.

**CSV** (UTF-8, header row, comma-separated). Columns:

====================  ========  ==========================================================
column                required  meaning
====================  ========  ==========================================================
symbol                yes       e.g. ``BTC/USDT:USDT``
side                  yes       ``long`` or ``short`` (``buy``/``sell`` accepted)
quantity              yes       base quantity, > 0
entry_price           yes       > 0
exit_price            yes       > 0
opened_at             yes       ISO 8601 after 2000-01-01; without an offset it is UTC
closed_at             yes       ISO 8601, not before ``opened_at``, at most a day ahead
strategy              no*       strategy name (*required unless ``--strategy`` is given)
fees                  no        total fees paid, ≥ 0 (default 0)
pnl                   no        realised PnL net of fees (default: ±(exit − entry) × quantity − fees)
pnl_percent           no        PnL % of entry notional (default: pnl ÷ (entry × quantity) × 100)
exit_reason           no        signal, timeout, risk, manual or shutdown (default signal)
external_ref          no        your id of the trade (≤ 128 characters); a trade whose
                                strategy and ``external_ref`` are already imported is skipped
====================  ========  ==========================================================

**freqtrade** backtest result (``backtest-result-….json``, or the ``.zip`` newer
versions write): ``{"strategy": {name: {"trades": [...]}}}``; from each trade
``pair``, ``open_date``, ``close_date``, ``open_rate``, ``close_rate``, ``amount``,
``profit_abs`` (→ pnl), ``profit_ratio`` (× 100 → pnl %), ``fee_open``/``fee_close``
(rates: fees = (fee_open × open_rate + fee_close × close_rate) × amount),
``is_short`` and ``exit_reason`` (``sell_reason`` in old files): stop losses and
liquidations become ``risk``, forced/emergency exits ``manual``, every other reason
(roi, exit signal, custom exits) ``signal``. The strategy is the result's name
unless ``--strategy`` is given; ``external_ref`` is ``freqtrade:<pair>:<open ms>``. The
JSON (alone or inside the archive) may be at most ``MAX_JSON_BYTES`` uncompressed.
"""

from __future__ import annotations

import csv
import itertools
import json
import operator
import re
import zipfile
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path
from typing import Any

from django.utils import timezone

from lifecycle.models import PositionSide
from tradingsite.domain import CloseReason
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
_MAX_HOLDING = timedelta(seconds=_MAX_HOLDING_SECONDS)
# Text columns of lifecycle.Trade / Strategy: longer values are refused, never cut.
TEXT_LIMITS = {"symbol": 64, "pair": 64, "strategy": 64, "external_ref": 128}
_TEXT_DEFAULT_LIMIT = 64
# Real time zones lie between UTC−12 and UTC+14.
_MIN_OFFSET, _MAX_OFFSET = timedelta(hours=-12), timedelta(hours=14)
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
MAX_JSON_BYTES = 64 * 2**20  # a freqtrade result, alone or uncompressed inside its .zip
MAX_ARCHIVE_MEMBERS = 1000
_ASCII_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?", re.ASCII).fullmatch
_STEPS = {places: Decimal(1).scaleb(-places) for places in (6, 10, 12)}
# A value with more decimal places than its column: it must be rounded (so must an exponent).
_MORE_PLACES = {places: re.compile(rf"\.\d{{{places + 1}}}").search for places in _STEPS}
_ANY_BLANK = re.compile(r"\s").search
_EXIT_REASONS = frozenset(CloseReason.values)
_ZERO_MONEY = Decimal(0).quantize(_STEPS[_MONEY[0]])
_SIDES = {"long": PositionSide.LONG, "buy": PositionSide.LONG,
          "short": PositionSide.SHORT, "sell": PositionSide.SHORT}


class TradeImportError(DomainError):
    """A trade file is wrong; the message names where and which field."""

    code = "trade_import_error"

    def __init__(self, where: str, field: str | None, message: str):
        self.where, self.field = where, field
        super().__init__(f"{where}, field '{field}': {message}" if field else f"{where}: {message}")


@dataclass(frozen=True, slots=True)
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

    def row(self) -> Row:
        return (self.strategy, self.symbol, self.side, self.quantity, self.entry_price,
                self.exit_price, self.opened_at, self.closed_at, self.fees, self.pnl,
                self.pnl_percent, self.holding_seconds, self.exit_reason, self.external_ref)


ROW_FIELDS = ("strategy", "symbol", "side", "quantity", "entry_price", "exit_price", "opened_at",
              "closed_at", "fees", "pnl", "pnl_percent", "holding_seconds", "exit_reason",
              "external_ref")
Row = tuple[Any, ...]  # the values of ROW_FIELDS; strategy None when the file names none


@dataclass(frozen=True)
class TradeBatch:
    """Validated trades as rows (``ROW_FIELDS``) and where each came from, for messages."""

    rows: list[Row]
    wheres: list[str] | None = None  # freqtrade: one per row
    lines: list[int] | None = None  # CSV: the line each row ended on ...
    first_line: int = 0  # ... or, when ``lines`` is None, row i is on line first_line + i

    def where(self, index: int) -> str:
        if self.wheres is not None:
            return self.wheres[index]
        return f"line {self.lines[index] if self.lines is not None else self.first_line + index}"


def read_trade_batches(path: Path, *, fmt: str = "auto", size: int = 50_000
                       ) -> Iterator[TradeBatch]:
    """The validated trades of ``path`` in batches of ``size`` (``fmt``: auto, csv, freqtrade)."""
    if fmt == "auto":
        fmt = "csv" if path.suffix.lower() == ".csv" else "freqtrade"
    try:
        if fmt == "csv":
            with path.open("rb") as stream:
                yield from parse_csv(_text_lines(stream), size)
        else:
            trades = parse_freqtrade(_load_freqtrade_json(path), str(path.name))
            while chunk := list(itertools.islice(trades, size)):
                yield TradeBatch([t.row() for t in chunk], wheres=[t.where for t in chunk])
    except OSError as exc:
        raise TradeImportError(str(path), None, f"cannot read: {exc.strerror or exc}") from None


def _text_lines(stream: Iterable[bytes]) -> Iterator[str]:
    """The lines of a binary stream as text; bytes that are not UTF-8 name their line."""
    for number, raw in enumerate(stream, start=1):
        try:
            yield raw.decode("utf-8-sig" if number == 1 else "utf-8")
        except UnicodeDecodeError as exc:
            raise TradeImportError(f"line {number}", None,
                                   f"not UTF-8 text ({exc.reason})") from None


def latest_allowed() -> datetime:
    """A trade closed after this is refused: clocks differ, but not by more than a day."""
    return timezone.now() + timedelta(days=1)


# --- CSV ------------------------------------------------------------------------------------


def parse_csv(stream: Iterable[str], size: int = 50_000) -> Iterator[TradeBatch]:
    reader = csv.reader(stream, strict=True)
    try:
        header = next(reader, [])
    except (csv.Error, UnicodeDecodeError) as exc:
        raise TradeImportError("line 1 (header)", None, _unreadable(exc)) from None
    columns = [c.strip() for c in header]
    missing = [c for c in CSV_REQUIRED if c not in columns]
    if missing:
        raise TradeImportError("line 1 (header)", missing[0],
                               f"missing column; required: {', '.join(CSV_REQUIRED)}")
    unknown = [c for c in columns if c not in CSV_REQUIRED + CSV_OPTIONAL]
    if unknown:
        raise TradeImportError("line 1 (header)", unknown[0], "unknown column")
    latest = latest_allowed()
    while True:
        start = reader.line_num
        try:
            rows = list(itertools.islice(reader, size))
        except (csv.Error, UnicodeDecodeError) as exc:
            raise TradeImportError(f"line {reader.line_num + 1}", None, _unreadable(exc)) from None
        if not rows:
            return
        lines = _record_lines(rows, start, reader.line_num)
        if lines is not None:  # blank lines, or records over several lines
            kept = [(row, line) for row, line in zip(rows, lines, strict=True) if row]
            if not kept:
                continue
            rows, lines = [row for row, _ in kept], [line for _, line in kept]
        yield _csv_batch(columns, rows, lines, start, latest)


def _record_lines(rows: list[list[str]], start: int, end: int) -> list[int] | None:
    """The line each record ends on, or ``None`` when record i simply ends on ``start + i + 1``."""
    if end - start == len(rows) and all(rows):
        return None
    lines, line = [], start
    for row in rows:
        line += 1 + sum(field.count("\n") + field.count("\r") - field.count("\r\n")
                        for field in row)
        lines.append(line)
    return lines


def _unreadable(exc: Exception) -> str:
    if isinstance(exc, UnicodeDecodeError):
        return f"not UTF-8 text ({exc.reason})"
    return f"not readable as CSV: {exc}"


def _csv_batch(columns: list[str], rows: list[list[str]], lines: list[int] | None, start: int,
               latest: datetime) -> TradeBatch:
    """Column by column when every value passes; else record by record, naming the first bad one.

    The record-by-record pass raises on the first bad line; should it find none (the
    column pass is never more lenient), its rows are used.
    """
    batch = TradeBatch([], lines=lines, first_line=start + 1)
    try:
        return replace(batch, rows=_csv_columns(columns, rows, latest))
    except _Doubt:
        pass
    width = len(columns)
    checked = []
    for index, row in enumerate(rows):
        where = batch.where(index)
        if len(row) != width:
            raise TradeImportError(where, None, f"expected {width} fields, got {len(row)}")
        checked.append(_csv_trade(_Fields(where, dict(zip(columns, row, strict=True)),
                                          latest)).row())
    return replace(batch, rows=checked)


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
    if reason not in _EXIT_REASONS:
        raise f.error("exit_reason", f"expected one of {', '.join(CloseReason.values)}, "
                                     f"got {reason[:40]!r}")
    return ImportedTrade(f.where, f.text("strategy", default="") or None, f.text("symbol"), side,
                         quantity, entry_price, exit_price, opened_at, closed_at, fees, pnl,
                         pnl_percent, reason, f.text("external_ref", default=""))


class _Doubt(Exception):
    """A value failed a column check: the batch is read record by record instead."""


def _csv_columns(columns: list[str], rows: list[list[str]], latest: datetime) -> list[Row]:
    """The rules of ``_Fields`` over whole columns; raises ``_Doubt`` at the first failure."""
    width = len(columns)
    if any(len(row) != width for row in rows):
        raise _Doubt
    by_name = dict(zip(columns, zip(*rows, strict=True), strict=True))
    n = len(rows)

    def stripped(column: tuple[str, ...]) -> tuple[list[str] | tuple[str, ...], str]:
        """The values without surrounding blanks, and joined (one C-speed scan for checks)."""
        joined = "\x01".join(column)  # \x01: not a blank, not in any valid value
        if _ANY_BLANK(joined) is None:
            return column, joined
        values = [value.strip() for value in column]
        return values, "\x01".join(values)

    def text(name: str, default: str | None) -> list[str] | tuple[str, ...]:
        column = by_name.get(name)
        if column is None:
            if default is None:
                raise _Doubt
            return [default] * n
        values, joined = stripped(column)
        if "\x00" in joined or max(map(len, values)) > TEXT_LIMITS.get(name, _TEXT_DEFAULT_LIMIT):
            raise _Doubt
        if default is None and not all(values):
            raise _Doubt
        return [value or default for value in values] if default else values

    def number(name: str, limits: tuple[int, Decimal], low: Decimal | None, strict: bool
               ) -> list[Decimal] | None:
        column = by_name.get(name)
        if column is None:
            return None
        values, joined = stripped(column)
        if not all(map(_ASCII_NUMBER, values)):  # an empty value fails here too
            raise _Doubt
        exact = ("e" not in joined and "E" not in joined
                 and _MORE_PLACES[limits[0]](joined) is None)  # nothing to round
        return checked(list(map(Decimal, values)), limits, low, strict, exact=exact)

    def checked(values: list[Decimal], limits: tuple[int, Decimal], low: Decimal | None,
                strict: bool, exact: bool = False) -> list[Decimal]:
        places, largest = limits
        if max(map(abs, values)) >= largest:
            raise _Doubt
        if low is not None and (min(values) <= low if strict else min(values) < low):
            raise _Doubt
        if exact:
            return values
        step = _STEPS[places]
        return [value.quantize(step, rounding=ROUND_HALF_EVEN) for value in values]

    def moments(name: str) -> list[datetime]:
        values = [value.strip() for value in by_name[name]]
        if not all(map(str.isascii, values)):
            raise _Doubt
        try:
            parsed = list(map(datetime.fromisoformat, values))
        except ValueError:
            raise _Doubt from None
        offsets = set(map(datetime.utcoffset, parsed))
        if any(offset is not None and not _MIN_OFFSET <= offset <= _MAX_OFFSET
               for offset in offsets):
            raise _Doubt
        try:
            utc = [moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
                   for moment in parsed]
        except OverflowError:
            raise _Doubt from None
        if min(utc) < EARLIEST or max(utc) > latest:
            raise _Doubt
        return utc

    sides = [_SIDES.get(value.strip().lower()) for value in by_name["side"]]
    if None in sides:
        raise _Doubt
    quantity = number("quantity", _QTY, Decimal(0), True)
    entry = number("entry_price", _MONEY, Decimal(0), True)
    exit_ = number("exit_price", _MONEY, Decimal(0), True)
    opened, closed = moments("opened_at"), moments("closed_at")
    if any(map(operator.gt, opened, closed)):
        raise _Doubt
    held = list(map(operator.sub, closed, opened))
    if max(held) > _MAX_HOLDING:
        raise _Doubt
    holding = [int(delta.total_seconds()) for delta in held]
    fees = number("fees", _MONEY, Decimal(0), False) or [_ZERO_MONEY] * n
    pnl = number("pnl", _MONEY, None, False) or checked(
        [(x - e) * q * (1 if s == PositionSide.LONG else -1) - f
         for s, q, e, x, f in zip(sides, quantity, entry, exit_, fees, strict=True)],
        _MONEY, None, False)
    pnl_percent = number("pnl_percent", _PERCENT, None, False) or checked(
        [p / (e * q) * 100 for p, e, q in zip(pnl, entry, quantity, strict=True)],
        _PERCENT, None, False)
    reasons = [value.lower() for value in text("exit_reason", CloseReason.SIGNAL)]
    if not set(reasons) <= _EXIT_REASONS:
        raise _Doubt
    strategies = [value or None for value in text("strategy", "")] if "strategy" in by_name \
        else [None] * n
    return list(zip(strategies, text("symbol", None), sides, quantity, entry, exit_, opened,
                    closed, fees, pnl, pnl_percent, holding, reasons, text("external_ref", ""),
                    strict=True))


# --- freqtrade --------------------------------------------------------------------------------


def _load_freqtrade_json(path: Path) -> Any:
    """The backtest result as parsed JSON; a file or archive member over the bound is refused."""
    if zipfile.is_zipfile(path):
        try:
            return _archive_result(path)
        except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError) as exc:
            raise TradeImportError(path.name, None, f"not a readable archive: {exc}") from None
    with path.open("rb") as handle:
        return _json(_read_bounded(handle, path.stat().st_size, path.name), path.name)


def _archive_result(path: Path) -> Any:
    """The backtest result inside a freqtrade .zip, each member read within the bound."""
    with zipfile.ZipFile(path) as archive:
        members = archive.infolist()
        if len(members) > MAX_ARCHIVE_MEMBERS:
            raise TradeImportError(path.name, None, f"more than {MAX_ARCHIVE_MEMBERS} files "
                                                    "in the archive")
        for info in members:
            name = info.filename
            if not name.endswith(".json") or name.endswith((".meta.json", "_config.json")):
                continue
            source = f"{path.name}:{name}"
            with archive.open(info) as member:
                data = _json(_read_bounded(member, info.file_size, source), source)
            if isinstance(data, dict) and "strategy" in data:
                return data
    raise TradeImportError(path.name, None, "no backtest result JSON in the archive")


def _read_bounded(stream: Any, declared: int, source: str) -> bytes:
    """At most ``MAX_JSON_BYTES``, whatever the declared size says (a zip header can lie)."""
    too_large = TradeImportError(source, None, f"larger than {MAX_JSON_BYTES // 2**20} MiB "
                                               "uncompressed: not imported")
    if declared > MAX_JSON_BYTES:
        raise too_large
    data = stream.read(MAX_JSON_BYTES + 1)
    if len(data) > MAX_JSON_BYTES:
        raise too_large
    return data


def _json(raw: bytes, source: str) -> Any:
    try:
        return json.loads(raw.decode("utf-8-sig"))
    except UnicodeDecodeError as exc:
        raise TradeImportError(source, None, f"not UTF-8 text ({exc.reason})") from None
    except json.JSONDecodeError as exc:
        raise TradeImportError(f"{source} line {exc.lineno}", None,
                               f"not valid JSON: {exc.msg}") from None
    except RecursionError:
        raise TradeImportError(source, None, "not valid JSON: nested too deeply") from None
    except ValueError as exc:  # a number of more than 4300 digits
        raise TradeImportError(source, None, f"not valid JSON: {str(exc)[:80]}") from None


def parse_freqtrade(data: Any, source: str) -> Iterator[ImportedTrade]:
    results = data.get("strategy") if isinstance(data, dict) else None
    if not isinstance(results, dict) or not results:
        raise TradeImportError(source, "strategy", "expected {name: {\"trades\": [...]}} "
                                                   "(a freqtrade backtest result)")
    latest = latest_allowed()
    for name, result in results.items():
        trades = result.get("trades") if isinstance(result, dict) else None
        if not isinstance(trades, list):
            raise TradeImportError(f"strategy {name[:64]!r}", "trades",
                                   "expected a list of trades")
        for number, raw in enumerate(trades, start=1):
            where = f"strategy {name[:64]!r} trade #{number}"
            if not isinstance(raw, dict):
                raise TradeImportError(where, None, "expected an object")
            yield _freqtrade_trade(name, _Fields(where, raw, latest))


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
    pnl_percent = f.decimal("profit_ratio", _MONEY) * 100
    if abs(pnl_percent) >= _PERCENT[1]:
        raise f.error("profit_ratio", "too large (× 100 beyond the PnL % column)")
    pnl_percent = _quantize(pnl_percent, _PERCENT[0])
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
    strategy_name = f.check_text("strategy", strategy)
    return ImportedTrade(f.where, strategy_name, pair, side, amount, open_rate, close_rate,
                         opened_at, closed_at, fees, pnl, pnl_percent, exit_reason,
                         f"freqtrade:{pair}:{opened_ms}")


# --- field parsing ------------------------------------------------------------------------------


def _quantize(value: Decimal, places: int) -> Decimal:
    return value.quantize(_STEPS[places], rounding=ROUND_HALF_EVEN)


def _shown(raw: Any) -> str:
    text = repr(raw)
    return text if len(text) <= 40 else f"{text[:32]}…"


class _Fields:
    """Typed reads of one record's fields; every error names the record and the field."""

    __slots__ = ("latest", "raw", "where")

    def __init__(self, where: str, raw: dict[str, Any], latest: datetime):
        self.where, self.raw, self.latest = where, raw, latest

    def error(self, field: str, message: str) -> TradeImportError:
        return TradeImportError(self.where, field, message)

    def _value(self, field: str) -> Any:
        value = self.raw.get(field)
        if value.__class__ is str:
            if "\x00" in value:
                raise self.error(field, "contains a NUL character")
            return value.strip()
        return value

    def check_text(self, field: str, value: str) -> str:
        """Refuse what the database would: NUL characters, more than the column holds."""
        if "\x00" in value:
            raise self.error(field, "contains a NUL character")
        limit = TEXT_LIMITS.get(field, _TEXT_DEFAULT_LIMIT)
        if len(value) > limit:
            raise self.error(field, f"longer than {limit} characters ({len(value)}): "
                                    f"{value[:24]!r}…")
        return value

    def text(self, field: str, default: str | None = None) -> str:
        value = self._value(field)
        if value in (None, ""):
            if default is None:
                raise self.error(field, "required")
            return default
        if not isinstance(value, str):
            raise self.error(field, f"expected text, got {_shown(value)}")
        return self.check_text(field, value)

    def side(self, field: str) -> str:
        value = self.text(field).lower()
        if value not in _SIDES:
            raise self.error(field, f"expected long or short, got {_shown(value)}")
        return _SIDES[value]

    def decimal(self, field: str, limits: tuple[int, Decimal], *, positive: bool = False,
                minimum: Decimal | None = None, default: Decimal | None = None) -> Decimal:
        raw = self._value(field)
        if raw is None or raw == "":
            if default is None:
                raise self.error(field, "required")
            value = default
        elif isinstance(raw, bool) or not isinstance(raw, str | int | float):
            raise self.error(field, f"expected a number, got {_shown(raw)}")
        else:
            text = raw if isinstance(raw, str) else repr(raw)
            if _ASCII_NUMBER(text) is None:  # no "1_000", no Arabic digits, no NaN
                raise self.error(field, f"expected a number, got {_shown(raw)}")
            value = Decimal(text)
        places, largest = limits
        if abs(value) >= largest:
            raise self.error(field, f"{self._shown(raw, value)} is too large "
                                    f"(limit {largest:.0e})")
        if positive and value <= 0:
            raise self.error(field, f"must be > 0, got {self._shown(raw, value)}")
        if minimum is not None and value < minimum:
            raise self.error(field, f"must be ≥ {minimum}, got {self._shown(raw, value)}")
        return value.quantize(_STEPS[places], rounding=ROUND_HALF_EVEN)

    @staticmethod
    def _shown(raw: Any, value: Decimal) -> str:
        return _shown(raw) if raw is not None and raw != "" else repr(str(value))

    def moment(self, field: str) -> datetime:
        raw = self._value(field)
        if raw in (None, ""):
            raise self.error(field, "required")
        try:
            if isinstance(raw, int | float) and not isinstance(raw, bool):
                moment = datetime.fromtimestamp(raw / 1000, tz=UTC)  # epoch milliseconds
            elif isinstance(raw, str) and raw.isascii():
                moment = datetime.fromisoformat(raw)
            else:
                raise ValueError(raw)
        except (ValueError, OverflowError, OSError):
            raise self.error(field, f"expected an ISO 8601 date and time, got {_shown(raw)}"
                             ) from None
        offset = moment.utcoffset()
        if offset is None:
            moment = moment.replace(tzinfo=UTC)
        elif not _MIN_OFFSET <= offset <= _MAX_OFFSET:
            raise self.error(field, f"time zone offset {_offset(offset)} is outside "
                                    "-12:00 … +14:00")
        try:
            moment = moment.astimezone(UTC)
        except OverflowError:
            raise self.error(field, f"{_shown(raw)} is before 2000-01-01") from None
        if moment < EARLIEST:
            raise self.error(field, f"{moment.isoformat()} is before 2000-01-01")
        if moment > self.latest:
            raise self.error(field, f"{moment.isoformat()} is in the future")
        return moment

    def times(self, opened: str, closed: str) -> tuple[datetime, datetime]:
        opened_at, closed_at = self.moment(opened), self.moment(closed)
        if closed_at < opened_at:
            raise self.error(closed, f"{closed_at.isoformat()} is before {opened} "
                                     f"{opened_at.isoformat()}")
        if closed_at - opened_at > _MAX_HOLDING:
            raise self.error(closed, "holding time longer than 68 years")
        return opened_at, closed_at


def _offset(offset: timedelta) -> str:
    sign = "-" if offset < timedelta(0) else "+"
    minutes = abs(int(offset.total_seconds())) // 60
    return f"{sign}{minutes // 60:02d}:{minutes % 60:02d}"
