"""The one pre-trade gate: states of the order's scopes, then its limits, with reason codes."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
import time_machine

from execution.gates import OrderHalted, OrderRefused
from execution.models import Order, OrderPurpose, OrderStatus
from guard.models import OrderRefusal, ScopeLedger, TradingScope
from guard.services import guard_evaluate, scope_get, scope_state_set
from guard.tests.conftest import BTC, ETH, close_of, entry, held
from lifecycle.models import Position, PositionState
from tradingsite.errors import TradingHalted
from tradingsite.models import AuditEvent

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


def refused(call, *args, **kwargs) -> OrderRefused:
    with pytest.raises(OrderRefused) as info:
        call(*args, **kwargs)
    return info.value


def audit_actions() -> list[str]:
    return list(AuditEvent.objects.order_by("id").values_list("action", flat=True))


# --- states -------------------------------------------------------------------------------

def test_reducing_lets_a_close_through_and_refuses_an_entry_with_reducing_only(book_strategy):
    [position] = held(book_strategy, quantity=Decimal("0.5"))
    scope_state_set(scope=scope_get("account:guarded"), state="REDUCING",
                    reason="deleveraging after the CPI print", actor="alice")

    close = close_of(position)
    refusal = refused(entry, book_strategy)

    assert (close.pk is not None, close.purpose) == (True, OrderPurpose.EMERGENCY_CLOSE)
    assert (refusal.reason_code, refusal.code, refusal.scope) == (
        "REDUCING_ONLY", "reducing_only", "account:guarded")
    assert str(refusal) == ("trading is reducing-only for account:guarded: deleveraging after "
                            "the CPI print (by alice); only orders that reduce a position pass")
    assert refusal.numbers["state"] == "REDUCING"
    assert Order.objects.filter(purpose=OrderPurpose.ENTRY).count() == 0
    stored = OrderRefusal.objects.get()
    assert (stored.reason_code, stored.scope, stored.symbol, stored.quantity, stored.price) == (
        "REDUCING_ONLY", "account:guarded", BTC, Decimal("0.1"), Decimal("50000"))
    assert audit_actions() == ["trading_state.set", "order.refused"]
    change = AuditEvent.objects.get(action="trading_state.set")
    assert (change.actor, change.target_repr, change.before["state"], change.after["state"],
            change.reason) == ("alice", "account:guarded REDUCING", "ACTIVE", "REDUCING",
                               "deleveraging after the CPI print")


def test_a_close_for_more_than_the_position_holds_is_refused_while_reducing(book_strategy):
    [position] = held(book_strategy, quantity=Decimal("0.5"))
    scope_state_set(scope=scope_get("global"), state="REDUCING", reason="review", actor="alice")

    refusal = refused(close_of, position, quantity=Decimal("0.8"))

    assert (refusal.reason_code, refusal.scope) == ("REDUCING_ONLY", "global")
    assert (refusal.numbers["position_quantity"], refusal.numbers["order_quantity"]) == (
        "0.5", "0.8")
    assert close_of(position, quantity=Decimal("0.5")).pk is not None


def test_halted_refuses_new_orders_but_closes_go_on(book_strategy):
    [position] = held(book_strategy)
    scope_state_set(scope=scope_get(f"strategy:{book_strategy.name}"), state="HALTED",
                    reason="bad fills", actor="bob")

    refusal = refused(entry, book_strategy)

    assert isinstance(refusal, OrderHalted) and isinstance(refusal, TradingHalted)
    assert (refusal.reason_code, refusal.scope, str(refusal)) == (
        "TRADING_HALTED", "strategy:guarded-trend",
        "trading is halted for strategy:guarded-trend: bad fills (by bob)")
    assert close_of(position).status == OrderStatus.CREATED


def test_the_strictest_state_of_the_orders_scopes_applies(book_strategy):
    scope_state_set(scope=scope_get("global"), state="REDUCING", reason="r", actor="a")
    scope_state_set(scope=scope_get("account:guarded"), state="HALTED", reason="h", actor="a")

    refusal = refused(entry, book_strategy)

    assert (refusal.reason_code, refusal.scope) == ("TRADING_HALTED", "account:guarded")


def test_an_order_of_another_account_is_not_held_back(book_strategy):
    from tradingsite.testing.factories import ExchangeAccountFactory, StrategyFactory

    other = StrategyFactory(name="other", account=ExchangeAccountFactory(name="other-account"))
    scope_state_set(scope=scope_get("account:guarded"), state="HALTED", reason="h", actor="a")

    assert entry(other).pk is not None
    refused(entry, book_strategy)


def test_a_halt_before_the_guard_existed_is_the_platforms_halted_state(book_strategy):
    from tradingsite.models import PlatformState

    PlatformState.objects.update_or_create(id=1, defaults={
        "trading_halted": True, "halt_reason": "set before the upgrade", "halted_by": "ops"})
    assert not TradingScope.objects.exists()

    refusal = refused(entry, book_strategy)

    assert (refusal.reason_code, str(refusal)) == (
        "TRADING_HALTED", "trading is halted: set before the upgrade (by ops)")


# --- limits -------------------------------------------------------------------------------

def test_order_rate_refuses_the_entry_over_the_rate_and_counts_no_close(book_strategy, limits):
    limits(maxOrdersPerMinute=3)
    [position] = held(book_strategy)
    with time_machine.travel(T0, tick=False) as clock:
        for _ in range(3):
            entry(book_strategy)
            clock.shift(10)
        refusal = refused(entry, book_strategy)
        close = close_of(position)
        clock.shift(30.5)  # the first entry leaves the window
        allowed = entry(book_strategy)

    assert (refusal.reason_code, refusal.scope) == ("ORDER_RATE", "global")
    assert refusal.numbers == {"entries_last_minute": 3, "limit": 3, "retry_after_seconds": 30.0}
    assert str(refusal) == ("global: 3 entries in the last 60 s, maxOrdersPerMinute 3: entry "
                            "refused (the next is possible in 30.0 s)")
    assert close.pk is not None and allowed.pk is not None
    assert Order.objects.filter(purpose=OrderPurpose.ENTRY).count() == 4
    refusal_row = AuditEvent.objects.get(action="order.refused")
    assert (refusal_row.after["reason_code"], refusal_row.after["numbers"]["limit"]) == (
        "ORDER_RATE", 3)


@pytest.mark.parametrize("evaluated", [False, True], ids=["gate", "evaluation-between"])
def test_a_rate_limit_set_mid_minute_counts_the_entries_already_placed(
        book_strategy, limits, evaluated):
    """Found by the fault harness: the rate window held only what the gate had counted, so
    a limit set after two entries let three more through in the same minute."""
    with time_machine.travel(T0, tick=False) as clock:
        entry(book_strategy)
        clock.shift(10)
        entry(book_strategy)
        clock.shift(10)
        limits(maxOrdersPerMinute=3)
        if evaluated:
            guard_evaluate()  # the beat's count between the new limit and the next entry
        allowed = entry(book_strategy)
        clock.shift(10)
        refusal = refused(entry, book_strategy)
        clock.shift(30.5)  # the first entry leaves the window
        again = entry(book_strategy)

    assert allowed.pk is not None and again.pk is not None
    assert (refusal.reason_code, refusal.numbers) == (
        "ORDER_RATE", {"entries_last_minute": 3, "limit": 3, "retry_after_seconds": 30.0})


def test_open_positions_count_held_positions_and_entries_on_their_way(book_strategy, limits):
    limits(maxOpenPositions=3)
    positions = held(book_strategy, 2)
    entry(book_strategy)

    refusal = refused(entry, book_strategy)
    Position.objects.filter(pk=positions[0].pk).update(state=PositionState.CLOSED,
                                                       closed_at=T0)
    allowed = entry(book_strategy)  # the refusal's edge is counted again: one slot is free

    assert (refusal.reason_code, refusal.numbers) == (
        "MAX_OPEN_POSITIONS", {"open_positions": 3, "limit": 3})
    assert allowed.pk is not None
    assert ScopeLedger.objects.get(scope__kind="global").open_positions == 3


def test_a_strategy_override_limits_that_strategy_only(book_strategy, limits):
    from tradingsite.testing.factories import StrategyFactory

    book_strategy.live_trading = {"portfolio": {"maxOpenPositions": 1}}
    book_strategy.save()
    sibling = StrategyFactory(name="sibling", account=book_strategy.account)
    entry(book_strategy)

    refusal = refused(entry, book_strategy)

    assert (refusal.reason_code, refusal.scope) == ("MAX_OPEN_POSITIONS",
                                                    "strategy:guarded-trend")
    assert entry(sibling).pk is not None


def test_max_notional_per_order(book_strategy, limits):
    limits(maxNotionalPerOrder=1000)

    refusal = refused(entry, book_strategy, quantity="0.1", price="50000")

    assert (refusal.reason_code, refusal.numbers) == ("MAX_NOTIONAL_PER_ORDER", {
        "notional": "5000", "limit": "1000", "quantity": "0.1", "price": "50000"})
    assert entry(book_strategy, quantity="0.02", price="50000").pk is not None


def test_an_entry_without_any_price_is_refused_when_its_notional_is_limited(book_strategy,
                                                                           limits):
    from execution.pipeline import order_submit

    limits(maxNotionalPerOrder=1000)

    refusal = refused(order_submit, account=book_strategy.account, strategy=book_strategy,
                      symbol="NEW/USDT:USDT", side="buy", quantity=Decimal("1"))

    assert (refusal.reason_code, refusal.numbers["price"]) == ("MAX_NOTIONAL_PER_ORDER", None)


def test_a_market_entry_is_valued_at_the_newest_candle(book_strategy, limits):
    from execution.pipeline import order_submit
    from tradingsite.testing.factories import CandleFactory

    limits(maxNotionalPerOrder=1000)
    CandleFactory(symbol=BTC, timeframe="5m", close=Decimal("40000"))

    refusal = refused(order_submit, account=book_strategy.account, strategy=book_strategy,
                      symbol=BTC, side="buy", quantity=Decimal("0.1"))

    assert refusal.numbers["notional"] == "4000"


def test_account_and_symbol_exposure_against_the_accounts_equity(book_strategy, limits):
    limits(maxExposurePercent=100, maxSymbolExposurePercent=60)
    held(book_strategy, quantity=Decimal("0.1"), last_price=Decimal("50000"))  # 5,000 = 50 %
    guard_evaluate()  # equity 10,000

    symbol = refused(entry, book_strategy, quantity="0.03")  # BTC 6,500 = 65 %
    eth = entry(book_strategy, symbol=ETH, quantity="1", price="3000")  # 8,000 = 80 %
    account = refused(entry, book_strategy, symbol=ETH, quantity="1", price="3000")

    assert (symbol.reason_code, symbol.scope) == ("MAX_EXPOSURE_SYMBOL", "account:guarded")
    assert symbol.numbers == {"exposure_after": "6500", "exposure": "5000",
                              "order_notional": "1500", "equity": "10000",
                              "percent_after": "65", "limit_percent": "60", "symbol": BTC}
    assert eth.pk is not None
    assert (account.reason_code, account.numbers["percent_after"],
            account.numbers["exposure_after"]) == ("MAX_EXPOSURE_ACCOUNT", "110", "11000")


def test_limits_are_off_by_default(book_strategy):
    for _ in range(20):
        entry(book_strategy, quantity="100")
    assert Order.objects.count() == 20
    assert not ScopeLedger.objects.filter(tracked=True).exists()


# --- the count of an order rides with its insert -------------------------------------------

def test_an_admitted_entry_is_counted_in_its_insert_statement(book_strategy, limits):
    """The decision is one locked read; the ledgers' write travels in the order's INSERT
    on PostgreSQL (one round trip fewer per order), just before it elsewhere."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    limits(maxOpenPositions=10, maxOrdersPerMinute=100, maxExposurePercent=500)
    entry(book_strategy)
    guard_evaluate()  # the ledgers counted exactly and each scope's equity known
    with time_machine.travel(T0, tick=False), CaptureQueriesContext(connection) as queries:
        second = entry(book_strategy, symbol=ETH, quantity="2", price="2500")

    statements = [q["sql"] for q in queries.captured_queries
                  if "SAVEPOINT" not in q["sql"].upper()]
    ledger_updates = [sql for sql in statements if sql.startswith('UPDATE "guard_scopeledger"')]
    inserts = [sql for sql in statements if 'INSERT INTO "execution_order"' in sql]
    if connection.vendor == "postgresql":
        assert ledger_updates == [] and len(inserts) == 1
        assert inserts[0].startswith('WITH rider_0 AS (UPDATE "guard_scopeledger"')
        assert len(statements) == 2  # the locked read of scopes and ledgers, the insert
    else:
        # executemany (logged as "3 times: UPDATE …") just before the insert
        assert statements[-2].startswith('3 times: UPDATE "guard_scopeledger"')
        assert statements[-1].startswith('INSERT INTO "execution_order"')
        assert ledger_updates == [] and len(inserts) == 1
    account = ScopeLedger.objects.get(scope__kind="account")
    assert second.pk is not None
    assert (account.open_positions, account.exposure) == (2, Decimal("10000"))
    assert {symbol: Decimal(value) for symbol, value in account.symbol_exposure.items()} == {
        BTC: Decimal("5000"), ETH: Decimal("5000")}
    assert len(ScopeLedger.objects.get(scope__kind="global").recent_entries) == 2


