"""Check the platform's promises now and print the result (what the beat task alerts on)."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from operations.invariants import (
    EXCHANGE_UNREADABLE,
    GRACE,
    check_all,
    report_lines,
    violations_of,
)


class Command(BaseCommand):
    help = ("Check every promise of the platform against the database and the exchanges and "
            "print the violations with their evidence. Exit code 1 when a promise is broken, "
            "2 when none is but an exchange could not be read (its promises are unchecked).")

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--json", action="store_true", dest="as_json",
                            help="Print the result as JSON.")
        parser.add_argument("--grace", type=int, default=int(GRACE.total_seconds()),
                            metavar="SECONDS",
                            help="Time allowed for what is still moving (default %(default)s; "
                                 "0: everything must have settled).")

    def handle(self, *args: Any, as_json: bool, grace: int, **opts: Any) -> None:
        if grace < 0:
            self.stderr.write("--grace: must be 0 or more seconds")
            raise SystemExit(2)
        result = check_all(grace=timedelta(seconds=grace))
        if as_json:
            self.stdout.write(json.dumps({name: [{"subject": v.subject, "message": v.message,
                                             "evidence": v.evidence,
                                             "position": v.position_id} for v in found]
                                     for name, found in result.items()},
                                    indent=2, sort_keys=True))
        else:
            for line in report_lines(result):
                self.stdout.write(line)
        if violations_of(result):
            raise SystemExit(1)
        if result.get(EXCHANGE_UNREADABLE):
            raise SystemExit(2)
