"""Single-row writes for hot paths, without the ORM's per-call query building.

The order pipeline writes one row two or three times per order; through
``Model.save`` each write costs more Python than the database round trip itself.
These helpers build the statement text once per (model, fields) and only prepare
the values per call, with the fields' own ``pre_save``/``get_db_prep_save`` — so
values reach the database exactly as the ORM would send them.

``async_commit`` writes may be acknowledged by PostgreSQL before they reach disk
(``synchronous_commit = off`` for that transaction only): use it only for writes
that can be recovered elsewhere (see ``execution.pipeline.recoverable_write``).
Outside a transaction the setting and the statement travel in one round trip.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import cache
from typing import Any

from django.db import DEFAULT_DB_ALIAS, connection, connections
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import Field, Model

# This transaction may be acknowledged before its WAL reaches disk.
ASYNC_COMMIT = "SET LOCAL synchronous_commit TO OFF"


@cache
def _insert_sql(model: type[Model], guard: str | None, ignore_conflicts: bool = False
                ) -> tuple[str, tuple[Field, ...]]:
    meta = model._meta
    fields = tuple(f for f in meta.concrete_fields if f is not meta.auto_field)
    qn = connection.ops.quote_name
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
                excluded_statuses: int, unless: str | None) -> tuple[str, tuple[Field, ...],
                                                                   tuple[Field, ...]]:
    meta = model._meta
    fields = tuple(meta.get_field(name) for name in names)
    conditions = tuple(meta.get_field(name) for name in expect)
    qn = connection.ops.quote_name
    assignments = ", ".join(f"{qn(f.column)} = %s" for f in fields)
    sql = f"UPDATE {qn(meta.db_table)} SET {assignments} WHERE {qn(meta.pk.column)} = %s"
    sql += "".join(f" AND {qn(f.column)} = %s" for f in conditions)
    if excluded_statuses:
        marks = ", ".join(["%s"] * excluded_statuses)
        sql += f" AND {qn(meta.get_field('status').column)} NOT IN ({marks})"
    if unless is not None:
        sql += f" AND NOT EXISTS ({unless})"
    return sql, fields, conditions


def _wrapper() -> BaseDatabaseWrapper:
    """This thread's connection, looked up once per write (``connection`` is a proxy)."""
    return connections[DEFAULT_DB_ALIAS]


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
               ignore_conflicts: bool = False) -> bool:
    """INSERT ``instance`` (its primary key is set); False if the ``unless`` query finds a row.

    ``unless`` is an SQL query without parameters (``SELECT 1 FROM … WHERE …``):
    checked in the same statement, so nothing can slip in between check and insert.
    ``ignore_conflicts``: a row that would break a unique constraint is not written
    (False), instead of raising; on PostgreSQL the statement first waits for a
    concurrent transaction that holds the same key, and sees its outcome.
    """
    db = _wrapper()
    sql, fields = _insert_sql(type(instance), unless, ignore_conflicts)
    _, row = _run(db, sql, _prepared(db, instance, fields, add=True), async_commit=False)
    if row is None:
        return False
    instance.pk = row[0]
    instance._state.adding, instance._state.db = False, db.alias
    return True


def update_row(instance: Model, names: Sequence[str], *, expect: Mapping[str, Any] | None = None,
               unless_status_in: Sequence[str] = (), unless: str | None = None,
               async_commit: bool = False) -> bool:
    """UPDATE ``names`` of ``instance``'s row; False if no row was written.

    The conditions make it a compare-and-set: ``expect`` (field → value the row must
    still hold), ``unless_status_in`` (statuses the row must not be in, e.g. final
    ones), ``unless`` (an SQL query, as for ``insert_row``, that must find nothing).
    """
    expect = expect or {}
    db = _wrapper()
    sql, fields, conditions = _update_sql(type(instance), tuple(names), tuple(expect),
                                          len(unless_status_in), unless)
    params = [*_prepared(db, instance, fields, add=False), instance.pk,
              *(f.get_db_prep_save(expect[f.name], db) for f in conditions),
              *unless_status_in]
    count, _ = _run(db, sql, params, async_commit=async_commit)
    return count > 0
