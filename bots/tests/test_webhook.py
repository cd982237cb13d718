"""The freqtrade webhook receiver, fed freqtrade's exact bodies (strings everywhere)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from bots.models import BotConnection, BotState, BotTrade
from bots.tests.conftest import entry_fill_body, exit_fill_body, post
from lifecycle.models import Position, PositionFill, PositionSource, PositionState, Trade
from risk.models import AlertSeverity, RiskAlert
from tests.hostile.conftest import row_counts

pytestmark = pytest.mark.django_db

UNAUTHORIZED = {"detail": "Invalid webhook credentials.", "code": "not_authenticated"}


def test_an_entry_fill_hands_the_trade_over_as_a_supervised_position(web, connected, clock):
    response = post(web, connected.url, entry_fill_body(connected.secret))
    assert response.status_code == 201, response.content
    position = Position.objects.get()
    assert response.json() == {"event": "entry_fill", "trade_id": 1, "position": position.pk,
                               "state": "OPEN", "created": True, "note": "handed over"}
    assert (position.strategy, position.symbol, position.side, position.quantity,
            position.entry_price, position.entry_fee, position.source, position.external_ref,
            position.state) == (
        connected.connection.strategy, "XRP/USDT", "long", Decimal("9.1"), Decimal("1.0979"),
        Decimal("0"), PositionSource.BOT, "ft-main:1", PositionState.OPEN)
    # kept to the millisecond, as the bot's own trade record keeps it
    assert position.opened_at == datetime(2026, 12, 6, 6, 26, 38, 269000, tzinfo=UTC)
    bot_trade = BotTrade.objects.get()
    assert (bot_trade.connection, bot_trade.trade_id, bot_trade.position,
            bot_trade.adopted_by) == (connected.connection, 1, position, "webhook")
    connection = BotConnection.objects.get()
    assert (connection.last_webhook_at, connection.last_webhook_event) == (
        datetime(2026, 12, 6, 6, 26, 40, 269933, tzinfo=UTC), "entry_fill")


def test_a_replayed_entry_fill_returns_the_same_position_and_creates_nothing(web, connected, clock):
    first = post(web, connected.url, entry_fill_body(connected.secret)).json()
    before = row_counts()
    again = post(web, connected.url, entry_fill_body(connected.secret))
    assert again.status_code == 200
    assert again.json() == {**first, "created": False, "note": "already handed over"}
    assert row_counts() == before
    assert Position.objects.count() == 1


@pytest.mark.parametrize(("field", "value", "named"), [
    ("amount", "9.2", "quantity"),
    ("open_rate", "1.098", "entry_price"),
    ("pair", "BTC/USDT", "symbol"),
    ("direction", "Short", "side"),
    ("open_date", "2026-12-06 06:26:38.271+00:00", "opened_at"),
])
def test_the_same_trade_id_with_another_body_is_a_409_naming_what_differs(
        web, connected, clock, field, value, named):
    post(web, connected.url, entry_fill_body(connected.secret))
    before = row_counts()
    response = post(web, connected.url, entry_fill_body(connected.secret, **{field: value}))
    assert response.status_code == 409, response.content
    body = response.json()
    assert (body["code"], body["fields"]) == ("request_mismatch", [named])
    assert "external_ref 'ft-main:1'" in body["detail"]
    conflict = RiskAlert.objects.get(kind="bot_trade_conflict:ft-main")
    assert conflict.severity == AlertSeverity.WARNING
    del before["risk_riskalert"]
    after = row_counts()
    del after["risk_riskalert"]
    assert after == before


@pytest.mark.parametrize("mistake", ["wrong secret", "unknown bot", "no secret", "secret null",
                                     "secret a number", "disabled", "other bot's secret",
                                     "body an array"])
def test_a_wrong_credential_is_one_401_that_does_not_say_which_part(web, connected, strategy,
                                                                   mistake, clock):
    from bots.connections import bot_connection_create

    _, other_secret = bot_connection_create(
        name="ft-other", strategy=strategy, api_url="http://127.0.0.1:18081",
        username_env="BOT_X", password_env="BOT_Y", actor="test")
    body = entry_fill_body(connected.secret)
    url = connected.url
    if mistake == "wrong secret":
        body["secret"] = connected.secret[:-1] + ("A" if connected.secret[-1] != "A" else "B")
    elif mistake == "unknown bot":
        url = "/api/bots/ft-nope/webhook"
    elif mistake == "no secret":
        del body["secret"]
    elif mistake == "secret null":
        body["secret"] = None
    elif mistake == "secret a number":
        body["secret"] = 123
    elif mistake == "disabled":
        BotConnection.objects.filter(pk=connected.connection.pk).update(enabled=False)
    elif mistake == "other bot's secret":
        body["secret"] = other_secret
    elif mistake == "body an array":
        body = [body]
    before = row_counts()
    response = post(web, url, body)
    assert response.status_code == 401
    assert response.json() == UNAUTHORIZED
    assert row_counts() == before


@pytest.mark.parametrize(("field", "value"), [
    ("amount", "NaN"), ("amount", "nan"), ("amount", "inf"), ("amount", "-Infinity"),
    ("amount", "None"), ("amount", "1,5"), ("amount", "1_000"), ("amount", "\u0669.\u0661"),
    ("amount", " 9.1"), ("amount", "9.1 "), ("amount", "+9.1"), ("amount", "0"),
    ("amount", "-9.1"), ("amount", "1e-13"), ("amount", "1e400"), ("amount", "0x10"),
    ("amount", ""), ("amount", 9.1), ("amount", 9), ("amount", None), ("amount", True),
    ("amount", "99999999999999999"), ("open_rate", "-1.0979"), ("open_rate", "1.0979.1"),
    ("open_rate", "1.0979e"), ("trade_id", "1.0"), ("trade_id", "01"), ("trade_id", "-1"),
    ("trade_id", "0"), ("trade_id", 1), ("trade_id", "9223372036854775808"),
    ("trade_id", "\u0661"), ("open_date", "yesterday"), ("open_date", "2026-12-06 06:26:38"),
    ("open_date", "2026-02-30 06:26:38+00:00"), ("open_date", "1999-12-31 23:59:59+00:00"),
    ("open_date", "2027-12-06 06:26:38+00:00"), ("open_date", "0001-01-01 00:00:00+14:00"),
    ("open_date", 1796538398), ("direction", "long"), ("direction", "Sideways"),
    ("pair", ""), ("pair", "x" * 65), ("pair", 5), ("event", "entry_filled"),
    ("event", "ENTRY_FILL"),
])
def test_a_malformed_value_is_a_400_naming_its_field_and_changes_nothing(
        web, connected, clock, field, value):
    before = row_counts()
    response = post(web, connected.url, entry_fill_body(connected.secret, **{field: value}))
    assert response.status_code == 400, response.content
    assert field in response.json(), response.json()
    assert row_counts() == before


def test_freqtrade_renderings_of_small_and_long_floats_are_read_and_rounded(web, connected, clock):
    response = post(web, connected.url, entry_fill_body(
        connected.secret, amount="1e-05", open_rate="60000.123456789012345"))
    assert response.status_code == 201, response.content
    position = Position.objects.get()
    assert (position.quantity, position.entry_price) == (Decimal("0.00001"),
                                                         Decimal("60000.1234567890"))


def test_unknown_fields_are_refused_by_name_but_freqtrades_own_keys_are_accepted(
        web, connected, clock):
    body = entry_fill_body(connected.secret, enter_tag="force_entry", stake_amount="9.99089",
                           leverage="None", exchange="Bybit")
    assert post(web, connected.url, body).status_code == 201
    response = post(web, connected.url, {**body, "trade_id": "2", "Amount": "1"})
    assert response.status_code == 400
    assert response.json() == {"Amount": ["Unknown field."]}


def test_each_event_names_the_fields_it_lacks(web, connected, clock):
    response = post(web, connected.url, {"event": "exit_fill", "secret": connected.secret,
                                         "trade_id": "1"})
    assert response.status_code == 400
    assert sorted(response.json()) == ["amount", "close_date", "close_rate", "direction",
                                       "exit_reason", "is_final_exit", "open_date",
                                       "open_rate", "pair", "profit_amount"]
    status = post(web, connected.url, {"event": "status", "secret": connected.secret})
    assert status.json() == {"status": ["This field is required for the event 'status'."]}


def test_a_body_that_is_not_json_is_refused_before_anything(web, connected, clock):
    assert web.post(connected.url, data="event=entry_fill",
                    content_type="application/x-www-form-urlencoded").status_code == 415
    broken = web.post(connected.url, data='{"event": "entry_fill"',
                      content_type="application/json")
    assert broken.status_code == 400
    assert "JSON parse error" in broken.json()["detail"]


def test_a_forced_exit_the_platform_did_not_ask_for_closes_the_position_as_manual(
        web, connected, clock):
    post(web, connected.url, entry_fill_body(connected.secret))
    response = post(web, connected.url, exit_fill_body(connected.secret))
    assert response.status_code == 200, response.content
    position = Position.objects.get()
    assert response.json() == {"event": "exit_fill", "trade_id": 1, "position": position.pk,
                               "state": "CLOSED", "created": False,
                               "note": "closed (force_exit → manual)"}
    trade = Trade.objects.get()
    assert (trade.exit_reason, trade.exit_price, trade.quantity, trade.closed_at) == (
        "manual", Decimal("1.0977"), Decimal("9.1"),
        datetime(2026, 12, 6, 6, 26, 39, 404000, tzinfo=UTC))
    # the bot's realised PnL, its fees counted on the exit: (1.0977 − 1.0979) × 9.1 = −0.00182
    assert trade.pnl == Decimal("-0.02179996")
    assert trade.fees == Decimal("0.01997996")


@pytest.mark.parametrize(("bot_reason", "platform_reason"), [
    ("stop_loss", "risk"), ("stoploss_on_exchange", "risk"), ("trailing_stop_loss", "risk"),
    ("liquidation", "risk"), ("roi", "signal"), ("exit_signal", "signal"),
    ("my_custom_exit", "signal"), ("emergency_exit", "manual"),
])
def test_the_bots_exit_reason_maps_to_the_trades(web, connected, clock, bot_reason,
                                                 platform_reason):
    post(web, connected.url, entry_fill_body(connected.secret))
    post(web, connected.url, exit_fill_body(connected.secret, exit_reason=bot_reason))
    assert Trade.objects.get().exit_reason == platform_reason


def test_a_partial_exit_reduces_the_quantity_and_the_final_one_closes(web, connected, clock):
    post(web, connected.url, entry_fill_body(connected.secret))
    partial = exit_fill_body(connected.secret, exit_reason="partial_exit", amount="4",
                             close_rate="1.1", profit_amount="0.0080804", is_final_exit="False",
                             close_date="2026-12-06 06:26:39.100000+00:00")
    assert post(web, connected.url, partial).json()["note"] == "reduced by 4 (partial_exit)"
    position = Position.objects.get()
    assert (position.state, position.quantity, position.closed_quantity) == (
        PositionState.OPEN, Decimal("5.1"), Decimal("4"))
    assert post(web, connected.url, partial).status_code == 200  # a retried webhook
    assert Position.objects.get().quantity == Decimal("5.1")
    final = exit_fill_body(connected.secret, exit_reason="roi", amount="5.1",
                           profit_amount="-0.0122")
    post(web, connected.url, final)
    trade = Trade.objects.get()
    assert (trade.quantity, trade.exit_reason) == (Decimal("9.1"), "signal")
    assert trade.pnl == Decimal("0.0080804") + Decimal("-0.0122")
    assert PositionFill.objects.filter(kind="exit").count() == 2


def test_an_exit_of_a_trade_whose_entry_webhook_was_lost_adopts_and_closes_it(
        web, connected, clock):
    response = post(web, connected.url, exit_fill_body(connected.secret, exit_reason="roi"))
    assert response.status_code == 200, response.content
    trade = Trade.objects.get()
    assert (trade.quantity, trade.entry_price, trade.exit_reason, trade.pnl) == (
        Decimal("9.1"), Decimal("1.0979"), "signal", Decimal("-0.02179996"))
    assert BotTrade.objects.get().position == trade.position


def test_a_replayed_exit_fill_changes_nothing(web, connected, clock):
    post(web, connected.url, entry_fill_body(connected.secret))
    post(web, connected.url, exit_fill_body(connected.secret))
    before = row_counts()
    again = post(web, connected.url, exit_fill_body(connected.secret))
    assert again.status_code == 200
    assert again.json()["note"] == "already closed"
    assert row_counts() == before


def test_process_died_raises_a_critical_alert_and_running_resolves_it(web, connected, clock):
    status = {"event": "status", "secret": connected.secret}
    response = post(web, connected.url, {**status, "status": "process died"})
    assert response.json() == {"event": "status", "trade_id": None, "position": None,
                               "state": "died", "created": False, "note": "process died"}
    alert = RiskAlert.objects.get(kind="bot_down:ft-main", resolved_at=None)
    assert alert.severity == AlertSeverity.CRITICAL
    assert alert.message == ("Bot ft-main: process died (process died): the positions it handed "
                             "over are not closed by it until it runs again")
    assert BotConnection.objects.get().bot_state == BotState.DIED
    post(web, connected.url, {**status, "status": "running"})
    assert RiskAlert.objects.get(pk=alert.pk).resolved_at is not None
    assert BotConnection.objects.get().bot_state == BotState.RUNNING


def test_other_events_are_recorded_as_heard(web, connected, clock):
    body = {"event": "entry", "secret": connected.secret, "trade_id": "3", "pair": "XRP/USDT",
            "direction": "Long", "amount": "9.1", "open_rate": "1.0979",
            "open_date": "2026-12-06 06:26:38.269933+00:00"}
    response = post(web, connected.url, body)
    assert response.json()["note"] == "recorded"
    assert not Position.objects.exists()
    assert BotConnection.objects.get().last_webhook_event == "entry"


def test_an_entry_fill_is_answered_in_a_bounded_number_of_queries(
        web, connected, clock, django_assert_max_num_queries):
    with django_assert_max_num_queries(20):
        assert post(web, connected.url, entry_fill_body(connected.secret)).status_code == 201


def test_the_webhook_takes_no_token_or_session_and_no_query(web, connected, clock):
    response = web.post(connected.url + "?debug=1", data=json.dumps(
        entry_fill_body(connected.secret)), content_type="application/json")
    assert response.status_code == 400
    assert response.json() == {"debug": ["Unknown query parameter."]}
    assert web.get(connected.url).status_code == 405
