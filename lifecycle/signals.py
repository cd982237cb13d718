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
# kwargs: position_ids, from_state, to_state, actor, at — a set-based transition of many
# positions at once (the timeout pass), sent once per step with every id it moved.
positions_moved = Signal()
# kwargs: position, action, reason, kind, actor, note — a close was queued (not the timeout
# pass's own closes: its positions_moved to CRITICAL says so).
close_requested = Signal()
# kwargs: position, reason, actor — a close ended without closing the position; it is
# back in its holding-time state.
close_failed = Signal()
# kwargs: account_id, symbols, at — fresh marks were written on the account's held positions
# (``lifecycle.external.positions_mark``): the risk monitor recomputes the danger.
positions_marked = Signal()
