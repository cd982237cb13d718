import pytest
from django.core.management import call_command

from tradingsite.errors import TradingHalted
from tradingsite.services import ensure_trading_allowed, is_trading_halted

pytestmark = pytest.mark.django_db


def test_halt_refuses_new_entries_until_resumed(capsys):
    ensure_trading_allowed()
    call_command("halt_trading", reason="exchange maintenance")
    assert is_trading_halted()
    with pytest.raises(TradingHalted, match="exchange maintenance"):
        ensure_trading_allowed()
    call_command("resume_trading")
    assert not is_trading_halted()
    ensure_trading_allowed()
    out = capsys.readouterr().out
    assert "trading halted at" in out and "trading resumed" in out