def test_an_entry_whose_client_order_id_is_taken_counts_nothing(book_strategy, limits,
                                                                monkeypatch):
    """Two deliveries of one task race: the second's lookup misses the first's order, the
    gate admits it, its insert fails on the duplicate id, and the count that rode with the
    insert is undone with it."""
    from execution.pipeline import placement

    limits(maxOpenPositions=10, maxOrdersPerMinute=100)
    first = entry(book_strategy, client_order_id="dup-1")
    before = {row.scope_id: (row.open_positions, len(row.recent_entries))
              for row in ScopeLedger.objects.all()}
    real, calls = placement._recorded_as, []

    def recorded_as(order):  # the first lookup misses (the other delivery had not committed)
        calls.append(order.client_order_id)
        return None if len(calls) == 1 else real(order)

    monkeypatch.setattr(placement, "_recorded_as", recorded_as)

    again = entry(book_strategy, client_order_id="dup-1")

    assert again.pk == first.pk and Order.objects.count() == 1
    assert calls == ["dup-1", "dup-1"]  # looked up again after the duplicate insert failed
    assert {row.scope_id: (row.open_positions, len(row.recent_entries))
            for row in ScopeLedger.objects.all()} == before
    assert before[TradingScope.objects.get(kind="global").pk] == (1, 1)
