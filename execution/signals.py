"""What execution announces about orders (sent inside the transaction of the order's write)."""

from django.dispatch import Signal

# kwargs: order — an order reached a final state without its full fill (rejected, failed,
# expired, cancelled); written in the same transaction as the order's final state.
order_ended_unfilled = Signal()
