"""No fill disappears: an exit fill the position cannot take stays on the order, raises a
CRITICAL ``fill_unapplied`` alert and marks the position; the timeout pass then
reconciles the position with the exchange instead of sending more closes.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest

from execution.exchanges.paper import paper_exchange_for
from execution.models import Action, Order
from execution.pipeline import order_submit
from execution.services import order_place, run_inline
from lifecycle.models import Position, PositionEvent
from risk.models import RiskAlert
from tests.integration.conftest import BTC, START, paper_account, strategy_on

pytestmark = [pytest.mark.django_db, pytest.mark.integration]

LIMITS = {"lifecycle": {"warningThresholdMinutes": 30, "maxHoldingTimeMinutes": 60}}


@pytest.fixture
def held(clock):
    """0.4 BTC long bought at START (the exchange holds it too), closed for real at 59 min
    by a close order the position did not expect: it was not CLOSING."""
    account = paper_account(strictReduceOnly=True)  # a reduce-only sell needs a long
    strategy = strategy_on(account, "stray", **LIMITS)
    entry = order_place(drive=run_inline(sleep=clock.shift), account=account,
                        strategy=strategy, symbol=BTC, side="buy", quantity=Decimal("0.4"))
    return account, entry.position


def test_an_exit_fill_the_position_cannot_take_is_kept_alerted_and_reconciled(
        platform, clock, held):
    account, position = held
    platform.schedule("lifecycle.tasks.check_timeouts", 60)
    platform.run(until=START + timedelta(minutes=59))
    assert Position.objects.get(pk=position.pk).state == "WARNING"
    stray = order_submit(account=account, strategy=position.strategy, position=position,
                         symbol=BTC, side="sell", quantity=Decimal("0.4"), purpose="close",
                         reduce_only=True)

    stray = run_inline(sleep=clock.shift)(stray)

    # the exchange sold 0.4: the fill stays on the order, the position is marked
    assert (stray.status, stray.filled_quantity, stray.average_fill_price) == (
        "filled", Decimal("0.4"), Decimal("49995"))
    assert stray.last_error.startswith(
        "exit fill of 0.4 not applied to the position: position "
        f"{position.pk} is WARNING: exit fills apply only while CLOSING")
    stored = Position.objects.get(pk=position.pk)
    assert (stored.state, stored.quantity) == ("WARNING", Decimal("0.4"))
    assert stored.attention.startswith(f"{stray.client_order_id}: exit fill of 0.4 not applied")
    alert = RiskAlert.objects.get(kind="fill_unapplied")
    assert (alert.severity, alert.position_id) == ("CRITICAL", position.pk)

    # 60 min: the position times out, but the exchange shows it flat: reconciled, not closed
    platform.run(until=START + timedelta(minutes=61))

    assert Action.objects.count() == 0  # no close queued, none sent
    paper = paper_exchange_for(account)
    assert paper.calls["place"] == 2  # the entry and the stray close: nothing more
    assert paper.positions[BTC].size == 0
    assert [m.queue for m in platform.ran("reconcile_position")] == ["celery"]
    closed = Position.objects.get(pk=position.pk)
    assert (closed.state, closed.quantity, closed.attention) == ("CLOSED", Decimal("0"), "")
    assert closed.closed_at == START + timedelta(minutes=59)  # when the exchange filled it
    assert (closed.trade.quantity, closed.trade.exit_price) == (Decimal("0.4"),
                                                                Decimal("49995"))
    assert list(PositionEvent.objects.filter(position=position).values_list(
        "kind", "to_state").order_by("pk"))[-5:] == [
        ("attention", ""), ("transition", "CRITICAL"), ("transition", "CLOSING"),
        ("transition", "CLOSED"), ("reconciled", "")]
    assert Order.objects.filter(position=position, side="sell").count() == 1
