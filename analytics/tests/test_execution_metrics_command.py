"""The execution_metrics command (the metrics themselves: analytics/tests/test_execution_metrics.py)."""

from __future__ import annotations

import json
from decimal import Decimal
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from execution.models import Order
from tradingsite.testing.factories import ExchangeAccountFactory


def _orders(account, rows):
    for n, (status, retries, timed_out, latency, slippage) in enumerate(rows):
        Order.objects.create(account=account, client_order_id=f"{account.name}-{n}",
                             symbol="BTC/USDT:USDT", side="buy", quantity=Decimal("1"),
                             status=status, retries=retries, timed_out=timed_out,
                             latency_ms=latency, slippage_percent=slippage)


@pytest.fixture
def two_accounts(db):
    bybit = ExchangeAccountFactory(name="bybit-main", exchange_id="bybit")
    paper = ExchangeAccountFactory(name="paper-main")
    _orders(bybit, [("filled", 1, False, 100, Decimal("0.2")),
                    ("rejected", 0, False, None, None)])
    _orders(paper, [("filled", 0, False, 2, Decimal("-0.1")), ("filled", 0, False, 4, None)])
    return bybit, paper


def test_the_command_prints_a_table_and_json(two_accounts):
    out = StringIO()
    call_command("execution_metrics", stdout=out)
    lines = out.getvalue().splitlines()
    assert lines[0].split() == ["overall", "bybit-main", "paper-main"]
    assert lines[1].split() == ["Orders", "4", "2", "2"]
    assert lines[8].split() == ["Success", "rate", "%", "75.0", "50.0", "100.0"]
    assert lines[12].split() == ["Latency", "avg", "ms", "35.333", "100", "3"]
    assert lines[-1].split() == ["Slippage", "worst", "%", "0.2", "0.2", "-0.1"]

    out = StringIO()
    call_command("execution_metrics", "--json", "--since", "24h", "--account", "bybit-main",
                 stdout=out)
    data = json.loads(out.getvalue())
    assert data["overall"]["orders"]["value"] == 2
    assert [acc["account"] for acc in data["accounts"]] == ["bybit-main"]


def test_the_command_refuses_a_bad_period(db):
    with pytest.raises(CommandError, match="--since: expected an ISO datetime or 30m/24h/7d"):
        call_command("execution_metrics", "--since", "last week")
