"""Run the whole platform in one process: ASGI server, Celery worker and beat."""

from __future__ import annotations

import os
import sys
import threading
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

from operations.runtime import Platform, PlatformOptions
from tradingsite.live_config import site_config


def _database_label() -> str:
    db = settings.DATABASES["default"]
    if db["ENGINE"].endswith("sqlite3"):
        return f"SQLite {db['NAME']}"
    return f"{db['ENGINE'].rsplit('.', 1)[-1]} {db.get('HOST') or 'localhost'}/{db['NAME']}"


class Command(BaseCommand):
    help = ("The embedded default: one process serving HTTP and websockets (daphne) with an "
            "in-process Celery worker and beat (database scheduler). Stop with SIGINT/SIGTERM.")

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default=settings.RUNPLATFORM_HOST,
                            help="Interface to listen on (RUNPLATFORM_HOST, default %(default)s).")
        parser.add_argument("--port", type=int, default=settings.RUNPLATFORM_PORT,
                            help="TCP port (RUNPLATFORM_PORT, default %(default)s).")
        parser.add_argument("--threads", type=int, default=settings.RUNPLATFORM_WORKER_THREADS,
                            help="Worker threads (RUNPLATFORM_WORKER_THREADS, default %(default)s).")
        parser.add_argument("--no-worker", action="store_true",
                            help="Do not run a worker here (a separate `celery worker` does).")
        parser.add_argument("--no-beat", action="store_true",
                            help="Do not run beat here (a separate `celery beat` does).")

    def handle(self, *args: Any, **opts: Any) -> None:
        options = PlatformOptions(
            host=opts["host"], port=opts["port"], worker_threads=opts["threads"],
            run_worker=not opts["no_worker"], run_beat=not opts["no_beat"],
            access_log=opts["verbosity"] >= 2,
            shutdown_timeout=site_config().shutdown.shutdown_timeout_seconds,
        )
        self.check_migrations()
        out = self.stdout
        out.write(f"Trading platform (pid {os.getpid()}, TRADING_ENV={settings.TRADING_ENV})")
        out.write(f"  database:      {_database_label()}")
        out.write("  channel layer: " + ("Redis" if settings.REDIS_URL else "in-memory"))
        exit_code = Platform(options, out=lambda line: (out.write(line), out.flush())).run()
        if exit_code:
            _exit_abandoning_threads(exit_code)


def _exit_abandoning_threads(exit_code: int) -> None:
    """Exit now although abandoned threads (a hung exchange call) are still running.

    ``sys.exit`` would wait for the worker pool's non-daemon threads, i.e. for the hung
    call's own network timeout. Only the snapshot writer is waited for (bounded).
    """
    for thread in threading.enumerate():
        if thread.name == "state-snapshot":
            thread.join(10)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(exit_code)
