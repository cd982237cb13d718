"""Settings from the environment: safe defaults, loud refusals naming the variable."""

import os
import runpy
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

SETTINGS_FILE = Path(settings.BASE_DIR) / "tradingsite" / "settings.py"
ENV_VARS = ("TRADING_ENV", "SECRET_KEY", "SECRET_KEY_FILE", "DEBUG", "DATABASE_URL", "REDIS_URL",
            "ALLOWED_HOSTS", "TIME_ZONE", "RUNPLATFORM_HOST", "RUNPLATFORM_PORT", "STATE_DIR",
            "LIVE_TRADING_CONFIG", "EXCHANGE_QUEUES", "SITE_URL", "WATCHDOG_URL",
            "WATCHDOG_EMBEDDED")


@pytest.fixture
def load_settings(monkeypatch, tmp_path):
    """Evaluate settings.py afresh under the given environment; returns its names."""

    def load(**env: str) -> dict:
        for name in ENV_VARS:
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("VAR_DIR", str(tmp_path))
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        return runpy.run_path(str(SETTINGS_FILE))

    return load


def _start_django(tmp_path: Path, **env: str) -> subprocess.CompletedProcess:
    """``django.setup()`` in a fresh interpreter, as a server process would start."""
    environ = {k: v for k, v in os.environ.items() if k not in ENV_VARS}
    environ.update(DJANGO_SETTINGS_MODULE="tradingsite.settings", VAR_DIR=str(tmp_path), **env)
    code = ("import django; django.setup(); from django.conf import settings; "
            "print('DEBUG', settings.DEBUG, 'SECURE', settings.SESSION_COOKIE_SECURE)")
    return subprocess.run([sys.executable, "-c", code], cwd=settings.BASE_DIR, env=environ,
                          capture_output=True, text=True, timeout=60)


def test_production_refuses_to_start_without_a_secret_key(tmp_path):
    result = _start_django(tmp_path, TRADING_ENV="production")
    assert result.returncode != 0
    assert result.stderr == ("configuration error: SECRET_KEY: required when "
                             "TRADING_ENV=production (set SECRET_KEY or SECRET_KEY_FILE)\n")
    assert not (tmp_path / "secret_key").exists()


def test_production_starts_with_a_secret_key_and_secure_cookies(tmp_path):
    result = _start_django(tmp_path, TRADING_ENV="production", SECRET_KEY="k" * 50)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "DEBUG False SECURE True"


def test_development_generates_a_secret_key_once_outside_git(load_settings, tmp_path):
    first = load_settings()["SECRET_KEY"]
    key_file = tmp_path / "secret_key"
    assert key_file.read_text() == first
    assert len(first) >= 50
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert load_settings()["SECRET_KEY"] == first
    gitignore = (Path(settings.BASE_DIR) / ".gitignore").read_text().split()
    assert "var/" in gitignore  # the default VAR_DIR


def test_a_secret_key_can_come_from_a_file(load_settings, tmp_path):
    secret = tmp_path / "key.txt"
    secret.write_text("from-a-file-" + "x" * 40 + "\n")
    assert load_settings(SECRET_KEY_FILE=str(secret))["SECRET_KEY"] == "from-a-file-" + "x" * 40


@pytest.mark.parametrize(("raw", "expected"), [
    (None, False), ("1", True), ("true", True), ("YES", True), ("0", False), ("off", False)])
def test_debug_is_off_unless_set(load_settings, raw, expected):
    env = {} if raw is None else {"DEBUG": raw}
    assert load_settings(**env)["DEBUG"] is expected


def test_a_bad_debug_value_is_named(load_settings):
    with pytest.raises(ImproperlyConfigured) as info:
        load_settings(DEBUG="maybe")
    assert str(info.value) == "DEBUG: expected a boolean (1/0, true/false, yes/no), got 'maybe'"


