"""Import closed trades from a CSV file or a freqtrade backtest result (all or nothing)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from analytics.importers import TradeImportError
from analytics.services import import_trade_file


class Command(BaseCommand):
    help = ("Import closed trades from CSV (columns: symbol, side, quantity, entry_price, "
            "exit_price, opened_at, closed_at [, strategy, fees, pnl, pnl_percent, exit_reason, "
            "external_ref]) or a freqtrade backtest-result .json/.zip. The file is streamed and "
            "staged; the trades are published in one transaction at the end, so nothing is "
            "imported on error. Unknown strategies are created on the first paper account.")

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", type=Path)
        parser.add_argument("--strategy", help="Put every trade on this strategy.")
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
        if result.strategies_created:
            self.stdout.write(f"created strategies: {', '.join(result.strategies_created)}")
        self.stdout.write(self.style.SUCCESS(
            f"imported {result.created} trades"
            + (f", skipped {result.skipped_duplicates} already imported"
               if result.skipped_duplicates else "")))
