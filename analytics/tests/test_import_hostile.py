"""import_trades against hostile files: every refusal names its line and field, nothing is
half-imported, nothing is truncated, archives are bounded.

The issue's repros: NUL bytes and a ``+23:59`` offset ended in a raw ``DataError`` on
PostgreSQL; ``external_ref`` was cut to 128 characters silently; a failure at the last
line printed "imported 1000000 trades" and then "nothing imported"; a 200 MB zip bomb
was read into memory.
"""

from __future__ import annotations

import io
import json
import tracemalloc
import zipfile
from datetime import UTC, datetime
from decimal import Decimal
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from analytics import importers, services
from analytics.importers import MAX_JSON_BYTES, TradeImportError
from lifecycle.models import Strategy, Trade
from tradingsite.testing.factories import ExchangeAccountFactory

pytestmark = pytest.mark.django_db

HEADER = "symbol,side,quantity,entry_price,exit_price,opened_at,closed_at,fees,exit_reason,external_ref\n"
GOOD = "BTC/USDT,long,0.5,100,110,2026-01-05T10:00:00Z,2026-01-05T12:00:00Z,1,signal,"
FREQTRADE = Path(__file__).parent / "data" / "freqtrade-backtest-result.json"


@pytest.fixture
def paper_account(db):
    return ExchangeAccountFactory(name="paper-main")


def run(*args: str) -> str:
    out = StringIO()
    call_command("import_trades", *args, stdout=out)
    return out.getvalue()


def refused(path: Path, *args: str) -> str:
    with pytest.raises(CommandError) as info:
        run(str(path), "--strategy", "backfill", *args)
    assert not Trade.objects.exists()
    assert not Strategy.objects.filter(name="backfill").exists()
    return str(info.value)


def write(tmp_path: Path, text: str, name: str = "trades.csv") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


# --- what the database would refuse is refused first, with line and field -----------------


@pytest.mark.parametrize(("row", "message"), [
    ("BTC/USDT\x00,long,0.5,100,110,2026-01-05T10:00:00Z,2026-01-05T12:00:00Z,1,signal,r1",
     "line 3, field 'symbol': contains a NUL character"),
    ("BTC/USDT,long,0.5,100,110,2026-01-05T10:00:00Z,2026-01-05T12:00:00Z,1,signal,r\x00",
     "line 3, field 'external_ref': contains a NUL character"),
    ("BTC/USDT,long,0.5,100,110,2026-01-05T10:00:00+23:59,2026-01-05T12:00:00Z,1,signal,r1",
     "line 3, field 'opened_at': time zone offset +23:59 is outside -12:00 … +14:00"),
    ("BTC/USDT,long,0.5,100,110,2026-01-05T10:00:00Z,2026-01-05T12:00:00-13:00,1,signal,r1",
     "line 3, field 'closed_at': time zone offset -13:00 is outside -12:00 … +14:00"),
    ("BTC/USDT,long,0.5,100,110,0001-01-01T00:00:00+01:00,2026-01-05T12:00:00Z,1,signal,r1",
     "line 3, field 'opened_at': '0001-01-01T00:00:00+01:00' is before 2000-01-01"),
    ("BTC/USDT,long,0.5,100,110,1999-12-31T23:59:59Z,2026-01-05T12:00:00Z,1,signal,r1",
     "line 3, field 'opened_at': 1999-12-31T23:59:59+00:00 is before 2000-01-01"),
    ("BTC/USDT,long,0.5,100,110,2026-01-05T10:00:00Z,2099-01-05T12:00:00Z,1,signal,r1",
     "line 3, field 'closed_at': 2099-01-05T12:00:00+00:00 is in the future"),
    ("BTC/USDT,long,1_000,100,110,2026-01-05T10:00:00Z,2026-01-05T12:00:00Z,1,signal,r1",
     "line 3, field 'quantity': expected a number, got '1_000'"),
    ("BTC/USDT,long,١٢,100,110,2026-01-05T10:00:00Z,2026-01-05T12:00:00Z,1,signal,r1",
     "line 3, field 'quantity': expected a number, got '١٢'"),
    ("BTC/USDT,long,0.5,NaN,110,2026-01-05T10:00:00Z,2026-01-05T12:00:00Z,1,signal,r1",
     "line 3, field 'entry_price': expected a number, got 'NaN'"),
    ("BTC/USDT,long,0.5,1e18,110,2026-01-05T10:00:00Z,2026-01-05T12:00:00Z,1,signal,r1",
     "line 3, field 'entry_price': '1e18' is too large (limit 1e+18)"),
    ("BTC/USDT,long,0.5,100,110,2026-01-05T10:00:00Z,2026-01-05T12:00:00Z,1,signal," + "x" * 129,
     "line 3, field 'external_ref': longer than 128 characters (129): 'xxxxxxxxxxxxxxxxxxxxxxxx'…"),
    ("X" * 65 + ",long,0.5,100,110,2026-01-05T10:00:00Z,2026-01-05T12:00:00Z,1,signal,r1",
     "line 3, field 'symbol': longer than 64 characters (65): 'XXXXXXXXXXXXXXXXXXXXXXXX'…"),
    ("BTC/USDT,long,0.5,100,110,2026-01-05T10:00:00Z,2026-01-05T12:00:00Z,1,signal",
     "line 3: expected 10 fields, got 9"),
])
def test_a_value_the_database_would_refuse_names_line_and_field(tmp_path, paper_account, row,
                                                                message):
    path = write(tmp_path, HEADER + GOOD + "r0\n" + row + "\n")
    assert refused(path) == f"nothing imported: {message}"


