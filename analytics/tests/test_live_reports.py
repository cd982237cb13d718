"""A closed trade tells the dashboards at once, so their performance panels never go stale."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from lifecycle.models import Trade

CLOSED = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)


@pytest.fixture
def pushed(monkeypatch):
    sent: list[tuple[str, dict]] = []
    monkeypatch.setattr("analytics.signals.broadcast", lambda event, payload: sent.append(
        (event, payload)))
    monkeypatch.setattr("analytics.services.broadcast", lambda event, payload: sent.append(
        (event, payload)))
    return sent


@pytest.mark.django_db
def test_a_closed_trade_is_pushed_with_its_result(make_trade, strategy, pushed):
    trade = make_trade(22.21, CLOSED, symbol="XRP/USDT:USDT", exit_price=Decimal("0.5204"),
                       exit_reason="timeout", pnl_percent=Decimal("0.71"))
    assert pushed == [("trade.closed", {
        "id": trade.pk, "position": None, "strategy": strategy.name, "symbol": "XRP/USDT:USDT",
        "side": trade.side, "pnl": Decimal("22.21"), "pnl_percent": Decimal("0.71"),
        "exit_price": Decimal("0.5204"), "exit_reason": "timeout", "closed_at": CLOSED})]


@pytest.mark.django_db
def test_an_edited_trade_pushes_nothing(make_trade, pushed):
    trade = make_trade(5, CLOSED)
    pushed.clear()
    Trade.objects.get(pk=trade.pk).save(update_fields=["external_ref"])
    assert pushed == []


@pytest.mark.django_db
def test_an_import_pushes_one_event_with_the_count(tmp_path, strategy, pushed):
    from analytics.services import import_trade_file

    path = tmp_path / "trades.csv"
    path.write_text("symbol,side,quantity,entry_price,exit_price,opened_at,closed_at,pnl\n"
                    "BTC/USDT,long,1,100,101,2026-03-01T10:00:00Z,2026-03-01T11:00:00Z,1\n"
                    "BTC/USDT,short,1,100,99,2026-03-01T12:00:00Z,2026-03-01T13:00:00Z,1\n")
    import_trade_file(path, strategy=strategy.name)
    assert [event for event, _ in pushed] == ["trades.imported"]
    assert pushed[0][1] == {"created": 2}
