"""The order pipeline: an order moves one step at a time, so no worker ever blocks.

``order_submit`` records the order and its client order id before any network
call. ``order_step`` then does exactly one thing and says when to come back
(``Next``): a placement attempt, a status poll, a lookup of an order in doubt, or
the cancel-and-verify of a timed-out order. A Celery task runs one step and
schedules the next with a countdown; tests and scripts run the steps in a loop with
an injectable sleep.

One writer at a time. Every write that moves an order is a compare-and-set on the
``version`` it read (each write bumps it), so a worker acting on a stale copy —
a recovery beside a live worker, a redelivered task — writes nothing and stops
(``OrderMoved``). A placement attempt takes a lease (``lease_holder``, ``lease_until``:
the request timeout plus a margin): until it runs out nobody else moves the order.

Orders in doubt. After any unknown outcome — a timeout, a dropped connection, a
5xx or 429 after sending, a "success" without an order id — the order is *in doubt*
(``in_doubt_since``) until the exchange answers definitively. A resend reuses its
client order id (a duplicate refusal such as Bybit's 110072 means "it exists"), and
every attempt after one whose outcome is unknown first asks the exchange for that
id. Only ``TransientError`` is retried, after ``retryDelayMs × 2^n`` (1 s, 2 s, 4 s by
default, ``maxRetries`` = 3); a rejection fails at once with the exchange's message
on the order. When the sends are over, the order is looked up by client order id
(open and history, and by exchange id once known) every ``inDoubtGraceSeconds /
inDoubtLookups`` s; "not found" becomes definitive only when ``inDoubtLookups``
lookups missed and ``inDoubtGraceSeconds`` passed since the doubt began. Until then
the order timeout does not replace it and nothing new is sent for its position. An
order declared absent that shows up later is taken back (``order_take_back``).

The modules, one concern each:
``writes`` (the step's result ``Next``, compare-and-set writes, leases),
``placement`` (recording, attempts, retries, refusals before sending),
``fills`` (the exchange's answer applied, final states, reconciliation after a restart),
``doubt`` (orders in doubt, proven absence, orders that come back),
``cancel`` (timeouts, cancel and read-back), ``replace`` (a timed-out emergency
close replaced at market), ``step`` (which of these an order's next run does).
"""

from __future__ import annotations

from execution.pipeline.cancel import order_begin_cancel, order_expire
from execution.pipeline.doubt import order_locate, order_not_found, order_take_back, proven_absent
from execution.pipeline.fills import order_payload, order_sync
from execution.pipeline.placement import order_submit
from execution.pipeline.step import order_step
from execution.pipeline.writes import (
    ABSENT,
    Next,
    OrderMoved,
    lease_holder,
    new_client_order_id,
    order_config,
    order_deadline,
    order_held,
    plain,
    recoverable_write,
)

__all__ = [
    "ABSENT", "Next", "OrderMoved", "lease_holder", "new_client_order_id",
    "order_begin_cancel", "order_config", "order_deadline", "order_expire", "order_held",
    "order_locate", "order_not_found", "order_payload", "order_step", "order_submit",
    "order_sync", "order_take_back", "plain", "proven_absent", "recoverable_write",
]
