"""``seed_demo``: the demo data of the embedded default, created once, from real candles."""

import re
from collections import Counter
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from io import StringIO
from pathlib import Path

import pytest
import time_machine
from django.conf import settings
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.urls import reverse

from execution.models import Candle, ExchangeAccount, Order, OrderStatus
from lifecycle.models import Position, PositionEvent, PositionState, Strategy, Trade
from operations.demo import (
    BAR,
    CANDLE_FILE,
    SYMBOL,
    Bar,
    Replay,
    demo_replay,
    read_candle_file,
    seed_demo,
)

NOW = datetime(2026, 3, 2, 14, 37, 12, tzinfo=UTC)
FEED_START = datetime(2026, 3, 1, 14, 35, tzinfo=UTC)  # NOW floored to 5 min, minus 24 h


@pytest.fixture
def seeded(db):
    with time_machine.travel(NOW, tick=False):
        return seed_demo(username="demo-admin")


def _bars(*closes: str) -> list[Bar]:
    return [Bar(Decimal(c), Decimal(c) + 1, Decimal(c) - 1, Decimal(c), Decimal("10")) for c in closes]


def test_the_replay_maps_bars_onto_the_clock_and_loops():
    replay = Replay(_bars("1", "2", "3"), start=FEED_START)
    assert replay.bar_at(FEED_START).close == Decimal("1")
    assert replay.bar_at(FEED_START + BAR * 2 + timedelta(seconds=299)).close == Decimal("3")
    assert replay.bar_at(FEED_START + BAR * 3).close == Decimal("1")
    assert replay.bar_at(FEED_START - BAR).close == Decimal("3")
    assert replay.price_at(FEED_START + BAR + timedelta(minutes=2)) == Decimal("1")
    closed = replay.closed_bars(FEED_START + timedelta(minutes=1),
                                FEED_START + BAR * 2 + timedelta(minutes=1))
    assert [t for t, _ in closed] == [FEED_START, FEED_START + BAR]


def test_the_shipped_candle_file_is_the_real_recording():
    bars = read_candle_file(Path(settings.PAPER_CANDLE_DIR) / CANDLE_FILE)
    assert len(bars) == 1999
    assert bars[0] == Bar(Decimal("1.1893"), Decimal("1.1954"), Decimal("1.1891"), Decimal("1.1941"),
                          Decimal("9289043.5"))
    assert bars[-1].close == Decimal("1.0713")


def test_the_demo_account_is_paper_and_replays_the_shipped_file(seeded):
    account = ExchangeAccount.objects.get()
    assert account.name == "paper-demo"
    assert account.is_paper
    assert account.starting_capital == Decimal("10000")
    assert account.paper_config["feed"] == {
        "type": "candle_replay", "timeframe": "5m", "start_at": FEED_START.isoformat(),
        "loop": True, "files": {SYMBOL: CANDLE_FILE}}
    assert (Path(settings.PAPER_CANDLE_DIR) / CANDLE_FILE).is_file()


def test_the_two_strategies_have_different_limits(seeded):
    limits = {s.name: (s.effective_config().lifecycle.warning_threshold_minutes,
                       s.effective_config().lifecycle.max_holding_time_minutes)
              for s in Strategy.objects.all()}
    assert limits == {"xrp-trend-5m": (180, 240), "xrp-scalp-5m": (60, 90)}
    scalp = Strategy.objects.get(name="xrp-scalp-5m").effective_config()
    assert scalp.order_execution.max_slippage_percent == 0.3
    assert scalp.risk_monitoring.check_interval_candles == 2


def test_the_last_day_of_candles_is_stored(seeded):
    candles = Candle.objects.filter(symbol=SYMBOL, timeframe="5m", exchange_id="paper")
    assert candles.count() == 288
    bars = read_candle_file(Path(settings.PAPER_CANDLE_DIR) / CANDLE_FILE)
    first, last = candles.order_by("open_time").first(), candles.order_by("open_time").last()
    assert (first.open_time, first.close) == (FEED_START, bars[0].close)
    assert (last.open_time, last.close) == (FEED_START + BAR * 287, bars[287].close)


