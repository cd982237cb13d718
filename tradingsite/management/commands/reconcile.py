"""Reconcile the database with the exchanges now (what every start does automatically)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from tradingsite.recovery import recover


class Command(BaseCommand):
    help = ("Compare every non-final order and every open position with the exchange, apply "
            "what happened meanwhile, run the timeout pass and keep the report. --dry-run "
            "only reads and reports.")

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--dry-run", action="store_true",
                            help="Look up and report only: no order, position or halt changes.")

    def handle(self, *args: Any, dry_run: bool, **opts: Any) -> None:
        def out(line: str) -> None:
            self.stdout.write(line)
            self.stdout.flush()

        report = recover(trigger="reconcile command", dry_run=dry_run, out=out)
        style = self.style.SUCCESS if report.differences == 0 else self.style.WARNING
        self.stdout.write(style(f"{report.differences} differences"))
