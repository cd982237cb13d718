"""API tokens: the key is shown once, when issued; afterwards only its prefix, to anyone."""

from __future__ import annotations

from importlib import import_module

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.urls import reverse
from rest_framework.test import APIClient

from tradingsite.models import ApiToken, AuditEvent
from tradingsite.tokens import api_token_issue, token_digest

pytestmark = pytest.mark.django_db


def _status_with(key: str) -> int:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    return client.get("/api/trading/halt/").status_code


def _issue(capsys, *args: str) -> str:
    call_command("api_token", *args)
    captured = capsys.readouterr()
    assert captured.err.strip().endswith("store it now, it is not shown again")
    return captured.out.strip()


def test_the_command_shows_a_key_once_then_only_its_prefix(staff_user, capsys):
    key = _issue(capsys, "operator")
    assert len(key) == 40 and _status_with(key) == 200
    token = ApiToken.objects.get(user=staff_user)
    assert (token.prefix, token.digest) == (key[:8], token_digest(key))
    with pytest.raises(CommandError) as info:
        call_command("api_token", "operator")
    assert str(info.value) == (
        f"operator already has an API token ({key[:8]}…, issued "
        f"{token.created_at:%Y-%m-%d %H:%M} UTC); a key is shown only when it is issued: "
        "`api_token --rotate operator` replaces it")
    assert key not in str(info.value)


def test_rotate_replaces_the_key_and_the_old_one_stops_working(staff_user, capsys):
    first = _issue(capsys, "operator")
    second = _issue(capsys, "operator", "--rotate")
    assert second != first
    assert (_status_with(first), _status_with(second)) == (401, 200)
    assert list(AuditEvent.objects.order_by("id").values_list("actor", "action", "before",
                                                              "after")) == [
        ("cli", "api_token.issue", {}, {"prefix": first[:8]}),
        ("cli", "api_token.rotate", {"prefix": first[:8]}, {"prefix": second[:8]})]


def test_an_unknown_user_is_named(capsys):
    with pytest.raises(CommandError, match="no user named 'ghost'"):
        call_command("api_token", "--rotate", "ghost")


def test_the_database_never_holds_the_key(staff_user):
    key = api_token_issue(user=staff_user, actor="test")
    row = ApiToken.objects.values().get()
    assert key not in repr(row)
    assert all(key not in str(value) for value in row.values())


def test_staff_see_only_a_prefix_in_the_admin(admin_client, staff_user):
    key = api_token_issue(user=staff_user, actor="test")
    token = ApiToken.objects.get()
    for url in (reverse("admin:tradingsite_apitoken_changelist"),
                reverse("admin:tradingsite_apitoken_change", args=[token.pk])):
        html = admin_client.get(url).content.decode()
        assert f"{key[:8]}…" in html
        assert key not in html and token.digest not in html
    assert admin_client.get(reverse("admin:tradingsite_apitoken_add")).status_code == 403


def test_the_admin_rotates_a_token_and_shows_the_new_key_once(admin_client, staff_user):
    old = api_token_issue(user=staff_user, actor="test")
    token = ApiToken.objects.get()
    url = reverse("admin:tradingsite_apitoken_changelist")
    asked = admin_client.post(url, {"action": "rotate_tokens", "_selected_action": [token.pk]})
    assert "Yes, rotate 1 token" in asked.content.decode()
    assert _status_with(old) == 200  # nothing changed before the confirmation
    done = admin_client.post(url, {"action": "rotate_tokens", "_selected_action": [token.pk],
                                   "confirm": "yes"})
    assert "no-store" in done["Cache-Control"]
    new = ApiToken.objects.get()
    html = done.content.decode()
    start = html.index('<code class="api-token-key">') + len('<code class="api-token-key">')
    key = html[start:html.index("</code>", start)]
    assert (key[:8], token_digest(key)) == (new.prefix, new.digest)
    assert (_status_with(old), _status_with(key)) == (401, 200)
    assert key not in admin_client.get(url).content.decode()


def test_deleting_a_token_in_the_admin_revokes_it_and_is_audited(admin_client, admin_user,
                                                                 staff_user):
    key = api_token_issue(user=staff_user, actor="test")
    token = ApiToken.objects.get()
    response = admin_client.post(reverse("admin:tradingsite_apitoken_delete", args=[token.pk]),
                                 {"post": "yes"})
    assert response.status_code == 302
    assert _status_with(key) == 401
    event = AuditEvent.objects.filter(action="api_token.revoke").get()
    assert (event.actor, event.before) == (admin_user.username, {"prefix": key[:8]})


class _Editor:
    """What the migration function uses of a schema editor."""

    connection = connection

    def execute(self, sql: str) -> None:
        with connection.cursor() as cursor:
            cursor.execute(sql)


def test_clear_text_tokens_of_the_old_table_keep_working_as_digests(staff_user):
    from django.apps import apps

    key = "9944b09199c62bcf9418ad846dd0e4bbdfc6ee4b"
    with connection.cursor() as cursor:
        cursor.execute("CREATE TABLE authtoken_token (key varchar(40) PRIMARY KEY, "
                       "created timestamp with time zone NOT NULL, user_id integer NOT NULL)"
                       if connection.vendor == "postgresql" else
                       "CREATE TABLE authtoken_token (key varchar(40) PRIMARY KEY, "
                       "created datetime NOT NULL, user_id integer NOT NULL)")
        cursor.execute("INSERT INTO authtoken_token VALUES (%s, %s, %s)",
                       [key, "2026-01-02 03:04:05+00:00", staff_user.pk])
    migration = import_module("tradingsite.migrations.0002_audit_log_and_api_tokens")
    migration.tokens_from_clear_text(apps, _Editor())
    assert "authtoken_token" not in connection.introspection.table_names()
    assert ApiToken.objects.get().prefix == key[:8]
    assert _status_with(key) == 200
