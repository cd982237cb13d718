"""Each benchmark runs on a PostgreSQL database of its own: create it, point Django at it."""

from __future__ import annotations

import os
from urllib.parse import urlparse


def database_name(url: str) -> str:
    return urlparse(url).path.lstrip("/")


def create_database(url: str) -> None:
    """Create the database named in ``url`` unless it exists."""
    import psycopg

    admin_url = urlparse(url)._replace(path="/postgres").geturl()
    with psycopg.connect(admin_url, autocommit=True) as conn:
        name = database_name(url)
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')


def django_on_bench_database(url: str) -> bool:
    """Configure Django on ``url``; False when a runner already configured another database."""
    from django.conf import settings

    if settings.configured:
        db = settings.DATABASES["default"]
        return db["ENGINE"].endswith("postgresql") and db["NAME"] == database_name(url)
    os.environ["DATABASE_URL"] = url
    os.environ.pop("REDIS_URL", None)
    os.environ.setdefault("LIVE_TRADING_FILE", "/nonexistent/bench-live-trading.json")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tradingsite.settings")
    create_database(url)
    import django

    django.setup()
    return True
