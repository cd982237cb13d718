"""Signals fired after a position changes (sent inside the transaction; use on_commit for I/O)."""

from django.dispatch import Signal

# kwargs: position
position_opened = Signal()
# kwargs: position, from_state, to_state, reason, actor
position_state_changed = Signal()
# kwargs: position, trade
position_closed = Signal()
# kwargs: position_ids — positions marked for attention that the timeout pass left alone:
# they are reconciled with the exchange (by whoever listens) before any close is queued.
positions_need_reconcile = Signal()
# kwargs: account_id, symbols, at — fresh marks were written on the account's held positions
# (``lifecycle.external.positions_mark``): the risk monitor recomputes the danger.
positions_marked = Signal()
