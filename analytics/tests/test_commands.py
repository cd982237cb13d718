"""Management commands: performance_report and import_trades."""

import json
import zipfile
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from io import StringIO
from pathlib import Path

import pytest
import time_machine
from django.core.management import call_command
from django.core.management.base import CommandError

from analytics import services
from execution.models import ExchangeAccount
from lifecycle.models import Strategy, Trade
from tradingsite.testing.factories import ExchangeAccountFactory, StrategyFactory

pytestmark = pytest.mark.django_db
NOW = datetime(2026, 3, 6, 18, tzinfo=UTC)
FREQTRADE = Path(__file__).parent / "data" / "freqtrade-backtest-result.json"
HEADER = "symbol,side,quantity,entry_price,exit_price,opened_at,closed_at,fees,exit_reason\n"


def run(*args) -> str:
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


# --- performance_report --------------------------------------------------------------------


@time_machine.travel(NOW, tick=False)
def test_performance_report_as_json(make_trade, strategy):
    make_trade(30, NOW - timedelta(hours=3))
    make_trade(-10, NOW - timedelta(days=10))
    report = json.loads(run("performance_report", "--period", "week", "--json"))
    assert report["period"] == "WEEK" and report["trade_count"] == 1
    assert report["metrics"]["total_pnl"] == {"value": 30.0, "sample_size": 1}
    assert report["realised_before_window"] == -10
    everything = json.loads(run("performance_report", "--strategy", strategy.name, "--json"))
    assert everything["trade_count"] == 2


@time_machine.travel(NOW, tick=False)
def test_performance_report_as_a_table(make_trade):
    make_trade(30, NOW - timedelta(hours=3), symbol="SOL/USDT")
    text = run("performance_report", "--top", "1")
    assert "1 trades" in text
    assert "win_rate" in text and "wins ÷ trades" in text
    assert "n/a (no_losses)" in text
    assert "Top trades" in text and "SOL/USDT" in text
    win_rate = next(line for line in text.splitlines() if line.startswith("win_rate"))
    assert win_rate.split()[1:3] == ["100", "%"]  # a ratio as %, not 1.0


@time_machine.travel(NOW, tick=False)
def test_performance_report_writes_ratios_as_percentages_and_amounts_with_currency(
        make_trade):
    """The issue: 0.297297 for a 29.7 % win rate."""
    for n, pnl in enumerate([5, -1, -2, 4, -3, -1, 2, -6, -1, -2]):  # 3 of 10 won
        make_trade(pnl, NOW - timedelta(hours=10 - n))
    lines = {line.split()[0]: line for line in run("performance_report").splitlines()
             if line and not line.startswith((" ", "Performance", "Equity", "metric", "Top",
                                              "Worst"))}
    assert lines["win_rate"].split()[1:3] == ["30", "%"]
    assert lines["total_pnl"].split()[1:3] == ["-5", "USDT"]
    assert "0.3 " not in lines["win_rate"]


def test_performance_report_refuses_an_unknown_strategy(db):
    with pytest.raises(CommandError, match="unknown strategy 'ghost'"):
        run("performance_report", "--strategy", "ghost")


# --- import_trades: CSV ----------------------------------------------------------------------


@pytest.fixture
def paper_account(db):
    return ExchangeAccountFactory(name="paper-main")


