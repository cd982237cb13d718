"""The audit log's one write path: ``audit_record`` (rows in ``tradingsite.AuditEvent``).

Call it inside the transaction that makes the change, so the record and the change
commit or roll back together. ``before``/``after`` hold the changed fields only
(``changed_fields`` computes them), as JSON-safe values.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder
from django.db import models

from tradingsite.models import AuditEvent

_ENCODER = DjangoJSONEncoder()


def _json_safe(value: Any) -> Any:
    """Decimals, datetimes, UUIDs as the strings Django's JSON encoder gives them."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return _ENCODER.default(value)


def changed_fields(before: Mapping[str, Any], after: Mapping[str, Any],
                   fields: Iterable[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(before, after)`` restricted to the ``fields`` whose value differs."""
    names = [name for name in fields if before.get(name) != after.get(name)]
    return ({name: _json_safe(before.get(name)) for name in names},
            {name: _json_safe(after.get(name)) for name in names})


def audit_record(*, actor: str, action: str, target: models.Model | None = None,
                 before: Mapping[str, Any] | None = None, after: Mapping[str, Any] | None = None,
                 reason: str = "") -> AuditEvent:
    """Append one entry to the audit log: who (``actor``), what (``action``, ``target``),
    the changed values ``before`` and ``after``, and why."""
    meta = target._meta if target is not None else None
    return AuditEvent.objects.create(
        actor=actor[:150], action=action[:64],
        target_type=meta.label_lower if meta else "",
        target_id=str(target.pk) if target is not None and target.pk is not None else "",
        target_repr=str(target)[:200] if target is not None else "",
        before=_json_safe(dict(before or {})), after=_json_safe(dict(after or {})),
        reason=reason)


CSV_COLUMNS = ("created_at", "actor", "action", "target_type", "target_id", "target_repr",
               "before", "after", "reason")


def audit_csv(events: Iterable[AuditEvent]) -> Iterator[str]:
    """The rows as CSV lines (a header first); ``before``/``after`` as JSON text, times in
    ISO 8601 UTC. A cell that a spreadsheet would run as a formula is quoted with a ``'``."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)

    def line(cells: Iterable[Any]) -> str:
        buffer.seek(0)
        buffer.truncate()
        writer.writerow([_cell(cell) for cell in cells])
        return buffer.getvalue()

    yield line(("id", *CSV_COLUMNS))
    for event in events:
        yield line((event.pk, event.created_at.isoformat(), event.actor, event.action,
                    event.target_type, event.target_id, event.target_repr,
                    json.dumps(event.before, sort_keys=True),
                    json.dumps(event.after, sort_keys=True), event.reason))


def _cell(value: Any) -> str:
    text = str(value)
    return f"'{text}" if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text