def test_an_external_ref_of_128_characters_is_kept_whole(tmp_path, paper_account):
    ref = "r" * 127 + "Z"
    run(str(write(tmp_path, HEADER + GOOD + ref + "\n")), "--strategy", "backfill")
    assert Trade.objects.get().external_ref == ref


def test_a_freqtrade_external_ref_is_never_cut(tmp_path, paper_account):
    data = json.loads(FREQTRADE.read_text())
    data["strategy"]["MeanReversion5m"]["trades"][0]["pair"] = "P" * 65
    path = write(tmp_path, json.dumps(data), "result.json")
    with pytest.raises(CommandError, match=r"trade #1, field 'pair': longer than 64 characters"):
        run(str(path))
    assert not Trade.objects.exists()


def test_invalid_utf8_names_its_line(tmp_path, paper_account):
    path = tmp_path / "trades.csv"
    path.write_bytes((HEADER + GOOD + "r0\n").encode() + b"BTC/\xff\xfe,long\n")
    assert refused(path) == ("nothing imported: line 3: not UTF-8 text (invalid start byte)")


def test_a_record_over_several_lines_keeps_line_numbers_true(tmp_path, paper_account):
    text = (HEADER + GOOD + "r0\n" + GOOD + '"a\nb"\n' + "\n"
            + GOOD.replace("0.5", "-1") + "r9\n")
    assert refused(write(tmp_path, text)) == "nothing imported: line 6, field 'quantity': " \
                                            "must be > 0, got '-1'"


# --- all or nothing, and "imported" only once it is true ----------------------------------------


def test_a_failure_at_the_last_line_prints_no_imported_line(tmp_path, paper_account,
                                                            monkeypatch):
    monkeypatch.setattr(services, "IMPORT_BATCH", 2)
    rows = "".join(f"{GOOD}r{n}\n" for n in range(5))
    path = write(tmp_path, HEADER + rows + GOOD.replace(",110,", ",x,") + "r5\n")
    out = StringIO()
    with pytest.raises(CommandError) as info:
        call_command("import_trades", str(path), "--strategy", "backfill", stdout=out)
    assert str(info.value) == ("nothing imported: line 7, field 'exit_price': expected a number, "
                               "got 'x'")
    assert out.getvalue().splitlines() == [
        "read 2 trades (up to line 3), nothing imported yet",
        "read 4 trades (up to line 5), nothing imported yet"]
    assert not Trade.objects.exists() and not Strategy.objects.filter(name="backfill").exists()


def test_duplicates_in_the_file_and_in_the_database_are_skipped_across_batches(
        tmp_path, paper_account, monkeypatch):
    monkeypatch.setattr(services, "IMPORT_BATCH", 2)
    rows = [f"{GOOD}a", f"{GOOD}b", f"{GOOD.replace('0.5', '0.7')}a", f"{GOOD}", f"{GOOD}"]
    out = run(str(write(tmp_path, HEADER + "\n".join(rows) + "\n")), "--strategy", "backfill")
    assert out.splitlines()[-1] == "imported 4 trades, skipped 1 already imported"
    assert sorted(Trade.objects.values_list("external_ref", "quantity")) == [
        ("", Decimal("0.5")), ("", Decimal("0.5")), ("a", Decimal("0.5")), ("b", Decimal("0.5"))]
    again = run(str(write(tmp_path, HEADER + "\n".join(rows) + "\n")), "--strategy", "backfill")
    assert again.splitlines()[-1] == "imported 2 trades, skipped 3 already imported"