def write(tmp_path, text, name="trades.csv") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_import_csv_creates_the_strategy_on_the_first_paper_account(tmp_path, paper_account):
    ExchangeAccountFactory(name="bybit-live", exchange_id="bybit")
    path = write(tmp_path, HEADER
                 + "BTC/USDT,long,0.5,100,110,2026-01-05T10:00:00Z,2026-01-05T12:00:00Z,1,signal\n"
                 + "ETH/USDT,short,2,50,55,2026-01-05 13:00,2026-01-05 13:30,0.5,risk\n")
    out = run("import_trades", str(path), "--strategy", "backfill")
    assert out.splitlines() == ["created strategy 'backfill' on account 'paper-main'",
                                "imported 2 trades"]  # one batch: no progress line
    strategy = Strategy.objects.get(name="backfill")
    assert strategy.account == paper_account
    long, short = Trade.objects.order_by("closed_at")
    assert (long.side, long.pnl, long.pnl_percent, long.holding_seconds) == (
        "long", Decimal("4"), Decimal("8"), 7200)  # (110 − 100) × 0.5 − 1 = 4 of 50 notional
    assert (short.side, short.pnl, short.exit_reason) == ("short", Decimal("-10.5"), "risk")
    assert short.opened_at == datetime(2026, 1, 5, 13, tzinfo=UTC)  # no offset: UTC


def test_import_csv_with_strategy_pnl_and_refs_skips_what_is_already_there(tmp_path, strategy):
    path = write(tmp_path, "strategy,symbol,side,quantity,entry_price,exit_price,opened_at,"
                 "closed_at,pnl,pnl_percent,external_ref\n"
                 f"{strategy.name},BTC/USDT,buy,1,100,101,2026-01-05T10:00:00+01:00,"
                 "2026-01-05T11:00:00+01:00,0.9,0.9,bot-1\n")
    run("import_trades", str(path))
    trade = Trade.objects.get()
    assert (trade.strategy, trade.pnl, trade.external_ref) == (strategy, Decimal("0.9"), "bot-1")
    assert trade.closed_at == datetime(2026, 1, 5, 10, tzinfo=UTC)
    assert "skipped 1 already imported" in run("import_trades", str(path))
    assert Trade.objects.count() == 1


@pytest.mark.parametrize(("row", "message"), [
    ("BTC/USDT,long,0.5,abc,110,2026-01-05T10:00:00Z,2026-01-05T12:00:00Z,1,signal",
     "line 3, field 'entry_price': expected a number, got 'abc'"),
    ("BTC/USDT,flat,0.5,100,110,2026-01-05T10:00:00Z,2026-01-05T12:00:00Z,1,signal",
     "line 3, field 'side': expected long or short, got 'flat'"),
    ("BTC/USDT,long,0,100,110,2026-01-05T10:00:00Z,2026-01-05T12:00:00Z,1,signal",
     "line 3, field 'quantity': must be > 0, got '0'"),
    ("BTC/USDT,long,0.5,100,110,2026-01-05T10:00:00Z,2026-01-05T09:00:00Z,1,signal",
     "line 3, field 'closed_at': 2026-01-05T09:00:00+00:00 is before opened_at"),
    ("BTC/USDT,long,0.5,100,110,2026-01-05T10:00:00Z,5 Jan 2026,1,signal",
     "line 3, field 'closed_at': expected an ISO 8601 date and time, got '5 Jan 2026'"),
    ("BTC/USDT,long,0.5,100,110,2026-01-05T10:00:00Z,2026-01-05T12:00:00Z,-1,signal",
     "line 3, field 'fees': must be ≥ 0, got '-1'"),
    ("BTC/USDT,long,0.5,100,110,2026-01-05T10:00:00Z,2026-01-05T12:00:00Z,1,panic",
     "line 3, field 'exit_reason': expected one of signal, timeout, risk, manual, shutdown"),
    (",long,0.5,100,110,2026-01-05T10:00:00Z,2026-01-05T12:00:00Z,1,signal",
     "line 3, field 'symbol': required"),
])
def test_a_bad_csv_line_imports_nothing_and_names_line_and_field(tmp_path, paper_account, row,
                                                                 message):
    good = "BTC/USDT,long,0.5,100,110,2026-01-05T10:00:00Z,2026-01-05T12:00:00Z,1,signal\n"
    path = write(tmp_path, HEADER + good + row + "\n")
    with pytest.raises(CommandError) as error:
        run("import_trades", str(path), "--strategy", "backfill")
    assert f"nothing imported: {message}" in str(error.value)
    assert not Trade.objects.exists() and not Strategy.objects.filter(name="backfill").exists()


