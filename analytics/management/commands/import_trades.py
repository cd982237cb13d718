"""Import closed trades from a CSV file or a freqtrade backtest result (all or nothing)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from analytics.importers import TradeImportError
from analytics.services import import_trade_file
from execution.models import ExchangeAccount
from tradingsite.numbers import plain


class Command(BaseCommand):
    help = ("Import closed trades from CSV (columns: symbol, side, quantity, entry_price, "
            "exit_price, opened_at, closed_at [, strategy, fees, pnl, pnl_percent, exit_reason, "
            "external_ref]) or a freqtrade backtest-result .json/.zip. The file is streamed and "
            "staged; the trades are published in one transaction at the end, so nothing is "
            "imported on error. Each trade keeps the strategy its row names; --strategy fills "
            "the rows that name none. Unknown strategies are created on the first paper "
            "account (on a fresh install, on a new paper account 'imported-history').")

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", type=Path)
        parser.add_argument("--strategy",
                            help="The strategy of the rows that name none (the file's own "
                                 "strategy column wins).")
        parser.add_argument("--format", dest="fmt", default="auto",
                            choices=["auto", "csv", "freqtrade"],
                            help="auto: .csv is CSV, anything else a freqtrade result.")

    def handle(self, *args: Any, **options: Any) -> None:
        def progress(line: str) -> None:
            self.stdout.write(line)
            self.stdout.flush()

        try:
            result = import_trade_file(options["file"], strategy=options["strategy"],
                                       fmt=options["fmt"], progress=progress)
        except TradeImportError as exc:
            raise CommandError(f"nothing imported: {exc}") from None
        # Only now, after the publishing transaction committed, is anything imported.
        if result.account_created:
            self.stdout.write(f"created paper account {result.account_created!r} for the "
                              "imported history (starting capital "
                              f"{plain(ExchangeAccount._meta.get_field('starting_capital').default)}"
                              ": set the real one in the admin)")
        for name in result.strategies_created:
            self.stdout.write(f"created strategy {name!r} on account {result.strategies_account!r}")
        self.stdout.write(self.style.SUCCESS(
            f"imported {result.created} trades"
            + (f", skipped {result.skipped_duplicates} already imported"
               if result.skipped_duplicates else "")))
