"""Ask a running platform to shut down gracefully (or run the sequence here)."""

from __future__ import annotations

import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from operations.shutdown import shutdown_run
from operations.state_files import signal_local_platform, wait_for_exit
from tradingsite.live_config import site_config
from tradingsite.services import shutdown_request


class Command(BaseCommand):
    help = ("Stop the platform gracefully: SIGTERM to the local runplatform (pid file under "
            "STATE_DIR), and a shutdown request in the database that every running "
            "runplatform polls. With --run-here the shutdown sequence (halt entries, cancel "
            "orders, close positions if configured, snapshot) runs in this process: for "
            "production, where the workers are separate processes.")

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--run-here", action="store_true",
                            help="Run the shutdown sequence in this process, bounded by "
                                 "shutdownTimeoutSeconds; exit 1 if it did not finish.")
        parser.add_argument("--wait", type=float, default=0, metavar="SECONDS",
                            help="Wait up to SECONDS for the local runplatform to exit.")
        parser.add_argument("--actor", default="operator (cli)")

    def handle(self, *args: Any, run_here: bool, wait: float, actor: str, **opts: Any) -> None:
        def out(line: str) -> None:
            self.stdout.write(line)
            self.stdout.flush()

        pid = signal_local_platform()  # the signal first: the flag would then be a second stop
        if pid is not None:
            out(f"sent SIGTERM to runplatform (pid {pid})")
        state = shutdown_request(actor=actor)
        out(f"shutdown requested at {state.shutdown_requested_at:%Y-%m-%d %H:%M:%S %Z}: "
            "running runplatform instances stop gracefully")
        exit_code = 0
        if run_here:
            out("shutdown sequence:")
            outcome = shutdown_run(timeout=site_config().shutdown.shutdown_timeout_seconds,
                                   reason="shutdown_platform", out=out)
            exit_code = outcome.exit_code
        if pid is not None and wait > 0:
            if wait_for_exit(pid, wait):
                out(f"runplatform (pid {pid}) exited")
            else:
                out(f"runplatform (pid {pid}) still running after {wait:g} s")
                exit_code = 1
        if exit_code:
            sys.exit(exit_code)
