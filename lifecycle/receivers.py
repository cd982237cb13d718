"""What the position layer does when execution announces an account's live truth."""

from __future__ import annotations

from typing import Any


def symbols_of_held_positions(sender: Any = None, *, account_id: int, **kwargs: Any) -> set[str]:
    """``account_symbols_wanted``: marks are needed for every symbol the account holds."""
    from lifecycle.external import held_symbols

    return held_symbols(account_id=account_id)


def mark_positions(sender: Any = None, *, account_id: int, marks: dict, at: Any,
                   **kwargs: Any) -> int:
    """``account_marks``: write the fresh marks on the account's held positions."""
    from lifecycle.external import positions_mark

    return positions_mark(account_id=account_id, marks=marks, at=at)


def compare_book(sender: Any = None, *, account: Any, positions: list, read_at: Any,
                 exchange: Any, **kwargs: Any) -> dict:
    """``account_positions_read``: positions opened or closed outside the platform."""
    from lifecycle.external import book_reconcile

    return book_reconcile(account=account, positions=positions, read_at=read_at,
                          exchange=exchange)


def wake_deadline_schedulers(sender: Any = None, **kwargs: Any) -> None:
    """A position opened, or a strategy's limits changed: the next deadline may be sooner."""
    from lifecycle.deadlines import deadlines_changed

    deadlines_changed()
