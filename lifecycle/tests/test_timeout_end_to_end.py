"""The platform's first promise end to end: a position past its limit is closed, reason timeout."""

from datetime import timedelta
from decimal import Decimal

import pytest
import time_machine

from execution import tasks as execution_tasks
from execution.exchanges.paper import reset_paper_exchanges
from execution.models import Action, ActionState, Order
from lifecycle.models import Position, PositionEvent
from lifecycle.services import position_open, timeout_pass_run
from lifecycle.tests.conftest import T0
from tradingsite.testing.factories import ExchangeAccountFactory, StrategyFactory

pytestmark = [pytest.mark.django_db, pytest.mark.integration]

SYMBOL = "BTC/USDT:USDT"


@pytest.fixture
def paper_strategy():
    reset_paper_exchanges()
    account = ExchangeAccountFactory(name="paper-timeouts", paper_config={
        "feed": {"type": "manual", "prices": {SYMBOL: "50000"}},
        "fees": {"takerPercent": 0.055, "makerPercent": 0.02},
        "markets": {SYMBOL: {"amountStep": "0.001", "priceStep": "0.1", "minAmount": "0.001"}},
    })
    yield StrategyFactory(name="paper-timeouts", account=account)
    reset_paper_exchanges()


def test_a_position_past_its_max_holding_time_is_closed_with_exit_reason_timeout(
        paper_strategy, dispatched, django_capture_on_commit_callbacks):
    with time_machine.travel(T0, tick=False):
        position = position_open(strategy=paper_strategy, symbol=SYMBOL, side="long",
                                 quantity=Decimal("0.01"), entry_price=Decimal("50000"))
    with time_machine.travel(T0 + timedelta(minutes=240), tick=False):
        with django_capture_on_commit_callbacks(execute=True):
            assert timeout_pass_run().close_actions == 1
        for action_id in dispatched:
            execution_tasks.process_action(action_id)
    stored = Position.objects.get(pk=position.pk)
    assert (stored.state, stored.close_reason, stored.quantity) == ("CLOSED", "timeout", 0)
    assert stored.trade.exit_reason == "timeout"
    assert stored.trade.holding_seconds == 240 * 60
    assert Action.objects.get().state == ActionState.DONE
    assert Order.objects.filter(position=position, purpose="emergency_close").count() == 1
    assert list(PositionEvent.objects.filter(position=position).exclude(kind="partial_fill")
                .values_list("kind", "to_state", "actor")) == [
        ("opened", "OPEN", "system"),
        ("transition", "WARNING", "timeout"),
        ("transition", "CRITICAL", "timeout"),
        ("close_requested", "", "timeout"),
        ("transition", "CLOSING", "timeout"),
        ("transition", "CLOSED", "execution"),
    ]
