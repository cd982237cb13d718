"""``python manage.py execution_metrics``: execution quality per exchange account and overall."""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta

from django.core.management.base import BaseCommand, CommandError
from django.core.serializers.json import DjangoJSONEncoder
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from analytics.execution_metrics import execution_metrics

ROWS = [("orders", "Orders"), ("filled", "Filled"), ("rejected", "Rejects"),
        ("failed", "Failures"), ("expired", "Expired"), ("cancelled", "Cancelled"),
        ("open", "Open"), ("success_rate", "Success rate %"), ("retries", "Retries"),
        ("orders_retried", "Orders retried"), ("timeouts", "Timeouts"),
        ("latency_ms_mean", "Latency avg ms"), ("latency_ms_p95", "Latency p95 ms"),
        ("slippage_percent_mean", "Slippage avg %"),
        ("slippage_percent_worst", "Slippage worst %")]


def _cell(key: str, metric: dict) -> str:
    value = metric["value"]
    if value is None:
        return "—"
    if key == "success_rate":
        return f"{value * 100:.1f}"
    return f"{value:.3f}".rstrip("0").rstrip(".") if isinstance(value, float) else str(value)
RELATIVE = re.compile(r"^(\d+)([mhd])$")


def parse_moment(value: str | None, option: str) -> datetime | None:
    """An ISO datetime, or a look-back such as ``30m``, ``24h``, ``7d``."""
    if not value:
        return None
    match = RELATIVE.match(value)
    if match:
        unit = {"m": "minutes", "h": "hours", "d": "days"}[match.group(2)]
        return timezone.now() - timedelta(**{unit: int(match.group(1))})
    moment = parse_datetime(value)
    if moment is None:
        raise CommandError(f"{option}: expected an ISO datetime or 30m/24h/7d, got {value!r}")
    return moment if timezone.is_aware(moment) else timezone.make_aware(moment)


class Command(BaseCommand):
    help = "Execution metrics (orders, success rate, retries, timeouts, rejects, latency, " \
           "slippage) per exchange account and overall."

    def add_arguments(self, parser):
        parser.add_argument("--since", help="ISO datetime or look-back (24h, 7d); default: all")
        parser.add_argument("--until", help="ISO datetime (exclusive)")
        parser.add_argument("--account", help="only this exchange account (name)")
        parser.add_argument("--json", action="store_true", help="print JSON")

    def handle(self, *args, **options):
        report = execution_metrics(start=parse_moment(options["since"], "--since"),
                                   end=parse_moment(options["until"], "--until"),
                                   account=options["account"])
        if options["json"]:
            self.stdout.write(json.dumps(report, cls=DjangoJSONEncoder, indent=2))
            return
        columns = [("overall", report["overall"]),
                   *((acc["account"], acc) for acc in report["accounts"])]
        width = max(len(name) for name, _ in columns) + 2
        self.stdout.write(f"{'':<18}" + "".join(f"{name:>{width}}" for name, _ in columns))
        for key, label in ROWS:
            cells = "".join(f"{_cell(key, m[key]):>{width}}" for _, m in columns)
            self.stdout.write(f"{label:<18}{cells}")
