"""The staging table of a trade import: all trades move to ``lifecycle_trade`` at once, or none.

Parsed trades land in a temporary table of this database session, in batches (a binary
``COPY`` on PostgreSQL, ``executemany`` on SQLite), typed like ``lifecycle_trade`` so a
value the database refuses is found while staging, with its row. ``publish`` then,
in the caller's transaction, drops the staged trades whose ``(strategy, external_ref)``
is already stored (one pass over the stored refs) and moves the rest with one
``INSERT … SELECT``, keeping the first of a ref repeated in the file.
Nothing of the import is visible to anyone before that statement commits.
"""

from __future__ import annotations

import operator
import re
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db import DatabaseError, connections, transaction

from analytics.importers import ROW_FIELDS, Row, TradeBatch, TradeImportError
from lifecycle.models import Strategy, Trade

TABLE = "analytics_trade_import_staging"
# (column, PostgreSQL type, SQLite type); ``seq`` is the trade's position in the file.
COLUMNS = (
    ("seq", "integer", "integer"),
    ("strategy", "varchar(64)", "text"),
    ("symbol", "varchar(64)", "text"),
    ("side", "varchar(5)", "text"),
    ("quantity", "numeric(28, 12)", "decimal"),
    ("entry_price", "numeric(28, 10)", "decimal"),
    ("exit_price", "numeric(28, 10)", "decimal"),
    ("opened_at", "bigint", "datetime"),  # PostgreSQL: µs since the epoch (cheap to write)
    ("closed_at", "bigint", "datetime"),
    ("fees", "numeric(28, 10)", "decimal"),
    ("pnl", "numeric(28, 10)", "decimal"),
    ("pnl_percent", "numeric(14, 6)", "decimal"),
    ("holding_seconds", "integer", "integer"),
    ("exit_reason", "varchar(16)", "text"),
    ("external_ref", "varchar(128)", "text"),
)
TRADE_COLUMNS = [name for name, _, _ in COLUMNS[2:]]
TIME_COLUMNS = ("opened_at", "closed_at")
TEXT_FIELDS = ("strategy", "symbol", "side", "exit_reason", "external_ref")
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
ONE_US = timedelta(microseconds=1)
_COPY_CONTEXT = re.compile(r"line (\d+), column (\w+)")
_EXTERNAL_REF = operator.itemgetter(ROW_FIELDS.index("external_ref"))
_COPY_SPECIAL = re.compile(r"[\\\t\n\r]")


def _copy_escaped(value: str) -> str:
    return (value.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n")
            .replace("\r", "\\r"))


