"""Production mode: no DEBUG, no traceback at start, secure transport, masked settings, CSP."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.core.management import call_command
from django.test import RequestFactory
from django.views.debug import ExceptionReporter

from tradingsite.env import SettingsError, mask_url
from tradingsite.security import CSP_HEADER
from tradingsite.testing.factories import PositionFactory

ROOT = Path(django_settings.BASE_DIR)
SETTINGS_FILE = ROOT / "tradingsite" / "settings.py"
STRONG_KEY = "k3Y-" + "q7Zx9Lw2" * 8  # 68 characters, many distinct
ENV_VARS = ("TRADING_ENV", "SECRET_KEY", "SECRET_KEY_FILE", "DEBUG", "DATABASE_URL", "REDIS_URL",
            "ALLOWED_HOSTS", "SECURE_SSL_REDIRECT", "SECURE_HSTS_SECONDS",
            "SECURE_HSTS_INCLUDE_SUBDOMAINS", "SECURE_HSTS_PRELOAD", "SECURE_PROXY_SSL_HEADER",
            "SESSION_COOKIE_SECURE", "CSRF_COOKIE_SECURE", "LIVE_TRADING_CONFIG",
            "DJANGO_ALLOW_ASYNC_UNSAFE")  # the browser tests set the last one in this process
PG_SECRET = "pg-s3cret-pw"
REDIS_SECRET = "redis-s3cret-pw"


def _manage(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    """``python manage.py ARGS`` as an operator runs it, with only ``env`` set."""
    environ = {k: v for k, v in os.environ.items()
               if k not in ENV_VARS and not k.startswith("LIVE_TRADING")}
    environ.update(DJANGO_SETTINGS_MODULE="tradingsite.settings", VAR_DIR=str(tmp_path),
                   LIVE_TRADING_FILE=str(tmp_path / "none.json"), **env)
    return subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=environ,
                          capture_output=True, text=True, timeout=120)


@pytest.fixture
def load_settings(monkeypatch, tmp_path):
    import runpy

    def load(**env: str) -> dict:
        for name in ENV_VARS:
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("VAR_DIR", str(tmp_path))
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        return runpy.run_path(str(SETTINGS_FILE))

    return load


# --- start-up refusals: one line naming the variable -----------------------------------


def test_production_with_debug_refuses_to_start_naming_debug(tmp_path):
    result = _manage(tmp_path, "check", TRADING_ENV="production", DEBUG="1",
                     SECRET_KEY=STRONG_KEY)
    assert result.returncode == 1
    assert result.stderr == ("configuration error: DEBUG: must be off when "
                             "TRADING_ENV=production (unset DEBUG or set DEBUG=0)\n")
    assert result.stdout == ""


def test_production_with_debug_and_no_secret_key_names_debug_first(tmp_path):
    result = _manage(tmp_path, "check", TRADING_ENV="production", DEBUG="1")
    assert result.returncode == 1
    assert result.stderr == ("configuration error: DEBUG: must be off when "
                             "TRADING_ENV=production (unset DEBUG or set DEBUG=0)\n")
    assert not (tmp_path / "secret_key").exists()


def test_production_without_secret_key_is_one_line_without_traceback(tmp_path):
    result = _manage(tmp_path, "check", TRADING_ENV="production")
    assert result.returncode == 1
    assert result.stderr == ("configuration error: SECRET_KEY: required when "
                             "TRADING_ENV=production (set SECRET_KEY or SECRET_KEY_FILE)\n")
    assert not (tmp_path / "secret_key").exists()


def test_the_asgi_server_entry_point_refuses_debug_in_one_line(tmp_path):
    environ = {k: v for k, v in os.environ.items() if k not in ENV_VARS}
    environ.update(DJANGO_SETTINGS_MODULE="tradingsite.settings", VAR_DIR=str(tmp_path),
                   TRADING_ENV="production", DEBUG="true", SECRET_KEY=STRONG_KEY)
    result = subprocess.run([sys.executable, "-c", "import tradingsite.asgi"], cwd=ROOT,
                            env=environ, capture_output=True, text=True, timeout=120)
    assert (result.returncode, result.stderr) == (1, (
        "configuration error: DEBUG: must be off when TRADING_ENV=production "
        "(unset DEBUG or set DEBUG=0)\n"))


def test_a_bad_database_url_is_named_with_its_password_masked(load_settings):
    with pytest.raises(SettingsError) as info:
        load_settings(DATABASE_URL=f"nosuchdb://trader:{PG_SECRET}@db.internal/x")
    assert str(info.value).startswith(
        "DATABASE_URL: cannot parse 'nosuchdb://trader:********@db.internal/x'")
    assert PG_SECRET not in str(info.value)


@pytest.mark.parametrize("value", ["X-Forwarded-Proto", "X Forwarded:https", ":https"])
def test_a_bad_proxy_ssl_header_is_named(load_settings, value):
    with pytest.raises(SettingsError) as info:
        load_settings(SECURE_PROXY_SSL_HEADER=value)
    assert str(info.value) == ("SECURE_PROXY_SSL_HEADER: expected Header-Name:value, e.g. "
                               f"X-Forwarded-Proto:https, got {value!r}")


# --- secure transport, configurable ---------------------------------------------------


def test_production_defaults_are_secure(load_settings):
    names = load_settings(TRADING_ENV="production", SECRET_KEY=STRONG_KEY)
    assert {key: names[key] for key in (
        "DEBUG", "SECURE_SSL_REDIRECT", "SECURE_HSTS_SECONDS", "SECURE_HSTS_INCLUDE_SUBDOMAINS",
        "SECURE_HSTS_PRELOAD", "SECURE_PROXY_SSL_HEADER", "SESSION_COOKIE_SECURE",
        "CSRF_COOKIE_SECURE")} == {
        "DEBUG": False, "SECURE_SSL_REDIRECT": True, "SECURE_HSTS_SECONDS": 31_536_000,
        "SECURE_HSTS_INCLUDE_SUBDOMAINS": True, "SECURE_HSTS_PRELOAD": True,
        "SECURE_PROXY_SSL_HEADER": None, "SESSION_COOKIE_SECURE": True,
        "CSRF_COOKIE_SECURE": True}


def test_development_serves_plain_http(load_settings):
    names = load_settings()
    assert (names["SECURE_SSL_REDIRECT"], names["SECURE_HSTS_SECONDS"],
            names["SESSION_COOKIE_SECURE"]) == (False, 0, False)


def test_transport_settings_are_configurable(load_settings):
    names = load_settings(TRADING_ENV="production", SECRET_KEY=STRONG_KEY,
                          SECURE_SSL_REDIRECT="0", SECURE_HSTS_SECONDS="3600",
                          SECURE_HSTS_PRELOAD="no",
                          SECURE_PROXY_SSL_HEADER="X-Forwarded-Proto:https")
    assert (names["SECURE_SSL_REDIRECT"], names["SECURE_HSTS_SECONDS"],
            names["SECURE_HSTS_PRELOAD"], names["SECURE_PROXY_SSL_HEADER"]) == (
        False, 3600, False, ("HTTP_X_FORWARDED_PROTO", "https"))


def test_check_deploy_is_clean_with_the_documented_production_settings(tmp_path):
    result = _manage(tmp_path, "check", "--deploy", "--fail-level", "WARNING",
                     TRADING_ENV="production", SECRET_KEY=STRONG_KEY,
                     ALLOWED_HOSTS="trading.example.com",
                     CSRF_TRUSTED_ORIGINS="https://trading.example.com",
                     SECURE_PROXY_SSL_HEADER="X-Forwarded-Proto:https")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "System check identified no issues (0 silenced)."


@pytest.mark.django_db
def test_production_redirects_to_https_with_hsts(client, settings):
    settings.SECURE_SSL_REDIRECT = True
    settings.SECURE_HSTS_SECONDS = 31_536_000
    settings.SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    settings.SECURE_HSTS_PRELOAD = True
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    response = client.get("/login/")
    assert (response.status_code, response["Location"]) == (301, "https://testserver/login/")
    behind_proxy = client.get("/login/", HTTP_X_FORWARDED_PROTO="https")
    assert behind_proxy.status_code == 200
    assert behind_proxy["Strict-Transport-Security"] == (
        "max-age=31536000; includeSubDomains; preload")


# --- settings never shown in clear -------------------------------------------------------


def test_the_error_page_masks_connection_urls(settings):
    settings.DEBUG = True
    settings.DATABASE_URL = f"postgres://trader:{PG_SECRET}@db.internal:5432/trading"
    settings.REDIS_URL = f"redis://:{REDIS_SECRET}@cache.internal:6379/0"
    settings.CELERY_BROKER_URL = settings.REDIS_URL
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels_redis.core.RedisChannelLayer",
                                           "CONFIG": {"hosts": [settings.REDIS_URL]}}}
    settings.SOME_WEBHOOK = f"https://bot:{PG_SECRET}@hooks.example.com/x"
    request = RequestFactory().get("/api/positions/?limit=x")
    try:
        raise ValueError("boom")
    except ValueError:
        html = ExceptionReporter(request, *sys.exc_info()).get_traceback_html()
    assert "boom" in html and "DATABASE_URL" in html and "SOME_WEBHOOK" in html
    assert PG_SECRET not in html and REDIS_SECRET not in html
    assert "https://bot:********@hooks.example.com/x" in html


def test_diffsettings_masks_connection_urls(settings, capsys):
    settings.DATABASE_URL = f"postgres://trader:{PG_SECRET}@db.internal:5432/trading"
    settings.REDIS_URL = f"redis://:{REDIS_SECRET}@cache.internal:6379/0"
    settings.CELERY_BROKER_URL = settings.REDIS_URL
    call_command("diffsettings")
    out = capsys.readouterr().out
    assert "DATABASE_URL = ********************  ###" in out.splitlines()
    assert "REDIS_URL = ********************  ###" in out.splitlines()
    assert PG_SECRET not in out and REDIS_SECRET not in out


def test_mask_url_hides_only_the_password():
    assert mask_url("postgres://u:p@h:5/d and redis://:x@r/0, http://h/p") == (
        "postgres://u:********@h:5/d and redis://:********@r/0, http://h/p")


# --- Content-Security-Policy: no inline script ------------------------------------------------

STRICT = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
          "font-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; "
          "frame-ancestors 'none'; form-action 'self'")


@pytest.mark.django_db
def test_every_dashboard_page_carries_the_strict_policy(client, staff_user, strategy):
    position = PositionFactory(strategy=strategy)
    assert client.get("/login/")[CSP_HEADER] == STRICT
    client.force_login(staff_user)
    for path in ("/", f"/positions/{position.pk}/", "/api/positions/"):
        response = client.get(path)
        assert response.status_code == 200, path
        assert response[CSP_HEADER] == STRICT, path
    admin = client.get("/admin/")
    assert admin[CSP_HEADER] == STRICT.replace("style-src 'self'",
                                               "style-src 'self' 'unsafe-inline'")
    docs = client.get("/api/docs/")
    assert "script-src 'self';" in docs[CSP_HEADER]
    assert b"<script>" not in docs.content  # the split view serves its script as a file


SCRIPT = re.compile(r"<script\b([^>]*)>", re.I)


def test_no_template_has_an_inline_script_or_style_attribute():
    found = []
    for template in sorted((ROOT / "templates").rglob("*.html")) + sorted(
            ROOT.glob("*/templates/**/*.html")):
        text = template.read_text(encoding="utf-8")
        for attrs in SCRIPT.findall(text):
            if "src=" not in attrs and 'type="application/json"' not in attrs:
                found.append(f"{template.relative_to(ROOT)}: <script{attrs}>")
        if template.parent.name == "dashboard" and re.search(r"\sstyle=", text):
            found.append(f"{template.relative_to(ROOT)}: style attribute")
        if re.search(r"\son[a-z]+=\"", text):
            found.append(f"{template.relative_to(ROOT)}: inline event handler")
    assert found == []
