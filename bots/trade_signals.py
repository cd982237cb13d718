"""Trade signals from senders that cannot set headers (TradingView-style alerts).

An ``open`` goes through the pipeline's entry path like any entry order (recorded,
refused while trading is halted, slippage-checked against the sender's price, sent
by the workers; its fill opens the position). A ``close`` goes through the action
queue like any close (``position_request_close``, reason ``signal``): a bot's
position is then closed through its bot. Signals are idempotent by the sender's
``signal_id``: one ``INSERT … ON CONFLICT DO NOTHING`` decides, in the transaction
that does the work, so a refused signal leaves its id free.
"""

from __future__ import annotations

from decimal import ROUND_DOWN
from typing import Any

from django.db import transaction
from django.utils import timezone
from rest_framework.exceptions import ValidationError

from bots.inputs import SignalAction
from bots.models import SignalSource, TradeSignal
from bots.services import QUANTITY_STEP
from execution.client_requests import canonical, request_differences
from execution.models import ActionKind, CloseReason, OrderPurpose, OrderSide, OrderType
from execution.pipeline import Next, order_submit
from lifecycle.models import Position, PositionSide, PositionState, Strategy
from lifecycle.services import position_request_close
from tradingsite.errors import ConflictError, RequestMismatch
from tradingsite.sql import insert_row


class NoPositionToClose(ConflictError):
    code = "no_position"


class StrategyDisabled(ConflictError):
    code = "strategy_disabled"


def trade_signal_take(source: SignalSource, signal: dict[str, Any]) -> tuple[dict[str, Any], int]:
    """Act on a validated signal once; ``(answer, HTTP status)``.

    The same ``signal_id`` with the same body gets the first answer (200) and does
    nothing; with another body it is a ``RequestMismatch`` naming the fields.
    """
    request = {name: canonical(value) for name, value in signal.items()}
    with transaction.atomic():
        record = TradeSignal(source=source, signal_id=signal["signal_id"], request=request,
                             answer={}, status_code=0)
        if not insert_row(record, ignore_conflicts=True):
            return _repeated(source, signal["signal_id"], request)
        if signal["action"] == SignalAction.OPEN:
            order = _open(source.strategy, signal)
            answer = {"signal_id": signal["signal_id"], "action": SignalAction.OPEN,
                      "order": {"id": order.pk, "client_order_id": order.client_order_id,
                                "status": order.status, "symbol": order.symbol,
                                "side": order.side, "quantity": canonical(order.quantity)},
                      "closes": []}
        else:
            order = None
            answer = {"signal_id": signal["signal_id"], "action": SignalAction.CLOSE,
                      "order": None, "closes": _close(source.strategy, signal)}
        TradeSignal.objects.filter(pk=record.pk).update(answer=answer, status_code=202,
                                                         order=order)
        SignalSource.objects.filter(pk=source.pk).update(last_signal_at=timezone.now())
    return answer, 202


def _repeated(source: SignalSource, signal_id: str, request: dict[str, Any]
              ) -> tuple[dict[str, Any], int]:
    earlier = TradeSignal.objects.get(source=source, signal_id=signal_id)
    differences = request_differences(earlier.request, request)
    if differences:
        raise RequestMismatch(f"signal_id {signal_id!r}", differences)
    return earlier.answer, 200


def _open(strategy: Strategy, signal: dict[str, Any]):  # -> execution.models.Order
    from execution.tasks import schedule_next

    if not strategy.enabled:
        raise StrategyDisabled(f"strategy {strategy.name} is disabled: it opens nothing")
    quantity = signal.get("quantity")
    if quantity is None:
        quantity = (signal["notional"] / signal["price"]).quantize(QUANTITY_STEP, ROUND_DOWN)
        if quantity <= 0:
            raise ValidationError({"notional": ["Too small to buy anything at this price."]})
    order = order_submit(
        account=strategy.account, strategy=strategy, symbol=signal["symbol"],
        side=OrderSide.BUY if signal["side"] == PositionSide.LONG else OrderSide.SELL,
        quantity=quantity, order_type=OrderType.MARKET, expected_price=signal.get("price"),
        purpose=OrderPurpose.ENTRY)
    transaction.on_commit(lambda: schedule_next(Next(order, 0.0, "placed by a trade signal")))
    return order


def _close(strategy: Strategy, signal: dict[str, Any]) -> list[dict[str, Any]]:
    held = Position.objects.filter(strategy=strategy, symbol=signal["symbol"],
                                   state__in=PositionState.active()).order_by("opened_at", "pk")
    if signal.get("side"):
        held = held.filter(side=signal["side"])
    closes = []
    for position in held:
        action, created = position_request_close(
            position=position, reason=CloseReason.SIGNAL, kind=ActionKind.CLOSE,
            actor=f"signal:{signal['signal_id']}"[:150])
        closes.append({"position": position.pk, "action_id": action.pk, "created": created})
    if not closes:
        side = f" {signal['side']}" if signal.get("side") else ""
        raise NoPositionToClose(f"strategy {strategy.name} holds no{side} position in "
                                f"{signal['symbol']}")
    return closes

