"""Our exchange exception tree: each class says how the pipeline recovers.

- ``TransientError``: retry with backoff. For an order creation the outcome is
  unknown (the exchange may have accepted it): look the order up by its client
  order id before resending.
- ``RejectedError``: the exchange refused the request; retrying cannot help
  (insufficient funds, invalid order, bad symbol). ``DuplicateOrderError`` is the
  refusal of a client order id that already exists: the order is there.
- ``FatalError``: configuration or credentials are wrong; stop and tell the operator.
- ``OrderNotFound``: the exchange does not know the order (or it is too late to cancel it).

Every adapter raises only these; ccxt errors are translated where they are raised.
"""

from __future__ import annotations


class ExchangeError(Exception):
    """Base of every error an exchange adapter raises.

    ``code`` is the exchange's own error code when it gave one (Bybit ``retCode``),
    otherwise a short symbolic name; ``message`` is the exchange's message.
    """

    code = "exchange_error"

    def __init__(self, message: str, *, code: str | None = None):
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code

    def __str__(self) -> str:
        return self.message


class TransientError(ExchangeError):
    """Timeout, dropped connection, rate limit, exchange unavailable: retry later."""

    code = "transient"


class RateLimitedError(TransientError):
    code = "rate_limited"


class RejectedError(ExchangeError):
    """The exchange refused the request for good; the message says why."""

    code = "rejected"


class InsufficientFundsError(RejectedError):
    code = "insufficient_funds"


class InvalidOrderError(RejectedError):
    code = "invalid_order"


class DuplicateOrderError(RejectedError):
    """An order with this client order id already exists on the exchange."""

    code = "duplicate_client_order_id"


class FatalError(ExchangeError):
    """Authentication or configuration problem: no order can succeed until fixed."""

    code = "fatal"


class OrderNotFound(ExchangeError):
    code = "order_not_found"
