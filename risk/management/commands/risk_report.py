"""Print the health report: counts per danger level, the worst positions, open alerts."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from django.core.serializers.json import DjangoJSONEncoder
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from risk.selectors import health_report
from risk.serializers import HealthReportSerializer
from tradingsite.numbers import number


def _fmt(value: Any, digits: int | None = 2) -> str:
    """The one number format: rounded, no trailing zeros, never -0; text as it is."""
    if value is None or value == "":
        return "—"
    if isinstance(value, bool) or not isinstance(value, (int, float, Decimal, str)):
        return str(value)
    try:
        return number(value, digits)
    except (ArithmeticError, ValueError):
        return str(value)


def render_table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h)
              for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(line.rstrip() for line in lines)


class Command(BaseCommand):
    help = "Health of held positions (worst first), counts per danger level and open alerts."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--worst", type=int, default=50,
                            help="How many positions to list, worst first (default 50).")
        parser.add_argument("--json", action="store_true", help="Print the report as JSON.")

    def handle(self, *args: Any, **options: Any) -> None:
        raw = health_report(worst=max(1, options["worst"]))
        report = HealthReportSerializer(raw).data
        if options["json"]:
            self.stdout.write(json.dumps(report, cls=DjangoJSONEncoder, indent=2))
            return
        counts = report["counts"]
        generated = timezone.localtime(raw["generated_at"]).strftime("%Y-%m-%d %H:%M:%S %Z")
        self.stdout.write(f"Risk report {generated} — {report['positions']} position(s) held")
        self.stdout.write("  ".join(f"{level} {counts[level]}" for level in counts))
        self.stdout.write("LEVEL: the one danger level (health and state together). NET PNL: "
                          "unrealised, net of the assumed entry and exit fees (the dashboard's "
                          "uPnL is gross, before fees).")
        self.stdout.write("")
        rows = []
        for p in report["worst_positions"]:
            c = p["components"] or {}
            rows.append([str(p["id"]), p["strategy"], p["symbol"], p["side"], p["state"],
                         p["danger_level"] or "—", _fmt(p["score"]),
                         *(_fmt(c.get(k)) for k in ("time_at_risk", "drawdown", "volume",
                                                    "volatility", "profitability")),
                         _fmt(p["last_price"], None), _fmt(p["unrealised_pnl"]),
                         _fmt(p["minutes_to_timeout"], 1),
                         "complete" if p["data_complete"] else "missing: "
                         + (",".join(p["missing"]) or "not checked")])
        self.stdout.write(render_table(
            ["ID", "STRATEGY", "SYMBOL", "SIDE", "STATE", "LEVEL", "SCORE", "TIME", "DRAWDOWN",
             "VOLUME", "VOLATILITY", "PROFIT", "PRICE", "NET PNL", "MIN LEFT", "DATA"], rows))
        self.stdout.write("")
        alerts = report["open_alerts"]
        self.stdout.write(f"Open alerts: {len(alerts)}")
        if alerts:
            self.stdout.write(render_table(
                ["ID", "SEVERITY", "KIND", "POSITION", "SYMBOL", "SEEN", "LAST SEEN", "ACK",
                 "MESSAGE"],
                [[str(a["id"]), a["severity"], a["kind"], _fmt(a["position"]), _fmt(a["symbol"]),
                  str(a["occurrences"]), _when(a["last_seen"]),
                  a["acknowledged_by"] or ("yes" if a["acknowledged"] else "no"), a["message"]]
                 for a in alerts]))


def _when(value: Any) -> str:
    """An API time (ISO text) in the configured zone, 24-hour."""
    moment = parse_datetime(str(value)) if value else None
    return timezone.localtime(moment).strftime("%Y-%m-%d %H:%M:%S") if moment else "—"
