"""Print the performance report of a period: a table, or the API's JSON with --json."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.core.serializers.json import DjangoJSONEncoder
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from analytics.metrics import METRIC_DEFINITIONS
from analytics.periods import Period
from analytics.selectors import TradeFilters
from analytics.services import DEFAULT_TOP_N, ReportRequest, performance_report
from lifecycle.models import Strategy
from tradingsite.domain import CloseReason


def _moment(value: str) -> datetime:
    moment = parse_datetime(value)
    if moment is None:
        raise CommandError(f"expected an ISO 8601 date and time, got {value!r}")
    return moment if timezone.is_aware(moment) else timezone.make_aware(moment)


class Command(BaseCommand):
    help = "Performance metrics of the closed trades of a period (see the API for definitions)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--period", default="ALL", type=str.upper,
                            choices=[p.value for p in Period],
                            help="Calendar period in the configured time zone (default ALL).")
        parser.add_argument("--strategy", help="Only this strategy's trades.")
        parser.add_argument("--symbol", help="Only this symbol's trades.")
        parser.add_argument("--exit-reason", choices=CloseReason.values)
        parser.add_argument("--start", type=_moment, help="Closed at or after (ISO 8601).")
        parser.add_argument("--end", type=_moment, help="Closed before (ISO 8601).")
        parser.add_argument("--top", type=int, default=DEFAULT_TOP_N,
                            help="How many top and worst trades to list.")
        parser.add_argument("--json", action="store_true", help="Print the report as JSON.")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["strategy"] and not Strategy.objects.filter(name=options["strategy"]).exists():
            raise CommandError(f"unknown strategy {options['strategy']!r}")
        if options["start"] and options["end"] and options["end"] <= options["start"]:
            raise CommandError("--end must be after --start")
        report = performance_report(ReportRequest(
            period=Period(options["period"]),
            filters=TradeFilters(strategy=options["strategy"], symbol=options["symbol"],
                                 exit_reason=options["exit_reason"]),
            start=options["start"], end=options["end"], top_n=max(options["top"], 0)))
        if options["json"]:
            self.stdout.write(json.dumps(report, cls=DjangoJSONEncoder, indent=2))
            return
        self.stdout.write(self._table(report))

    def _table(self, report: dict[str, Any]) -> str:
        window = report["window"]
        lines = [
            f"Performance {report['period']} ({report['time_zone']}): "
            f"{window['start'] or 'first trade'} → {window['end'] or 'now'}, "
            f"{report['trade_count']} trades over {report['day_count']} days",
            f"Equity {report['start_equity']:.2f} → {report['end_equity']:.2f} "
            f"(starting capital {report['starting_capital']:.2f})",
            "",
            f"{'metric':<24} {'value':>18} {'sample':>9}  definition",
        ]
        for name, metric in report["metrics"].items():
            value = metric["value"]
            shown = (f"n/a ({metric.get('undefined_reason', '')})" if value is None
                     else f"{value:.6g}" if isinstance(value, float) else str(value))
            lines.append(f"{name:<24} {shown:>18} {metric['sample_size']:>9}  "
                         f"{METRIC_DEFINITIONS[name]}")
        for title, key in (("Top trades", "top_trades"), ("Worst trades", "worst_trades")):
            if report[key]:
                lines += ["", title]
                lines += [f"  #{t['id']:<8} {t['strategy']:<16} {t['symbol']:<16} {t['side']:<5} "
                          f"pnl {t['pnl']:>12.4f}  closed {t['closed_at']:%Y-%m-%d %H:%M}"
                          for t in report[key]]
        return "\n".join(lines)
