"""The one module of hand-written SQL: what the ORM lacks or makes too slow on hot paths.

Portable to PostgreSQL and SQLite ≥ 3.35 (the embedded default). Every statement
runs on ``connection_for(model)``: the database Django's router picks for writing
the model (the default database unless ``DATABASE_ROUTERS`` says otherwise).

Single rows (the order pipeline writes one row two or three times per order):
* ``insert_row`` / ``update_row`` — the statement text is built once per (model,
  fields) and only the values are prepared per call, with the fields' own
  ``pre_save``/``get_db_prep_save``, so values reach the database exactly as the ORM
  would send them. ``update_row`` is a compare-and-set (``expect``); both take an
  ``unless`` guard checked in the same statement.
* ``async_commit`` writes may be acknowledged by PostgreSQL before they reach disk
  (``synchronous_commit = off`` for that transaction only): only for writes that can
  be recovered elsewhere (see ``execution.pipeline.recoverable_write``). Outside a
  transaction the setting and the statement travel in one round trip.

Sets of rows (the timeout pass, the risk check over 10,000 positions):
* ``InArray`` — ``id IN (…)`` sent as ONE parameter (a PostgreSQL array, a SQLite
  JSON array), so a filter on 10,000 ids costs no more to send than one on ten.
* ``update_returning_pks`` — ``UPDATE … RETURNING id``: which rows the update moved.
* ``insert_select`` — ``INSERT INTO … SELECT …`` (optionally ``ON CONFLICT DO NOTHING
  RETURNING …``): rows derived from other rows without a round trip through Python.
* ``update_rows`` / ``insert_rows`` — many rows, each with its own values, in one
  statement: ``UPDATE … FROM unnest(arrays)`` and ``COPY`` on PostgreSQL (array
  literals built directly), one ``executemany`` with the fields' preparation
  elsewhere. ``update_rows_write`` is the same update as a ``Write``, run later or
  riding in the round trip of an ``insert_row`` (the gate's count of an order).
  Values must be plain Python values the columns accept (``Decimal``, ``int``,
  ``str``, ``bool``, aware ``datetime``, ``None``; JSON fields any JSON-serialisable
  value).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import Any

from django.db import connections, router
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import BooleanField, Expression, F, Field, JSONField, Model, QuerySet, Value
from django.db.models.sql import UpdateQuery
from django.utils import timezone


def connection_for(model: type[Model]) -> BaseDatabaseWrapper:
    """The connection every statement of this module runs on: where ``model`` is written."""
    return connections[router.db_for_write(model)]


@cache
def orm_converters(model: type[Model], names: tuple[str, ...], alias: str
                   ) -> list[tuple[Any, list[Any]]]:
    """Each column's expression and the converters the ORM would apply to it, for rows read
    by a raw cursor (``names`` in the model's field order)."""
    db = connections[alias]
    order = [f.attname for f in model._meta.concrete_fields]
    if [name for name in order if name in names] != list(names):
        raise ValueError(f"columns of {model.__name__} must be given in the model's order")
    out = []
    for name in names:
        field = model._meta.get_field(name)
        column = field.get_col(model._meta.db_table)
        out.append((column, db.ops.get_db_converters(column) + field.get_db_converters(db)))
    return out


def orm_convert(value: Any, converter: tuple[Any, list[Any]], db: BaseDatabaseWrapper) -> Any:
    """``value`` as the ORM would load it, through one column's ``orm_converters`` entry."""
    column, chain = converter
    for convert in chain:
        value = convert(value, column, db)
    return value


# --- single rows -------------------------------------------------------------------------

# This transaction may be acknowledged before its WAL reaches disk.
ASYNC_COMMIT = "SET LOCAL synchronous_commit TO OFF"


@cache
def _insert_sql(model: type[Model], guard: str | None, ignore_conflicts: bool
                ) -> tuple[str, tuple[Field, ...]]:
    qn = connection_for(model).ops.quote_name
    meta = model._meta
    fields = tuple(f for f in meta.concrete_fields if f is not meta.auto_field)
    columns = ", ".join(qn(f.column) for f in fields)
    values = ", ".join(["%s"] * len(fields))
    table, pk = qn(meta.db_table), qn(meta.pk.column)
    if guard is None:
        sql = f"INSERT INTO {table} ({columns}) VALUES ({values}) RETURNING {pk}"
    else:
        sql = (f"INSERT INTO {table} ({columns}) SELECT {values} WHERE NOT EXISTS ({guard}) "
               f"RETURNING {pk}")
    if ignore_conflicts:
        sql = sql.replace(" RETURNING ", " ON CONFLICT DO NOTHING RETURNING ")
    return sql, fields


@cache
def _update_sql(model: type[Model], names: tuple[str, ...], expect: tuple[str, ...],
                unless: str | None) -> tuple[str, tuple[Field, ...], tuple[Field, ...]]:
    qn = connection_for(model).ops.quote_name
    meta = model._meta
    fields = tuple(meta.get_field(name) for name in names)
    conditions = tuple(meta.get_field(name) for name in expect)
    assignments = ", ".join(f"{qn(f.column)} = %s" for f in fields)
    sql = f"UPDATE {qn(meta.db_table)} SET {assignments} WHERE {qn(meta.pk.column)} = %s"
    sql += "".join(f" AND {qn(f.column)} = %s" for f in conditions)
    if unless is not None:
        sql += f" AND NOT EXISTS ({unless})"
    return sql, fields, conditions


def _prepared(db: BaseDatabaseWrapper, instance: Model, fields: Sequence[Field], *,
              add: bool) -> list[Any]:
    return [f.get_db_prep_save(f.pre_save(instance, add), db) for f in fields]


def _run(db: BaseDatabaseWrapper, sql: str, params: list[Any], *, async_commit: bool
         ) -> tuple[int, Any]:
    """Execute; (rowcount, first row or None)."""
    split = async_commit and db.vendor == "postgresql" and not db.in_atomic_block
    if split:
        sql = f"{ASYNC_COMMIT}; {sql}"
    with db.cursor() as cursor:
        cursor.execute(sql, params)
        if split:
            cursor.nextset()
        row = cursor.fetchone() if cursor.description else None
        return cursor.rowcount, row


def insert_row(instance: Model, *, unless: str | None = None,
               ignore_conflicts: bool = False, riders: Sequence[Write] = ()) -> bool:
    """INSERT ``instance`` (its primary key is set); False if the ``unless`` query finds a row.

    ``unless`` is an SQL query without parameters (``SELECT 1 FROM … WHERE …``):
    checked in the same statement, so nothing can slip in between check and insert.
    ``ignore_conflicts``: a row that would break a unique constraint is not written
    (False), instead of raising; on PostgreSQL the statement first waits for a
    concurrent transaction that holds the same key, and sees its outcome.
    ``riders``: writes that belong with this row (the gate's count of it). On
    PostgreSQL they run in the insert's statement (``WITH … INSERT``: one round trip, and
    they run even when ``unless`` finds a row); elsewhere, or when a router puts one on
    another database, each runs just before it.
    """
    db = connection_for(type(instance))
    sql, fields = _insert_sql(type(instance), unless, ignore_conflicts)
    params = _prepared(db, instance, fields, add=True)
    riding = []
    for write in riders:
        if (db.vendor == "postgresql" and not write.many
                and connection_for(write.model).alias == db.alias):
            riding.append(write)
        else:
            write_run(write)
    if riding:
        sql = "WITH " + ", ".join(f"rider_{i} AS ({w.sql})" for i, w in enumerate(riding)) + (
            f" {sql}")
        params = [*(p for w in riding for p in w.params), *params]
    _, row = _run(db, sql, params, async_commit=False)
    if row is None:
        return False
    instance.pk = row[0]
    instance._state.adding, instance._state.db = False, db.alias
    return True


def update_row(instance: Model, names: Sequence[str], *, expect: Mapping[str, Any] | None = None,
               unless: str | None = None, async_commit: bool = False) -> bool:
    """UPDATE ``names`` of ``instance``'s row; False if no row was written.

    The conditions make it a compare-and-set: ``expect`` (field → value the row must
    still hold), ``unless`` (an SQL query, as for ``insert_row``, that must find nothing).
    """
    expect = expect or {}
    db = connection_for(type(instance))
    sql, fields, conditions = _update_sql(type(instance), tuple(names), tuple(expect), unless)
    params = [*_prepared(db, instance, fields, add=False), instance.pk,
              *(f.get_db_prep_save(expect[f.name], db) for f in conditions)]
    count, _ = _run(db, sql, params, async_commit=async_commit)
    return count > 0


# --- sets of rows: filters, updates and inserts derived in SQL ------------------------

class InArray(Expression):
    """``field IN ids`` as a single SQL parameter; usable in ``filter()`` and ``update()``."""

    output_field = BooleanField()
    conditional = True

    def __init__(self, field: str | Expression, ids: Iterable[int]):
        super().__init__()
        self.target = F(field) if isinstance(field, str) else field
        self.ids = [int(i) for i in ids]

    def get_source_expressions(self) -> list[Expression]:
        return [self.target]

    def set_source_expressions(self, exprs: list[Expression]) -> None:
        (self.target,) = exprs

    def as_sql(self, compiler, connection):  # any other backend: one parameter per id
        lhs, params = compiler.compile(self.target)
        if not self.ids:
            return "1 = 0", list(params)
        return f"{lhs} IN ({', '.join(['%s'] * len(self.ids))})", [*params, *self.ids]

    def as_postgresql(self, compiler, connection):
        lhs, params = compiler.compile(self.target)
        return f"{lhs} = ANY(%s::bigint[])", [*params, self.ids]

    def as_sqlite(self, compiler, connection):
        lhs, params = compiler.compile(self.target)
        return f"{lhs} IN (SELECT value FROM json_each(%s))", [*params, json.dumps(self.ids)]


def update_returning_pks(queryset: QuerySet, **values: Any) -> list[Any]:
    """``queryset.update(**values)`` that returns the primary keys of the rows it changed."""
    query = queryset.query.chain(UpdateQuery)
    query.add_update_values(values)
    connection = connection_for(queryset.model)
    sql, params = query.get_compiler(connection=connection).as_sql()
    pk_column = connection.ops.quote_name(queryset.model._meta.pk.column)
    with connection.cursor() as cursor:
        cursor.execute(f"{sql} RETURNING {pk_column}", params)
        return [row[0] for row in cursor.fetchall()]


def insert_select(model: type[Model], source: QuerySet, columns: Mapping[str, Any], *,
                  ignore_conflicts: bool = False, returning: Sequence[str] = ()) -> list[tuple]:
    """Insert one ``model`` row per row of ``source`` and return the ``returning`` columns.

    ``columns`` maps ``model`` field names to expressions over ``source`` (or plain
    values). Fields left out get their Python default (``auto_now`` fields: now;
    nullable fields without a default: NULL), so a new field with a default on the
    target model needs no change here. With ``ignore_conflicts`` a row that hits any
    unique constraint, partial ones included, is skipped and not returned.
    """
    connection = connection_for(model)
    selected: dict[str, Any] = {}
    for field in model._meta.concrete_fields:
        if field.primary_key:
            continue
        if field.name in columns or field.attname in columns:
            value = columns.get(field.name, columns.get(field.attname))
        elif getattr(field, "auto_now", False) or getattr(field, "auto_now_add", False):
            value = timezone.now()
        elif field.has_default():
            value = field.get_default()
        elif field.null:
            continue
        else:
            raise ValueError(f"{model.__name__}.{field.name} needs a value")
        if not hasattr(value, "resolve_expression"):
            value = Value(value, output_field=field)
        selected[field.column] = value
    if ignore_conflicts:
        # SQLite parses "INSERT … SELECT … ON CONFLICT" only when the SELECT has a WHERE.
        source = source.filter(pk__isnull=False)
    aliases = {f"_insert_{i}": expr for i, expr in enumerate(selected.values())}
    select_sql, params = (source.annotate(**aliases).values(*aliases).query
                          .get_compiler(connection=connection).as_sql())
    quote = connection.ops.quote_name
    sql = (f"INSERT INTO {quote(model._meta.db_table)} "
           f"({', '.join(quote(c) for c in selected)}) {select_sql}")
    if ignore_conflicts:
        sql += " ON CONFLICT DO NOTHING"
    if returning:
        sql += " RETURNING " + ", ".join(quote(model._meta.get_field(n).column) for n in returning)
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return [tuple(row) for row in cursor.fetchall()] if returning else []


# --- sets of rows with values of their own ---------------------------------------------

@dataclass(frozen=True)
class Write:
    """A statement prepared now and run later — alone (``write_run``), or riding in the round
    trip of a row's insert (``insert_row(..., riders=)``). ``many``: one set of parameters
    per row, run with ``executemany`` (never rides: it runs just before the insert)."""

    model: type[Model]
    sql: str
    params: list[Any]
    many: bool = False


@cache
def _update_rows_sql(model: type[Model], fields: tuple[str, ...], alias: str) -> str:
    meta = model._meta
    connection = connections[alias]
    quote = connection.ops.quote_name
    targets = [meta.get_field(name) for name in fields]
    table, pk = quote(meta.db_table), quote(meta.pk.column)
    if connection.vendor == "postgresql":
        columns = [meta.pk, *targets]
        arrays = ", ".join(f"%s::{field.db_type(connection)}[]" for field in columns)
        names = ", ".join(quote(field.column) for field in columns)
        assignments = ", ".join(f"{quote(f.column)} = v.{quote(f.column)}" for f in targets)
        return (f"UPDATE {table} AS t SET {assignments} FROM unnest({arrays}) "
                f"AS v({names}) WHERE t.{pk} = v.{pk}")
    assignments = ", ".join(f"{quote(f.column)} = %s" for f in targets)
    return f"UPDATE {table} SET {assignments} WHERE {pk} = %s"


def update_rows_write(model: type[Model], fields: Sequence[str], rows: Sequence[Sequence[Any]]
                      ) -> Write:
    """``update_rows`` as a ``Write``, to run later (``rows`` must not be empty)."""
    meta = model._meta
    connection = connection_for(model)
    sql = _update_rows_sql(model, tuple(fields), connection.alias)
    targets = [meta.get_field(name) for name in fields]
    if connection.vendor == "postgresql":
        return Write(model, sql, [_pg_array(column, field) for field, column in zip(
            [meta.pk, *targets], zip(*rows, strict=True), strict=True)])
    return Write(model, sql, [(*_prepared_values(row[1:], targets, connection),
                               meta.pk.get_db_prep_save(row[0], connection)) for row in rows],
                 many=True)


def write_run(write: Write) -> int:
    """Run a ``Write`` now; the number of rows it changed."""
    with connection_for(write.model).cursor() as cursor:
        if write.many:
            cursor.executemany(write.sql, write.params)
        else:
            cursor.execute(write.sql, write.params)
        return cursor.rowcount


def update_rows(model: type[Model], fields: Sequence[str], rows: Sequence[Sequence[Any]]) -> int:
    """Set ``fields`` of many rows to per-row values; ``rows`` are ``(pk, value, …)``.

    Returns the number of rows updated.
    """
    if not rows:
        return 0
    return write_run(update_rows_write(model, fields, rows))


def insert_rows(model: type[Model], fields: Sequence[str], rows: Sequence[Sequence[Any]]) -> int:
    """Insert many rows (``rows`` hold the values of ``fields`` in order); returns how many.

    No primary keys come back: for append-only rows nobody refers to yet (snapshots).
    """
    if not rows:
        return 0
    meta = model._meta
    connection = connection_for(model)
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
                               [_prepared_values(row, targets, connection) for row in rows])
    return len(rows)


def _prepared_values(values: Sequence[Any], fields: Sequence[Field], connection: Any) -> list[Any]:
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
