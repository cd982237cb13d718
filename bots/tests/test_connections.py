"""Bot connections in the API, the admin and the dashboard; secrets shown once; health."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings

from bots.connections import bot_connection_create
from bots.freqtrade import WEBHOOK_TEMPLATES, webhook_block
from bots.models import BotConnection
from bots.secrets import secret_digest
from bots.selectors import bot_connections_health
from tradingsite.models import AuditEvent

pytestmark = pytest.mark.django_db

CREATE = {"name": "ft-api", "strategy": None, "api_url": "http://127.0.0.1:8080",
          "username_env": "BOT_FT_USER", "password_env": "BOT_FT_PASSWORD"}


def test_staff_add_a_connection_and_see_its_secret_and_webhook_block_once(staff_api, strategy):
    response = staff_api.post("/api/bots/connections", {**CREATE, "strategy": strategy.name},
                              format="json")
    assert response.status_code == 201, response.content
    body = response.json()
    connection = BotConnection.objects.get()
    secret = body["webhook_secret"]
    assert connection.webhook_secret_digest == secret_digest(secret)
    assert connection.webhook_secret_prefix == secret[:8]
    assert body["webhook"] == webhook_block(connection, secret=secret,
                                            base_url="http://testserver/")
    assert body["webhook"]["webhook"]["url"] == "http://testserver/api/bots/ft-api/webhook"
    assert body["connection"]["credentials"] == ("user: $BOT_FT_USER (missing), "
                                                 "password: $BOT_FT_PASSWORD (missing)")
    assert (body["connection"]["healthy"], body["connection"]["problems"]) == (
        False, ["never synced"])
    listed = staff_api.get("/api/bots/connections").json()
    assert secret not in json.dumps(listed)
    assert listed["count"] == 1
    assert listed["results"][0]["webhook_secret_prefix"] == secret[:8]
    assert listed["results"][0]["bot_close_timeout_seconds"] == 30
    event = AuditEvent.objects.get(action="bot_connection.create")
    assert secret not in json.dumps(event.after)
    assert event.after["webhook_secret"] == f"{secret[:8]}…"


@pytest.mark.parametrize(("field", "value", "message"), [
    ("username_env", "DATABASE_URL", "Enter an environment variable name starting with BOT_"),
    ("password_env", "SECRET_KEY", "Enter an environment variable name starting with BOT_"),
    ("username_env", "EXCHANGE_BYBIT_KEY",
     "Enter an environment variable name starting with BOT_"),
    ("username_env", "BOT_lower", "Enter an environment variable name starting with BOT_"),
    ("api_url", "http://bot.example.com:8080", "or http:// to 127.0.0.1 or localhost only"),
    ("api_url", "https://user:pw@bot.example.com", "Enter https://host[:port][/path]"),
    ("api_url", "http://127.0.0.2:8080", "or http:// to 127.0.0.1 or localhost only"),
    ("name", "Not A Slug", "Enter a slug"),
])
def test_a_connection_whose_credentials_could_leak_is_refused_naming_the_field(
        staff_api, strategy, field, value, message):
    response = staff_api.post("/api/bots/connections",
                              {**CREATE, "strategy": strategy.name, field: value}, format="json")
    assert response.status_code == 400
    assert message in response.json()[field][0]
    assert not BotConnection.objects.exists()


def test_a_name_already_taken_is_a_409(staff_api, strategy):
    body = {**CREATE, "strategy": strategy.name}
    assert staff_api.post("/api/bots/connections", body, format="json").status_code == 201
    again = staff_api.post("/api/bots/connections", {**body, "api_url": "https://bot.example"},
                           format="json")
    assert (again.status_code, again.json()["code"]) == (409, "conflict")
    assert BotConnection.objects.count() == 1


def test_the_model_refuses_what_the_api_refuses(strategy):
    from django.core.exceptions import ValidationError

    connection = BotConnection(name="m", strategy=strategy, api_url="http://bot.example.com",
                               username_env="SECRET_KEY", password_env="BOT_P",
                               webhook_secret_prefix="x", webhook_secret_digest="x")
    with pytest.raises(ValidationError) as info:
        connection.full_clean()
    assert sorted(info.value.message_dict) == ["api_url", "username_env"]


def test_the_database_refuses_credentials_without_the_prefix(strategy):
    from django.db import IntegrityError, transaction

    with pytest.raises(IntegrityError), transaction.atomic():
        BotConnection.objects.create(name="raw", strategy=strategy, api_url="http://127.0.0.1",
                                     username_env="DATABASE_URL", password_env="BOT_P",
                                     webhook_secret_prefix="x", webhook_secret_digest="x")


def test_credentials_are_read_only_from_prefixed_variables(strategy, monkeypatch):
    monkeypatch.setenv("SECRET_KEY", "do-not-send")
    monkeypatch.setenv("BOT_P", "pw")
    connection = BotConnection(name="x", strategy=strategy, api_url="http://127.0.0.1",
                               username_env="SECRET_KEY", password_env="BOT_P")
    assert connection.credentials() == ("", "pw")


def test_viewers_read_connections_but_cannot_add_or_rotate(viewer_api, strategy):
    connection, _ = bot_connection_create(name="ft-v", strategy=strategy,
                                          api_url="http://127.0.0.1:8080", username_env="BOT_U",
                                          password_env="BOT_P", actor="test")
    assert viewer_api.get("/api/bots/connections").status_code == 200
    assert viewer_api.get(f"/api/bots/connections/{connection.pk}").json()["name"] == "ft-v"
    assert viewer_api.post("/api/bots/connections", {**CREATE, "strategy": strategy.name},
                           format="json").status_code == 403
    assert viewer_api.post(f"/api/bots/connections/{connection.pk}/rotate-secret",
                           format="json").status_code == 403


def test_rotating_the_secret_stops_the_old_one_at_once(staff_api, web, strategy):
    from bots.tests.conftest import entry_fill_body, post

    connection, old = bot_connection_create(name="ft-r", strategy=strategy,
                                            api_url="http://127.0.0.1:8080", username_env="BOT_U",
                                            password_env="BOT_P", actor="test")
    response = staff_api.post(f"/api/bots/connections/{connection.pk}/rotate-secret",
                              format="json")
    assert response.status_code == 200
    new = response.json()["webhook_secret"]
    assert new != old
    url = "/api/bots/ft-r/webhook"
    assert post(web, url, {"event": "status", "secret": old, "status": "running"}
                ).status_code == 401
    assert post(web, url, {"event": "status", "secret": new, "status": "running"}
                ).status_code == 200
    assert post(web, url, entry_fill_body(old)).status_code == 401
    assert AuditEvent.objects.filter(action="bot_connection.rotate_secret").count() == 1


def test_the_admin_shows_a_new_secret_once_with_the_block_to_paste(admin_client, strategy):
    response = admin_client.post("/admin/bots/botconnection/add/", {
        "name": "ft-admin", "kind": "freqtrade", "strategy": strategy.pk,
        "api_url": "http://127.0.0.1:8080", "username_env": "BOT_U", "password_env": "BOT_P",
        "enabled": "on"})
    assert response.status_code == 200, response.content[:500]
    assert "no-store" in response["Cache-Control"]
    page = response.content.decode()
    secret = re.search(r'<code class="bot-secret">([^<]+)</code>', page).group(1)
    connection = BotConnection.objects.get()
    assert connection.webhook_secret_digest == secret_digest(secret)
    assert "/api/bots/ft-admin/webhook" in page and "entry_fill" in page
    change = admin_client.get(f"/admin/bots/botconnection/{connection.pk}/change/")
    assert change.status_code == 200
    assert secret not in change.content.decode()
    assert f"{secret[:8]}…" in change.content.decode()
    listing = admin_client.get("/admin/bots/botconnection/").content.decode()
    assert "never synced" in listing and secret not in listing


def test_the_admin_issues_a_signal_secret_once_with_the_alert_template(admin_client, strategy):
    response = admin_client.post("/admin/bots/signalsource/add/",
                                 {"strategy": strategy.pk, "enabled": "on"})
    assert response.status_code == 200
    page = response.content.decode()
    assert f"/api/signals/{strategy.name}" in page and "{{close}}" in page


def test_the_dashboard_shows_the_bots_and_their_health(admin_client, strategy, clock):
    assert 'id="bot-connections"' not in admin_client.get("/").content.decode()
    bot_connection_create(name="ft-dash", strategy=strategy, api_url="http://127.0.0.1:8080",
                          username_env="BOT_U", password_env="BOT_P", actor="test")
    page = admin_client.get("/").content.decode()
    assert 'id="bot-connections"' in page
    assert 'data-bot="ft-dash"' in page and "never synced" in page


def test_health_for_healthz_lists_each_connection(strategy, clock):
    empty = bot_connections_health()
    assert (empty["ok"], empty["connections"]) == (True, [])
    connection, _ = bot_connection_create(name="ft-h", strategy=strategy,
                                          api_url="http://127.0.0.1:8080", username_env="BOT_U",
                                          password_env="BOT_P", actor="test")
    BotConnection.objects.filter(pk=connection.pk).update(
        bot_state="running", last_sync_at=connection.created_at, last_webhook_event="status",
        last_webhook_at=connection.created_at)
    health = bot_connections_health(now=connection.created_at + timedelta(seconds=180))
    assert health["ok"] is True
    [row] = health["connections"]
    assert (row["name"], row["strategy"], row["bot_state"], row["healthy"], row["problems"],
            row["open_positions"], row["last_webhook_event"]) == (
        "ft-h", strategy.name, "running", True, [], 0, "status")
    late = bot_connections_health(now=connection.created_at + timedelta(seconds=181))
    assert late["connections"][0]["problems"] == ["last synced 3 min ago (every 60 s)"]
    assert late["ok"] is False


def test_the_readme_webhook_block_is_the_one_the_platform_issues():
    readme = (Path(settings.BASE_DIR) / "README.md").read_text(encoding="utf-8")
    block = re.search(r"```json\n(\{\n  \"webhook\".*?)\n```", readme, re.S).group(1)
    connection = BotConnection(name="NAME")
    expected = webhook_block(connection, secret="SECRET", base_url="https://platform.example")
    assert json.loads(block) == expected
    assert set(WEBHOOK_TEMPLATES) == {"entry", "entry_fill", "entry_cancel", "exit", "exit_fill",
                                      "exit_cancel", "status"}
