"""Reading the database from a test while another thread of the test process writes it."""

from __future__ import annotations

from typing import Any

from django.db import OperationalError

ATTEMPTS = 1000


def row_beside_writers(model: Any, pk: Any) -> Any:
    """The row now, read while a thread of this process (a stream owner) may be writing.

    On SQLite's shared in-memory test database a read that meets another connection's
    write is refused at once ("database table is locked") instead of waiting for it as
    a file database does: the write is a single statement, so read again.
    """
    for _ in range(ATTEMPTS - 1):
        try:
            return model.objects.get(pk=pk)
        except OperationalError as exc:
            if "locked" not in str(exc):
                raise
    return model.objects.get(pk=pk)
