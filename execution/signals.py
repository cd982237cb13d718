"""What execution announces (the layers above listen; execution imports none of them).

About orders: sent inside the transaction of the order's write. About an account's live
truth: the stream owner (``execution.streams``) announces what the exchange says and the
position layers listen; those receivers run in the owner's thread, inside no transaction.
"""

from django.dispatch import Signal

# kwargs: order — an order reached a final state without its full fill (rejected, failed,
# expired, cancelled); written in the same transaction as the order's final state.
order_ended_unfilled = Signal()
# kwargs: account_id. Each receiver returns the symbols it needs marks for (an iterable).
account_symbols_wanted = Signal()
# kwargs: account_id, marks (symbol → Decimal mark price), at (when they were read).
account_marks = Signal()
# kwargs: account, positions (list[ExchangePosition], the account's whole book), read_at,
# exchange. Receivers compare them with what they track; each returns a summary dict.
account_positions_read = Signal()
