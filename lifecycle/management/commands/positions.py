"""List supervised positions with their countdown to timeout and health."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from django.utils import timezone

from lifecycle.danger import position_danger_level
from lifecycle.models import Position, PositionState
from lifecycle.selectors import position_state_counts, tracked_positions, with_timing
from tradingsite.admin_helpers import format_age
from tradingsite.numbers import number, plain

HEADERS = ("id", "strategy", "symbol", "side", "qty", "state", "age", "min to timeout", "health")


def _row(position: Position) -> tuple[str, ...]:
    """One line; health is the score with the one danger level (health and state together)."""
    to_timeout = position.timing.minutes_to_timeout
    level = position_danger_level(position.state, position.danger_level)
    health = ("—" if position.health_score is None
              else f"{number(position.health_score, 0)} {level}".strip())
    return (str(position.pk), position.strategy.name, position.symbol, position.side,
            plain(position.quantity), position.state,
            format_age(position.opened_at, position.closed_at), number(to_timeout, 1), health)


def format_table(rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(HEADERS)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(HEADERS, widths, strict=True))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(line.rstrip() for line in lines)


class Command(BaseCommand):
    help = "List positions (default: all still held), most urgent timeout first."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--state", choices=PositionState.values,
                            help="Only positions in this state (CLOSED included).")

    def handle(self, *args: Any, state: str | None = None, **options: Any) -> None:
        now = timezone.now()
        positions = with_timing(tracked_positions(states=[state] if state else None), now)
        self.stdout.write(format_table([_row(p) for p in positions]))
        counts = position_state_counts([state] if state else None)
        self.stdout.write("\n" + ", ".join(f"{s}: {n}" for s, n in counts.items()))