def test_csv_header_problems_are_reported(tmp_path, paper_account):
    with pytest.raises(CommandError, match="line 1 \\(header\\), field 'exit_price': missing"):
        run("import_trades", str(write(tmp_path, "symbol,side,quantity,entry_price\n")))
    with pytest.raises(CommandError, match="field 'colour': unknown column"):
        run("import_trades", str(write(tmp_path, HEADER.strip() + ",colour\n")))


def test_a_strategy_is_required(tmp_path, paper_account):
    path = write(tmp_path, HEADER
                 + "BTC/USDT,long,1,100,110,2026-01-05T10:00:00Z,2026-01-05T12:00:00Z,0,signal\n")
    with pytest.raises(CommandError, match="line 2, field 'strategy': required \\(add a strategy "
                                           "column or pass --strategy\\)"):
        run("import_trades", str(path))


def test_a_fresh_install_imports_history_onto_a_paper_account_it_creates(tmp_path, db):
    path = write(tmp_path, HEADER
                 + "BTC/USDT,long,1,100,110,2026-01-05T10:00:00Z,2026-01-05T12:00:00Z,0,signal\n")
    out = run("import_trades", str(path), "--strategy", "backfill")
    assert out.splitlines() == [
        "created paper account 'imported-history' for the imported history (starting capital "
        "10000: set the real one in the admin)",
        "created strategy 'backfill' on account 'imported-history'",
        "imported 1 trades"]
    account = ExchangeAccount.objects.get()
    assert (account.name, account.exchange_id) == ("imported-history", "paper")
    assert Trade.objects.get().strategy.account == account


def test_the_file_strategy_wins_and_the_option_fills_only_rows_without_one(tmp_path,
                                                                         paper_account):
    """The issue: `--strategy nosuch` overrode the file's strategy column."""
    kept = StrategyFactory(name="trend", account=paper_account)
    path = write(tmp_path, "strategy," + HEADER.replace("\n", "\n", 1)
                 + "trend,BTC/USDT,long,1,100,110,2026-01-05T10:00:00Z,2026-01-05T12:00:00Z,0,"
                 "signal\n"
                 + ",ETH/USDT,long,1,100,110,2026-01-05T10:00:00Z,2026-01-05T12:00:00Z,0,"
                 "signal\n")
    out = run("import_trades", str(path), "--strategy", "nosuch")
    assert out.splitlines() == ["created strategy 'nosuch' on account 'paper-main'",
                                "imported 2 trades"]
    assert dict(Trade.objects.values_list("symbol", "strategy__name")) == {
        "BTC/USDT": kept.name, "ETH/USDT": "nosuch"}


def test_a_missing_file_is_reported(tmp_path, db):
    with pytest.raises(CommandError, match="cannot read"):
        run("import_trades", str(tmp_path / "nope.csv"))


def test_progress_is_reported_per_batch_and_imported_only_at_the_end(tmp_path, paper_account,
                                                                      monkeypatch):
    monkeypatch.setattr(services, "IMPORT_BATCH", 2)
    rows = "".join(f"BTC/USDT,long,1,100,101,2026-01-05T10:00:{s:02d}Z,2026-01-05T11:00:00Z,0,"
                   "signal\n" for s in range(5))
    out = run("import_trades", str(write(tmp_path, HEADER + rows)), "--strategy", "backfill")
    assert out.splitlines() == [  # the last batch's count is the result's
        "read 2 trades (up to line 3), nothing imported yet",
        "read 4 trades (up to line 5), nothing imported yet",
        "created strategy 'backfill' on account 'paper-main'",
        "imported 5 trades"]
    assert Trade.objects.count() == 5


# --- import_trades: freqtrade ----------------------------------------------------------------


