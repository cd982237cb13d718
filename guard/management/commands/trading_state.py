"""Show or set the trading state of the platform, an account or a strategy."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.core.serializers.json import DjangoJSONEncoder

from guard.api import ScopeSerializer
from guard.models import TradingState
from guard.selectors import scopes_overview
from guard.services import scope_get, scope_state_set
from tradingsite.errors import DomainError


def _plain(value: Any) -> str:
    return "—" if value is None else f"{value:f}" if hasattr(value, "as_tuple") else str(value)


class Command(BaseCommand):
    help = ("Show every scope's trading state and the distance to each limit, or set one "
            "scope's state (ACTIVE re-arms a tripped scope).")

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--scope", help="global, account:NAME or strategy:NAME (default: all)")
        parser.add_argument("--set", dest="state", choices=TradingState.values,
                            help="The new state (needs --reason and --scope).")
        parser.add_argument("--reason", help="Why: shown to every operator and audited.")
        parser.add_argument("--actor", default="operator (cli)")
        parser.add_argument("--json", action="store_true", help="Print JSON instead of a table.")

    def handle(self, *args: Any, scope: str | None, state: str | None, reason: str | None,
               actor: str, json: bool, **opts: Any) -> None:
        try:
            target = scope_get(scope) if scope else None
            if state is not None:
                if target is None:
                    raise CommandError("--set needs --scope (global, account:NAME or "
                                       "strategy:NAME)")
                if not (reason or "").strip():
                    raise CommandError("--set needs --reason: it is shown to every operator")
                target = scope_state_set(scope=target, state=state, reason=reason, actor=actor)
        except DomainError as exc:
            raise CommandError(str(exc)) from None
        overview = scopes_overview(only=target)
        if json:  # the shapes of GET /api/guard/
            self.stdout.write(_json(ScopeSerializer(overview, many=True).data))
            return
        for row in overview:
            self._print(row)

    def _print(self, row: dict[str, Any]) -> None:
        since = row["since"].strftime("%Y-%m-%d %H:%M:%S %Z")
        head = f"{row['scope']}: {row['state']} since {since} by {row['by'] or '—'}"
        self.stdout.write(head + (f" — {row['reason']}" if row["reason"] else ""))
        if row["trip"]:
            trip = row["trip"]
            self.stdout.write(f"  TRIPPED {trip['code']} at {trip['tripped_at']:%Y-%m-%d %H:%M:%S}: "
                              f"{trip['message']}")
        if row["equity"] is not None:
            age = row["marks_age_seconds"]
            marks = f", marks {age:.0f} s old" if age is not None else ", no marks"
            unmarked = (f", {row['unmarked_positions']} unmarked"
                        if row["unmarked_positions"] else "")
            self.stdout.write(f"  equity {_plain(row['equity'])} (day start "
                              f"{_plain(row['day_start_equity'])}, peak "
                              f"{_plain(row['peak_equity'])}{marks}{unmarked})")
        for limit in row["limits"]:
            if limit["limit"] is None:
                continue
            used = f" ({_plain(limit['used_percent'])}% used)" if limit["used_percent"] is not None \
                else ""
            self.stdout.write(f"  {limit['key']:<26} {_plain(limit['value']):>14} of "
                              f"{_plain(limit['limit'])} {limit['unit']}{used}")


def _json(data: Any) -> str:
    return json.dumps(data, cls=DjangoJSONEncoder, indent=2)