class TradeStaging:
    """A temporary table for one import on one connection (``with`` drops it)."""

    def __init__(self, using: str):
        self.connection = connections[using]
        self.using = using
        self.postgres = self.connection.vendor == "postgresql"
        self.staged = 0
        self.with_refs = False

    def __enter__(self) -> TradeStaging:
        types = [(name, pg if self.postgres else lite) for name, pg, lite in COLUMNS]
        with self.connection.cursor() as cursor:
            cursor.execute(f"DROP TABLE IF EXISTS {TABLE}")
            cursor.execute(f"CREATE TEMPORARY TABLE {TABLE} ("
                           + ", ".join(f"{name} {typ} NOT NULL" for name, typ in types) + ")")
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            with self.connection.cursor() as cursor:
                cursor.execute(f"DROP TABLE IF EXISTS {TABLE}")
        except DatabaseError:  # the session is gone: so is its temporary table
            pass

    def add(self, batch: TradeBatch) -> None:
        """Stage a batch whose rows name their strategy; a value the database refuses names
        its row."""
        first = self.staged
        self.with_refs = self.with_refs or any(map(_EXTERNAL_REF, batch.rows))
        try:
            with transaction.atomic(using=self.using):  # a savepoint inside a caller's transaction
                if self.postgres:
                    self._copy(first, batch.rows)
                else:
                    self._insert(first, batch.rows)
        except DatabaseError as exc:
            raise self._located(exc, batch) from None
        self.staged += len(batch.rows)

    def _copy(self, first: int, rows: list[Row]) -> None:
        """COPY in text format, the lines built here: much cheaper than adapting each value."""
        columns: list[Any] = list(zip(*rows, strict=True))
        for index, name in enumerate(ROW_FIELDS):
            if name in TIME_COLUMNS:
                columns[index] = [(moment - EPOCH) // ONE_US for moment in columns[index]]
            elif name in TEXT_FIELDS and _COPY_SPECIAL.search("\x1f".join(columns[index])):
                columns[index] = list(map(_copy_escaped, columns[index]))
        data = "\n".join(map("\t".join, zip(map(str, range(first, first + len(rows))),
                                             *(map(str, column) for column in columns),
                                             strict=True))) + "\n"
        names = ", ".join(name for name, _, _ in COLUMNS)
        with self.connection.cursor() as cursor, self.connection.wrap_database_errors:
            with cursor.cursor.copy(f"COPY {TABLE} ({names}) FROM STDIN") as copy:
                copy.write(data)

    def _insert(self, first: int, rows: list[Row]) -> None:
        """SQLite stores what Django's fields would: the same text for decimals and times."""
        fields = [Trade._meta.get_field(name) for name in TRADE_COLUMNS]
        connection = self.connection
        prepared = [(first + n, row[0], *(field.get_db_prep_save(value, connection)
                                          for field, value in zip(fields, row[1:], strict=True)))
                    for n, row in enumerate(rows)]
        placeholders = ", ".join(["%s"] * len(COLUMNS))
        with self.connection.cursor() as cursor:
            cursor.executemany(f"INSERT INTO {TABLE} VALUES ({placeholders})", prepared)

    def _located(self, exc: DatabaseError, batch: TradeBatch) -> TradeImportError:
        """The row and column PostgreSQL names in a COPY error; else the batch's range."""
        cause = exc.__cause__ or exc
        diag = getattr(cause, "diag", None)
        context = getattr(diag, "context", None) or ""
        message = (getattr(diag, "message_primary", None) or str(exc)).splitlines()[0]
        match = _COPY_CONTEXT.search(context)
        if match and 0 < int(match.group(1)) <= len(batch.rows):
            return TradeImportError(batch.where(int(match.group(1)) - 1), match.group(2),
                                    f"refused by the database: {message}")
        return TradeImportError(f"{batch.where(0)} … {batch.where(len(batch.rows) - 1)}", None,
                                f"refused by the database: {message}")

    def _value(self, column: str) -> str:
        if self.postgres and column in TIME_COLUMNS:
            return f"TIMESTAMP WITH TIME ZONE 'epoch' + s.{column} * INTERVAL '1 microsecond'"
        return f"s.{column}"

    def publish(self, *, created_at: datetime) -> int:
        """Move the staged trades into ``lifecycle_trade``; how many moved."""
        qn = self.connection.ops.quote_name
        trade, strategy = qn(Trade._meta.db_table), qn(Strategy._meta.db_table)
        columns = ", ".join(qn(c) for c in ["strategy_id", *TRADE_COLUMNS, "created_at"])
        values = ", ".join(["st.id", *(self._value(c) for c in TRADE_COLUMNS), "%s"])
        joined = f"{TABLE} s JOIN {strategy} st ON st.name = s.strategy"
        if self.with_refs:  # ... and of the rest, the first of each (strategy, ref) in the file
            joined = (f"(SELECT s.*, ROW_NUMBER() OVER (PARTITION BY s.strategy, s.external_ref "
                      f"ORDER BY s.seq) AS nth FROM {TABLE} s) s "
                      f"JOIN {strategy} st ON st.name = s.strategy "
                      "WHERE s.external_ref = '' OR s.nth = 1")
        created = Trade._meta.get_field("created_at").get_db_prep_save(created_at,
                                                                       self.connection)
        with self.connection.cursor() as cursor:
            if self.postgres:
                cursor.execute("SET LOCAL work_mem = '64MB'")  # sort the batch in memory
            if self.with_refs:  # drop what is stored already: one pass over the stored refs ...
                cursor.execute(f"DELETE FROM {TABLE} WHERE external_ref <> '' AND "
                               f"(strategy, external_ref) IN (SELECT st.name, t.external_ref "
                               f"FROM {trade} t JOIN {strategy} st ON st.id = t.strategy_id "
                               f"WHERE t.external_ref <> '')")
            cursor.execute(f"INSERT INTO {trade} ({columns}) SELECT {values} FROM {joined} "
                           "ORDER BY s.seq", [created])
            return cursor.rowcount
