"""Set-based writes the ORM lacks: many rows, each with its own values, in one statement.

A risk check writes a snapshot and a new score for every held position (10,000 in the
benchmark). Django's ``bulk_create``/``bulk_update`` prepare every value through the
field and, for updates, build a CASE per field and row; here PostgreSQL receives the
rows as one ``COPY`` or one ``UPDATE … FROM unnest(arrays)`` whose array literals are
built directly. Values must be plain Python values the columns accept (``Decimal``,
``int``, ``str``, ``bool``, aware ``datetime``, ``None``; JSON fields take any
JSON-serialisable value). Other databases (the embedded SQLite default) get one
``executemany`` with the fields' own preparation.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from django.db import connections, router
from django.db.models import Field, JSONField, Model


def update_rows(model: type[Model], fields: Sequence[str], rows: Sequence[Sequence[Any]]) -> int:
    """Set ``fields`` of many rows to per-row values; ``rows`` are ``(pk, value, …)``.

    Returns the number of rows updated.
    """
    if not rows:
        return 0
    meta = model._meta
    connection = connections[router.db_for_write(model)]
    quote = connection.ops.quote_name
    targets = [meta.get_field(name) for name in fields]
    columns = [meta.pk, *targets]
    table, pk = quote(meta.db_table), quote(meta.pk.column)
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            arrays = ", ".join(f"%s::{field.db_type(connection)}[]" for field in columns)
            names = ", ".join(quote(field.column) for field in columns)
            assignments = ", ".join(f"{quote(f.column)} = v.{quote(f.column)}" for f in targets)
            literals = [_pg_array(column, field) for field, column
                        in zip(columns, zip(*rows, strict=True), strict=True)]
            cursor.execute(f"UPDATE {table} AS t SET {assignments} FROM unnest({arrays}) "
                           f"AS v({names}) WHERE t.{pk} = v.{pk}", literals)
        else:
            assignments = ", ".join(f"{quote(f.column)} = %s" for f in targets)
            cursor.executemany(f"UPDATE {table} SET {assignments} WHERE {pk} = %s",
                               [(*_prepared(row[1:], targets, connection),
                                 meta.pk.get_db_prep_save(row[0], connection)) for row in rows])
        return cursor.rowcount


def insert_rows(model: type[Model], fields: Sequence[str], rows: Sequence[Sequence[Any]]) -> int:
    """Insert many rows (``rows`` hold the values of ``fields`` in order); returns how many.

    No primary keys come back: for append-only rows nobody refers to yet (snapshots).
    """
    if not rows:
        return 0
    meta = model._meta
    connection = connections[router.db_for_write(model)]
    quote = connection.ops.quote_name
    targets = [meta.get_field(name) for name in fields]
    names = ", ".join(quote(f.column) for f in targets)
    table = quote(meta.db_table)
    json_columns = [i for i, f in enumerate(targets) if isinstance(f, JSONField)]
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            sql = f"COPY {table} ({names}) FROM STDIN"
            started = time.monotonic()
            with cursor.cursor.copy(sql) as copy:
                for row in rows:
                    if json_columns:
                        row = list(row)
                        for i in json_columns:
                            row[i] = json.dumps(row[i])
                    copy.write_row(row)
            if connection.queries_logged:  # COPY bypasses Django's cursor: log it like a query
                connection.queries_log.append({"sql": f"{sql} -- {len(rows)} rows",
                                               "time": f"{time.monotonic() - started:.3f}"})
        else:
            value_params = ", ".join(["%s"] * len(targets))
            cursor.executemany(f"INSERT INTO {table} ({names}) VALUES ({value_params})",
                               [_prepared(row, targets, connection) for row in rows])
    return len(rows)


def _prepared(values: Sequence[Any], fields: Sequence[Field], connection: Any) -> list[Any]:
    return [field.get_db_prep_save(value, connection) for field, value in
            zip(fields, values, strict=True)]


NUMERIC_TYPES = frozenset({"AutoField", "BigAutoField", "SmallAutoField", "IntegerField",
                           "BigIntegerField", "SmallIntegerField", "PositiveIntegerField",
                           "PositiveBigIntegerField", "PositiveSmallIntegerField",
                           "DecimalField", "FloatField"})


def _pg_array(values: Sequence[Any], field: Field) -> str:
    """A PostgreSQL array literal of one column's ``values`` (NULL for None).

    Numbers go in as they print; everything else is quoted and escaped.
    """
    kind = field.target_field.get_internal_type() if field.is_relation else (
        field.get_internal_type())
    if kind in NUMERIC_TYPES:
        items = ["NULL" if v is None else str(v) for v in values]
    elif kind == "DateTimeField":
        items = ["NULL" if v is None else f'"{_aware(v).isoformat()}"' for v in values]
    elif kind == "BooleanField":
        items = ["NULL" if v is None else ("t" if v else "f") for v in values]
    else:
        if isinstance(field, JSONField):
            values = [None if v is None else json.dumps(v) for v in values]
        items = ["NULL" if v is None else
                 '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"' for v in values]
    return "{" + ",".join(items) + "}"


def _aware(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError(f"naive datetime {value!r}: pass aware datetimes")
    return value
