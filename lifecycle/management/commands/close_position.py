"""Queue the emergency close of one position from the command line (exit reason: manual)."""

from __future__ import annotations

import getpass
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from lifecycle.models import Position
from lifecycle.services import position_request_close
from tradingsite.domain import CloseReason
from tradingsite.errors import InvalidStateTransition


class Command(BaseCommand):
    help = "Queue the emergency close of position ID; --reason is kept on its history."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("position_id", type=int)
        parser.add_argument("--reason", required=True,
                            help="Why (free text, kept on the close request event).")

    def handle(self, *args: Any, position_id: int, reason: str, **options: Any) -> None:
        position = Position.objects.filter(pk=position_id).first()
        if position is None:
            raise CommandError(f"position {position_id} does not exist")
        try:
            action, created = position_request_close(
                position=position, reason=CloseReason.MANUAL, actor=f"cli:{getpass.getuser()}",
                note=reason)
        except InvalidStateTransition as exc:
            raise CommandError(str(exc)) from exc
        if created:
            self.stdout.write(self.style.SUCCESS(
                f"position {position_id}: emergency close queued (action {action.pk})"))
        else:
            self.stdout.write(self.style.WARNING(
                f"position {position_id}: a close is already queued (action {action.pk}, "
                f"{action.state})"))