def test_open_positions_are_at_different_ages_and_states(seeded):
    rows = {(p.strategy.name, int((NOW - p.opened_at).total_seconds() // 60), p.state)
            for p in Position.objects.select_related("strategy")}
    assert rows == {
        ("xrp-trend-5m", 25, PositionState.OPEN),
        ("xrp-trend-5m", 150, PositionState.OPEN),
        ("xrp-trend-5m", 205, PositionState.WARNING),
        ("xrp-trend-5m", 236, PositionState.WARNING),
        ("xrp-scalp-5m", 20, PositionState.OPEN),
        ("xrp-scalp-5m", 72, PositionState.WARNING),
    }
    near_timeout = Position.objects.get(external_ref="demo-xrp-trend-5m-4")
    assert near_timeout.warning_at == near_timeout.opened_at + timedelta(minutes=180)


def test_positions_are_priced_from_the_replay(seeded):
    replay = demo_replay(ExchangeAccount.objects.get())
    latest = Candle.objects.order_by("-open_time").first()
    for position in Position.objects.all():
        assert position.entry_price == replay.price_at(position.opened_at)
        assert position.last_price == latest.close
        assert position.trough_price <= position.entry_price <= position.peak_price
        since_open = Candle.objects.filter(open_time__gte=replay.open_time(position.opened_at))
        assert position.peak_price == max([position.entry_price, *(c.high for c in since_open)])
        assert position.trough_price == min([position.entry_price, *(c.low for c in since_open)])


def test_each_position_has_its_audit_trail_and_entry_order(seeded):
    events = Counter(PositionEvent.objects.values_list("kind", "from_state", "to_state"))
    assert events == {("opened", "", "OPEN"): 6, ("transition", "OPEN", "WARNING"): 3}
    entries = Order.objects.filter(position__isnull=False)
    assert entries.count() == 6
    assert set(entries.values_list("status", flat=True)) == {OrderStatus.FILLED}
    for order in entries.select_related("position"):
        assert order.filled_quantity == order.quantity == order.position.quantity
        assert order.average_fill_price == order.position.entry_price


def test_closed_trades_cover_the_last_three_weeks(seeded):
    trades = Trade.objects.all()
    assert trades.count() == 36
    assert Counter(trades.values_list("exit_reason", flat=True)) == {
        "signal": 27, "timeout": 4, "risk": 3, "manual": 2}
    assert max(t.closed_at for t in trades) <= NOW - timedelta(hours=1)
    assert min(t.closed_at for t in trades) >= NOW - timedelta(days=21, hours=6)
    assert Counter(trades.values_list("strategy__name", flat=True)) == {
        "xrp-trend-5m": 18, "xrp-scalp-5m": 18}
    for trade in trades.filter(exit_reason="timeout").select_related("strategy"):
        limit = trade.strategy.effective_config().lifecycle.max_holding_time_minutes
        assert trade.holding_seconds == limit * 60


def test_trade_pnl_is_the_price_move_minus_taker_fees(seeded):
    replay = demo_replay(ExchangeAccount.objects.get())
    for trade in Trade.objects.all():
        assert trade.entry_price == replay.price_at(trade.opened_at)
        assert trade.exit_price == replay.price_at(trade.closed_at)
        direction = 1 if trade.side == "long" else -1
        fees = ((trade.entry_price + trade.exit_price) * trade.quantity * Decimal("0.00055"))
        assert trade.fees == fees.quantize(Decimal("0.00000001"))
        gross = (trade.exit_price - trade.entry_price) * trade.quantity * direction
        assert trade.pnl == (gross - trade.fees).quantize(Decimal("0.00000001"))


def test_seeding_again_creates_nothing(seeded):
    counts = [m.objects.count() for m in (ExchangeAccount, Strategy, Candle, Position,
                                          PositionEvent, Order, Trade, get_user_model())]
    with time_machine.travel(NOW + timedelta(hours=5), tick=False):
        again = seed_demo(username="demo-admin")
    assert again.created == {}
    assert again.password is None
    assert counts == [m.objects.count() for m in (ExchangeAccount, Strategy, Candle, Position,
                                                  PositionEvent, Order, Trade, get_user_model())]
    assert "staff user 'demo-admin'" in again.present


def test_the_password_is_printed_once_and_opens_every_changelist(db, client):
    first, second = StringIO(), StringIO()
    call_command("seed_demo", stdout=first)
    call_command("seed_demo", stdout=second)
    match = re.search(r"Staff user 'admin' created with password: (\S+)", first.getvalue())
    assert match, first.getvalue()
    password = match.group(1)
    assert password not in second.getvalue()
    assert "Staff user 'admin' already exists" in second.getvalue()
    user = get_user_model().objects.get(username="admin")
    assert user.is_staff and user.is_superuser
    assert client.login(username="admin", password=password)
    for model in admin.site._registry:
        url = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")
        assert client.get(url).status_code == 200, url
