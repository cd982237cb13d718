"""``manage.py notify_test [--channel NAME]``: a test message to each channel, and its answer."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from notifications.delivery import send_test


class Command(BaseCommand):
    help = ("Send a test message to every enabled notification channel (NOTIFY_URLS and the "
            "admin's), or to the one named, and print each channel's outcome. Exits 1 when "
            "a channel did not take it.")

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--channel", help="Only this channel (see the admin, or env-<scheme> "
                                              "for NOTIFY_URLS items).")

    def handle(self, *args: Any, channel: str | None = None, **options: Any) -> None:
        try:
            outcomes = send_test(channel_name=channel, actor="notify_test")
        except LookupError as exc:
            raise CommandError(str(exc)) from None
        for outcome in outcomes:
            line = f"{outcome.channel}: {'delivered' if outcome.ok else 'FAILED'}"
            if not outcome.ok:
                line += f" ({outcome.detail})"
            (self.stdout if outcome.ok else self.stderr).write(line)
        failed = [o.channel for o in outcomes if not o.ok]
        if failed:
            raise CommandError(f"not delivered to {', '.join(failed)}")
