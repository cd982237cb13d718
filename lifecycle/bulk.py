"""Set-based SQL the ORM lacks, portable to PostgreSQL and SQLite ≥ 3.35 (the embedded default).

* ``InArray`` — ``id IN (…)`` sent as ONE parameter (a PostgreSQL array, a SQLite
  JSON array), so a filter on 10,000 ids costs no more to send than one on ten.
* ``update_returning_pks`` — ``UPDATE … RETURNING id``: Django's ``update()`` only
  reports a count, the timeout pass needs to know which rows it moved.
* ``insert_select`` — ``INSERT INTO … SELECT …`` (optionally ``ON CONFLICT DO NOTHING
  RETURNING …``): rows derived from other rows without a round trip through Python,
  and, when conflicts are ignored, exactly the rows this statement inserted.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from django.db import connections
from django.db.models import BooleanField, Expression, F, Model, QuerySet, Value
from django.db.models.sql import UpdateQuery
from django.utils import timezone


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
    sql, params = query.get_compiler(queryset.db).as_sql()
    connection = connections[queryset.db]
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
    connection = connections[source.db]
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
                          .get_compiler(source.db).as_sql())
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
