"""Reconcile the database with the exchanges now (what every start does automatically)."""

from __future__ import annotations

import time
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

from execution.models import Order
from execution.services import orders_drive_until_final
from operations.recovery import recover


class Command(BaseCommand):
    help = ("Compare every non-final order and every open position with the exchange, apply "
            "what happened meanwhile, run the timeout pass and keep the report. --dry-run "
            "only reads and reports. Without Redis, the orders still open are driven here "
            "until they end.")
    sleep = staticmethod(time.sleep)

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--dry-run", action="store_true",
                            help="Look up and report only: no order, position or halt changes.")

    def handle(self, *args: Any, dry_run: bool, **opts: Any) -> None:
        def out(line: str) -> None:
            self.stdout.write(line)
            self.stdout.flush()

        inline = not settings.REDIS_URL and not dry_run
        tracked: list[Order] = []
        options = {"track": tracked.append} if inline else {}
        report = recover(trigger="reconcile command", dry_run=dry_run, out=out, **options)
        if tracked:
            self._finish(tracked, out)
        style = self.style.SUCCESS if report.differences == 0 else self.style.WARNING
        self.stdout.write(style(f"{report.differences} differences"))

    def _finish(self, tracked: list[Order], out: Any) -> None:
        """No broker outlives this command: drive what it handed back to the pipeline here."""
        out(f"no Redis: driving the {len(tracked)} orders it tracks here until they end (the "
            "in-memory broker would lose them)")
        orders = Order.objects.select_related("account", "strategy", "position", "action").filter(
            pk__in=[order.pk for order in tracked]).order_by("created_at", "pk")
        for order in orders_drive_until_final(list(orders), sleep=self.sleep):
            out(f"  {order.client_order_id}: {order.status}")
