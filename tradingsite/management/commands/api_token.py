"""Issue or rotate a user's API token; the key is printed once, when it is issued."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from tradingsite.models import ApiToken
from tradingsite.tokens import api_token_issue


class Command(BaseCommand):
    help = ("Issue an API token for USER and print it (send it as 'Authorization: Token <key>'). "
            "The key is shown only now; the platform keeps its digest. --rotate replaces an "
            "existing token (the old key stops working at once).")

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")
        parser.add_argument("--rotate", action="store_true",
                            help="Revoke the current token and issue a new one.")
        parser.add_argument("--actor", default="cli", help="Who to name in the audit log.")

    def handle(self, *args: Any, username: str, rotate: bool, actor: str, **opts: Any) -> None:
        user = get_user_model().objects.filter(username=username).first()
        if user is None:
            raise CommandError(f"no user named {username!r} (create one with createsuperuser)")
        existing = ApiToken.objects.filter(user=user).first()
        if existing is not None and not rotate:
            raise CommandError(
                f"{username} already has an API token ({existing.prefix}…, issued "
                f"{existing.created_at:%Y-%m-%d %H:%M} UTC); a key is shown only when it is "
                f"issued: `api_token --rotate {username}` replaces it")
        key = api_token_issue(user=user, actor=actor)
        self.stdout.write(key)
        self.stderr.write(f"API token {'rotated' if existing else 'issued'} for {username}: "
                          "store it now, it is not shown again")
