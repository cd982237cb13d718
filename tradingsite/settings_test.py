"""Settings for the test suite: the environment-driven settings, made fast and hermetic."""

import os

from tradingsite.settings import *
from tradingsite.settings import VAR_DIR

# A developer's imported config file must not change test results.
LIVE_TRADING_FILE = VAR_DIR / "tests" / "no-live-trading-file.json"
LIVE_TRADING = ""
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
CELERY_TASK_ALWAYS_EAGER = False
STATE_DIR = VAR_DIR / "tests" / "state"
# In-process Platform tests pick their own hooks; `runplatform` subprocesses use the real ones.
PLATFORM_STARTUP_HOOKS: list[str] = []
PLATFORM_SHUTDOWN_HOOKS: list[str] = []
PLATFORM_STOP_CHECKS: list[str] = []
# No watchdog thread inside in-process Platform tests; no channel from the developer's shell.
WATCHDOG_EMBEDDED = False
NOTIFY_URLS = ""
WATCHDOG_NOTIFY_URLS = ""
SITE_URL = "https://trading.example.test"
# None in-process; a test starting real processes may name some (comma-separated).
PLATFORM_SERVICES: list[str] = [name for name in os.environ.get(
    "TEST_PLATFORM_SERVICES", "").split(",") if name]