def test_import_a_freqtrade_backtest_result(paper_account):
    out = run("import_trades", str(FREQTRADE))
    assert out.splitlines() == ["created strategy 'MeanReversion5m' on account 'paper-main'",
                                "imported 3 trades"]
    first, second, third = Trade.objects.order_by("closed_at")
    assert first.strategy.name == "MeanReversion5m"
    assert (first.symbol, first.side, first.quantity) == ("BTC/USDT:USDT", "long",
                                                          Decimal("0.002"))
    assert (first.entry_price, first.exit_price) == (Decimal("50000"), Decimal("51000"))
    assert first.pnl == Decimal("1.899") and first.pnl_percent == Decimal("1.9")
    # (0.0005 × 50000 + 0.0005 × 51000) × 0.002
    assert first.fees == Decimal("0.101")
    assert first.holding_seconds == 90 * 60 and first.exit_reason == "signal"  # roi
    assert first.external_ref == "freqtrade:BTC/USDT:USDT:1748858400000"
    assert (second.side, second.pnl, second.exit_reason) == ("short", Decimal("-2.101"), "risk")
    assert third.exit_reason == "manual"  # force_exit
    assert "skipped 3 already imported" in run("import_trades", str(FREQTRADE))


def test_import_a_zipped_freqtrade_result_keeps_its_strategy_name(tmp_path, strategy):
    archive = tmp_path / "backtest-result-2025-06-04.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("backtest-result-2025-06-04_config.json", "{}")
        zf.writestr("backtest-result-2025-06-04.json", FREQTRADE.read_text())
    run("import_trades", str(archive), "--strategy", strategy.name)  # the result names its own
    assert set(Trade.objects.values_list("strategy__name", flat=True)) == {"MeanReversion5m"}
    assert Trade.objects.count() == 3


@pytest.mark.parametrize(("mutate", "message"), [
    (lambda t: t.update(close_date="yesterday"),
     "strategy 'MeanReversion5m' trade #2, field 'close_date': expected an ISO 8601"),
    (lambda t: t.pop("open_rate"), "trade #2, field 'open_rate': required"),
    (lambda t: t.update(amount=-1), "trade #2, field 'amount': must be > 0, got -1"),
    (lambda t: t.update(is_open=True), "trade #2, field 'is_open': open trade"),
])
def test_a_bad_freqtrade_trade_imports_nothing(tmp_path, paper_account, mutate, message):
    data = json.loads(FREQTRADE.read_text())
    mutate(data["strategy"]["MeanReversion5m"]["trades"][1])
    path = write(tmp_path, json.dumps(data), "result.json")
    with pytest.raises(CommandError, match=message.replace("(", "\\(").replace(")", "\\)")):
        run("import_trades", str(path))
    assert not Trade.objects.exists()


def test_not_a_freqtrade_result(tmp_path, paper_account):
    with pytest.raises(CommandError, match=r"result\.json line 1: not valid JSON"):
        run("import_trades", str(write(tmp_path, "{oops", "result.json")))
    with pytest.raises(CommandError, match="field 'strategy': expected"):
        run("import_trades", str(write(tmp_path, '{"trades": []}', "result.json")))


def test_an_error_after_earlier_batches_were_inserted_rolls_them_back(tmp_path, paper_account,
                                                                      monkeypatch):
    monkeypatch.setattr(services, "IMPORT_BATCH", 1)
    good = "BTC/USDT,long,1,100,101,2026-01-05T10:00:00Z,2026-01-05T11:00:00Z,0,signal\n"
    path = write(tmp_path, HEADER + good * 3 + good.replace(",101,", ",-1,"))
    with pytest.raises(CommandError, match="line 5, field 'exit_price': must be > 0"):
        run("import_trades", str(path), "--strategy", "backfill")
    assert not Trade.objects.exists() and not Strategy.objects.filter(name="backfill").exists()