def test_the_column_pass_and_the_record_pass_store_the_same_trades(tmp_path, paper_account,
                                                                   monkeypatch):
    text = ("symbol,side,quantity,entry_price,exit_price,opened_at,closed_at,fees,pnl_percent,"
            "exit_reason,external_ref\n"
            "BTC/USDT, Long ,0.123456789012345,100.00000000005,99.9,2026-01-05T10:00:00+02:00,"
            "2026-01-05 12:00:00.5,0.25,1.25,RISK,x1\n"
            "ETH/USDT,short,2,50.5,55,2026-01-05T13:00:00,2026-01-05T13:30:00Z,0,-3.1,,x2\n")
    path = write(tmp_path, text)

    def stored() -> list[tuple]:
        return list(Trade.objects.order_by("external_ref").values_list(
            "symbol", "side", "quantity", "entry_price", "exit_price", "opened_at", "closed_at",
            "fees", "pnl", "pnl_percent", "holding_seconds", "exit_reason", "external_ref"))

    with monkeypatch.context() as patched:  # the column pass alone
        patched.setattr(importers, "_csv_trade", None)
        run(str(path), "--strategy", "backfill")
    fast = stored()
    Trade.objects.all().delete()

    def doubt(*args, **kwargs):
        raise importers._Doubt

    monkeypatch.setattr(importers, "_csv_columns", doubt)  # the record pass alone
    run(str(path), "--strategy", "backfill")
    assert stored() == fast
    assert fast[0][:7] == (
        "BTC/USDT", "long", Decimal("0.123456789012"), Decimal("100.0000000000"),
        Decimal("99.9"), datetime(2026, 1, 5, 8, tzinfo=UTC),
        datetime(2026, 1, 5, 12, 0, 0, 500000, tzinfo=UTC))


# --- archives and JSON bounded by their uncompressed size ------------------------------------------


def test_a_200_mb_zip_bomb_is_refused_without_being_read(tmp_path, paper_account):
    bomb = tmp_path / "backtest-result.zip"
    with zipfile.ZipFile(bomb, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        with archive.open("backtest-result.json", "w", force_zip64=True) as member:
            chunk = b" " * 2**20
            for _ in range(200):
                member.write(chunk)
    assert bomb.stat().st_size < 2**20
    tracemalloc.start()
    try:
        with pytest.raises(CommandError) as info:
            run(str(bomb))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert str(info.value) == ("nothing imported: backtest-result.zip:backtest-result.json: "
                               "larger than 64 MiB uncompressed: not imported")
    assert peak < 8 * 2**20
    assert not Trade.objects.exists()


def test_a_member_that_is_larger_than_it_says_is_cut_off_at_the_bound(monkeypatch):
    monkeypatch.setattr(importers, "MAX_JSON_BYTES", 1000)
    with pytest.raises(TradeImportError) as info:
        importers._read_bounded(io.BytesIO(b"[" + b" " * 5000 + b"]"), 10, "r.json")
    assert str(info.value) == "r.json: larger than 0 MiB uncompressed: not imported"
    assert MAX_JSON_BYTES == 64 * 2**20


def test_a_corrupt_archive_is_one_line(tmp_path, paper_account):
    archive = tmp_path / "result.zip"
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("backtest-result.json", FREQTRADE.read_text())
    data = bytearray(archive.read_bytes())
    data[40:60] = b"\x00" * 20  # inside the compressed member
    archive.write_bytes(bytes(data))
    with pytest.raises(CommandError) as info:
        run(str(archive))
    assert str(info.value).startswith("nothing imported: result.zip: not a readable archive: ")


def test_a_deeply_nested_json_is_one_line(tmp_path, paper_account):
    path = write(tmp_path, "[" * 100_000 + "]" * 100_000, "result.json")
    with pytest.raises(CommandError) as info:
        run(str(path))
    assert str(info.value) == "nothing imported: result.json: not valid JSON: nested too deeply"


# --- a database refusal still names the row (PostgreSQL: COPY's context) --------------------------


@pytest.mark.postgres
def test_a_value_only_the_database_refuses_names_its_line_and_column(tmp_path, paper_account,
                                                                     monkeypatch):
    monkeypatch.setitem(importers.TEXT_LIMITS, "symbol", 100)  # the table still holds 64
    path = write(tmp_path, HEADER + GOOD + "r0\n" + GOOD.replace("BTC/USDT", "S" * 70) + "r1\n")
    assert refused(path) == ("nothing imported: line 3, field 'symbol': refused by the database: "
                             "value too long for type character varying(64)")
