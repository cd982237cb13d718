"""Create the demo data of the embedded default; safe to run again."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from operations.demo import ACCOUNT_NAME, CANDLE_FILE, SYMBOL, seed_demo


class Command(BaseCommand):
    help = ("Create a paper exchange account replaying real candles, two strategies, open "
            "positions, closed trades and a staff user (its password is printed once).")

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--username", default="admin", help="Staff user to create.")

    def handle(self, *args: Any, **opts: Any) -> None:
        report = seed_demo(username=opts["username"])
        self.stdout.write(f"Demo data: paper account {ACCOUNT_NAME!r} replaying {CANDLE_FILE} "
                          f"as {SYMBOL}")
        for label, count in report.created.items():
            self.stdout.write(f"  created {count} {label}")
        for label in report.present:
            self.stdout.write(f"  already present: {label}")
        if report.password is not None:
            self.stdout.write(self.style.WARNING(
                f"Staff user {report.username!r} created with password: {report.password}\n"
                "  This password is shown only now: note it. "
                f"Change it with: python manage.py changepassword {report.username}"))
        else:
            self.stdout.write(
                f"Staff user {report.username!r} already exists; its password was printed when "
                f"it was created (reset it with: python manage.py changepassword {report.username}).")
