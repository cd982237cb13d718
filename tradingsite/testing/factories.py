"""factory_boy factories for every model, shared by all apps' tests and benchmarks."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import factory
from django.utils import timezone

from execution.models import Action, ActionKind, Candle, ExchangeAccount, Order, OrderSide
from lifecycle.models import Position, PositionEvent, PositionSide, Strategy, Trade
from risk.models import AlertSeverity, HealthSnapshot, RiskAlert


class ExchangeAccountFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = ExchangeAccount
        django_get_or_create = ("name",)

    name = factory.Sequence(lambda n: f"paper-{n}")
    exchange_id = ExchangeAccount.PAPER
    starting_capital = Decimal("10000")


class StrategyFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Strategy
        django_get_or_create = ("name",)

    name = factory.Sequence(lambda n: f"strategy-{n}")
    account = factory.SubFactory(ExchangeAccountFactory)
    timeframe = "5m"


class PositionFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Position

    strategy = factory.SubFactory(StrategyFactory)
    symbol = "BTC/USDT:USDT"
    side = PositionSide.LONG
    quantity = Decimal("0.5")
    initial_quantity = factory.SelfAttribute("quantity")
    entry_price = Decimal("50000")
    opened_at = factory.LazyFunction(timezone.now)
    state_changed_at = factory.SelfAttribute("opened_at")
    peak_price = factory.SelfAttribute("entry_price")
    trough_price = factory.SelfAttribute("entry_price")


class PositionEventFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = PositionEvent

    position = factory.SubFactory(PositionFactory)
    from_state = ""
    to_state = "OPEN"
    reason = "opened"


class TradeFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Trade

    strategy = factory.SubFactory(StrategyFactory)
    symbol = "BTC/USDT:USDT"
    side = PositionSide.LONG
    quantity = Decimal("1")
    entry_price = Decimal("100")
    exit_price = Decimal("110")
    opened_at = factory.LazyFunction(lambda: timezone.now() - timedelta(hours=1))
    closed_at = factory.LazyFunction(timezone.now)
    fees = Decimal("0")
    pnl = Decimal("10")
    pnl_percent = Decimal("10")
    holding_seconds = factory.LazyAttribute(
        lambda t: int((t.closed_at - t.opened_at).total_seconds()))
    exit_reason = "signal"


class OrderFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Order

    account = factory.SubFactory(ExchangeAccountFactory)
    client_order_id = factory.Sequence(lambda n: f"test-{n:08d}")
    symbol = "BTC/USDT:USDT"
    side = OrderSide.BUY
    quantity = Decimal("0.5")
    expected_price = Decimal("50000")


class ActionFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Action

    kind = ActionKind.EMERGENCY_CLOSE
    position = factory.SubFactory(PositionFactory)
    reason = "manual"
    idempotency_key = factory.Sequence(lambda n: f"action-{n}")


class CandleFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Candle

    symbol = "BTC/USDT:USDT"
    timeframe = "5m"
    open_time = factory.Sequence(
        lambda n: timezone.now().replace(second=0, microsecond=0) - timedelta(minutes=5 * n))
    open = Decimal("100")
    high = Decimal("101")
    low = Decimal("99")
    close = Decimal("100.5")
    volume = Decimal("1000")


class HealthSnapshotFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = HealthSnapshot

    position = factory.SubFactory(PositionFactory)
    score = Decimal("75")
    time_score = Decimal("80")
    drawdown_score = Decimal("90")
    volume_score = Decimal("70")
    volatility_score = Decimal("60")
    profitability_score = Decimal("50")
    danger_level = "SAFE"


class RiskAlertFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = RiskAlert

    position = factory.SubFactory(PositionFactory)
    severity = AlertSeverity.WARNING
    kind = "danger_warning"
    message = "Health score fell below 60"
