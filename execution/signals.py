"""What execution tells the layers above about an account's live truth.

Execution knows orders, not positions: the stream owner (``execution.streams``)
announces what the exchange says and the position layers listen. Receivers run in
the owner's thread, inside no transaction.
"""

from django.dispatch import Signal

# kwargs: account_id. Each receiver returns the symbols it needs marks for (an iterable).
account_symbols_wanted = Signal()
# kwargs: account_id, marks (symbol → Decimal mark price), at (when they were read).
account_marks = Signal()
# kwargs: account, positions (list[ExchangePosition], the account's whole book), read_at,
# exchange. Receivers compare them with what they track; each returns a summary dict.
account_positions_read = Signal()