@pytest.mark.parametrize(("name", "value", "message"), [
    ("TRADING_ENV", "staging", "TRADING_ENV: expected development, production or test, got 'staging'"),
    ("RUNPLATFORM_PORT", "eighty", "RUNPLATFORM_PORT: expected an integer, got 'eighty'"),
    ("EXCHANGE_QUEUES", "{bybit", "EXCHANGE_QUEUES: not valid JSON"),
    ("DATABASE_URL", "nosuchdb://somewhere/x", "DATABASE_URL: cannot parse 'nosuchdb://somewhere/x'"),
    ("SITE_URL", "trading.example.com", "SITE_URL: expected an absolute http/https URL (e.g. "
                                        "https://trading.example.com), got 'trading.example.com'"),
    ("SITE_URL", "ftp://trading.example.com", "SITE_URL: expected an absolute http/https URL"),
    ("SITE_URL", "https://ops:hunter2@trading.example.com",
     "SITE_URL: must not contain credentials (e.g. https://trading.example.com)"),
    ("SITE_URL", "https://trading.example.com/?next=/", "SITE_URL: must not contain a query or "
                                                        "a fragment, got"),
    ("SITE_URL", "https://trading.example.com:99999", "SITE_URL: expected an absolute http/https "
                                                      "URL"),
    ("WATCHDOG_URL", "127.0.0.1:8000/healthz", "WATCHDOG_URL: expected an absolute http/https URL"),
    ("WATCHDOG_EMBEDDED", "sometimes", "WATCHDOG_EMBEDDED: expected a boolean"),
])
def test_other_bad_values_are_named(load_settings, name, value, message):
    with pytest.raises(ImproperlyConfigured) as info:
        load_settings(**{name: value})
    assert str(info.value).startswith(message)


def test_without_database_url_the_database_is_a_sqlite_file(load_settings, tmp_path):
    db = load_settings()["DATABASES"]["default"]
    assert db["ENGINE"] == "django.db.backends.sqlite3"
    assert db["NAME"] == str(tmp_path / "db.sqlite3")
    assert db["OPTIONS"] == {"timeout": 30, "transaction_mode": "IMMEDIATE"}
    assert db["CONN_MAX_AGE"] == 0


def test_database_url_is_parsed(load_settings):
    db = load_settings(DATABASE_URL="postgres://trader:p%40ss@db.internal:6543/trading")[
        "DATABASES"]["default"]
    assert (db["ENGINE"], db["NAME"], db["USER"], db["PASSWORD"], db["HOST"], db["PORT"],
            db["CONN_MAX_AGE"]) == ("django.db.backends.postgresql", "trading", "trader", "p@ss",
                                    "db.internal", 6543, 60)


def test_without_redis_the_broker_and_channel_layer_are_in_memory(load_settings):
    names = load_settings()
    assert names["CELERY_BROKER_URL"] == "memory://localhost/"
    assert names["CHANNEL_LAYERS"]["default"]["BACKEND"] == "channels.layers.InMemoryChannelLayer"


def test_redis_url_drives_the_broker_and_the_channel_layer(load_settings):
    names = load_settings(REDIS_URL="redis://cache.internal:6380/3")
    assert names["CELERY_BROKER_URL"] == "redis://cache.internal:6380/3"
    layer = names["CHANNEL_LAYERS"]["default"]
    assert layer["BACKEND"] == "channels_redis.core.RedisChannelLayer"
    assert layer["CONFIG"]["hosts"] == ["redis://cache.internal:6380/3"]


def test_hosts_time_zone_and_listen_address_come_from_the_environment(load_settings):
    names = load_settings(ALLOWED_HOSTS="trading.example.com, 10.0.0.5", TIME_ZONE="Europe/Berlin",
                          RUNPLATFORM_HOST="0.0.0.0", RUNPLATFORM_PORT="8102")
    assert names["ALLOWED_HOSTS"] == ["trading.example.com", "10.0.0.5"]
    assert names["TIME_ZONE"] == "Europe/Berlin"
    assert (names["RUNPLATFORM_HOST"], names["RUNPLATFORM_PORT"]) == ("0.0.0.0", 8102)
    defaults = load_settings()
    assert defaults["ALLOWED_HOSTS"] == ["127.0.0.1", "localhost", "[::1]"]
    assert (defaults["TIME_ZONE"], defaults["USE_TZ"]) == ("UTC", True)
    assert (defaults["RUNPLATFORM_HOST"], defaults["RUNPLATFORM_PORT"]) == ("127.0.0.1", 8000)


def test_site_url_is_kept_without_its_trailing_slash(load_settings):
    assert load_settings(SITE_URL="https://trading.example.com/desk/")["SITE_URL"] == \
        "https://trading.example.com/desk"
    assert load_settings()["SITE_URL"] == ""
