"""Seed a fresh database for the browser tests and screenshots, in a process of its own.

    DATABASE_URL=sqlite:///var/x.sqlite3 python -m tests.browser.prepare

Migrates the database named by the environment, seeds ``tests.browser.seed``'s book and
the two users, and prints the seeded positions' ids by coin as JSON on its last line.
"""

from __future__ import annotations

import json
import os
from datetime import datetime

STAFF = ("operator", "op-pass-123")
VIEWER = ("viewer", "view-pass-123")


def prepare_database(now: datetime | None = None) -> dict[str, int]:
    """Migrate, seed the book and the users; the position ids by coin."""
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.utils import timezone

    from tests.browser.seed import seed_book

    call_command("migrate", verbosity=0)
    book = seed_book(now or timezone.now())
    users = get_user_model()
    users.objects.create_user(STAFF[0], password=STAFF[1], is_staff=True, is_superuser=True)
    users.objects.create_user(VIEWER[0], password=VIEWER[1])
    return {name: position.pk for name, position in book.positions.items()}


if __name__ == "__main__":
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tradingsite.settings")
    django.setup()
    print(json.dumps(prepare_database()))
