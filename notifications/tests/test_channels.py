"""NOTIFY_URLS, {env:NOTIFY_…} secrets and the admin's channels: errors name the item, never a secret."""

from __future__ import annotations

from datetime import time

import pytest
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.core.management.base import SystemCheckError

from notifications.channels import (
    ChannelConfigError,
    ChannelRules,
    check_url,
    display_url,
    literal_secrets,
    parse_notify_urls,
    resolve,
    sync_env_channels,
)
from notifications.checks import check_notify_urls
from notifications.models import ChannelSource, NotificationChannel

TOKEN = "123456789:AAHabcdefghijklmnopqrstuvwxyz0123456"


def test_items_with_options_become_channels():
    channels = parse_notify_urls(
        "json://127.0.0.1:9000/, severity>=WARNING:tgram://{env:NOTIFY_TG}/42,"
        "kind=position_*|close_*:quiet=22:00-07:00:rate=5/120:name=ops:json://h/?to=a,b")

    assert [(c.name, c.url) for c in channels] == [
        ("env-json", "json://127.0.0.1:9000/"), ("env-tgram", "tgram://{env:NOTIFY_TG}/42"),
        ("ops", "json://h/?to=a,b")]  # a comma inside a query stays in its URL
    assert channels[1].rules == ChannelRules(min_severity="WARNING")
    assert channels[2].rules == ChannelRules(kinds=("position_*", "close_*"))
    assert (channels[2].quiet, channels[2].rate) == ((time(22), time(7)), (5, 120))


def test_routing_rules_compare_severity_and_match_kinds():
    rules = ChannelRules(min_severity="WARNING", kinds=("danger_*", "position_timeout"),
                         exclude_kinds=("danger_warning",))
    assert rules.accepts("danger_critical", "CRITICAL")
    assert rules.accepts("position_timeout", "WARNING")
    assert not rules.accepts("danger_warning", "CRITICAL")  # excluded
    assert not rules.accepts("danger_critical", "INFO")  # below WARNING
    assert not rules.accepts("order_failed", "CRITICAL")  # not listed


@pytest.mark.parametrize(("raw", "message"), [
    ("severity>=WARN:json://h/", "NOTIFY_URLS item 1: unknown severity 'WARN' (INFO, WARNING "
                                 "or CRITICAL)"),
    ("json://h/, sevrity>=WARNING:json://x:pw@h/",
     "NOTIFY_URLS item 2: expected [severity>=LEVEL:][kind=…:][quiet=HH:MM-HH:MM:]"
     "[rate=N/SECONDS:][name=…:]scheme://…"),
    ("quiet=25:00-07:00:json://h/", "NOTIFY_URLS item 1 quiet: 25:00 is not a time of day "
                                    "(00:00 to 23:59)"),
    ("quiet=07:00-07:00:json://h/", "NOTIFY_URLS item 1: quiet hours start and end at the "
                                    "same time"),
    ("rate=0/60:json://h/", "NOTIFY_URLS item 1: rate must be 1–10000 messages per 1–86400 s, "
                            "got 0/60"),
    ("name=a:json://h/,name=a:json://g/", "NOTIFY_URLS item 2: channel name 'a' used twice"),
    ("severity>=INFO:severity>=CRITICAL:json://h/", "NOTIFY_URLS item 1: option severity "
                                                    "given twice"),
    ("json://{env:SECRET_KEY}@h/", "NOTIFY_URLS item 1: {env:SECRET_KEY}: only variables named "
                                   "NOTIFY_… (capitals, digits, _) may be used in a channel URL"),
    ("json://{env:NOTIFY_X@h/", "NOTIFY_URLS item 1: an {env:… placeholder is not closed with }"),
])
def test_a_bad_item_is_named_without_its_url(raw, message):
    with pytest.raises(ChannelConfigError) as info:
        parse_notify_urls(raw)
    assert str(info.value) == message
    assert "pw@" not in str(info.value)


def test_only_notify_variables_fill_placeholders(monkeypatch):
    monkeypatch.setenv("NOTIFY_TG", TOKEN)
    resolved = resolve("tgram://{env:NOTIFY_TG}/42")
    assert resolved.url == f"tgram://{TOKEN}/42"
    assert resolved.values == (TOKEN,)
    assert resolved.parts == (TOKEN,)  # Apprise's own view of the secret agrees


def test_a_placeholder_may_come_from_a_file(monkeypatch, tmp_path):
    secret = tmp_path / "tg"
    secret.write_text(TOKEN + "\n")
    monkeypatch.setenv("NOTIFY_TG_FILE", str(secret))
    assert resolve("tgram://{env:NOTIFY_TG}/42").url == f"tgram://{TOKEN}/42"


def test_a_token_in_clear_is_a_literal_secret_a_placeholder_is_not(monkeypatch):
    monkeypatch.setenv("NOTIFY_TG", TOKEN)
    monkeypatch.setenv("NOTIFY_PW", "hunter2hunter2")
    assert literal_secrets(f"tgram://{TOKEN}/42") == [TOKEN]
    assert literal_secrets("tgram://{env:NOTIFY_TG}/42") == []
    assert literal_secrets("json://bot:hunter2@127.0.0.1:9/") == ["hunter2"]
    assert literal_secrets("json://bot:{env:NOTIFY_PW}@127.0.0.1:9/") == []
    assert literal_secrets("json://127.0.0.1:9/") == []


def test_check_url_says_what_is_wrong_without_the_url(monkeypatch):
    assert check_url(f"tgram://{TOKEN}/42") == [
        "the URL holds a secret in clear (a token, key or password): put it into a NOTIFY_… "
        "environment variable and write {env:NOTIFY_…} in its place"]
    assert check_url("nosuch://h/") == ["Apprise does not accept this nosuch:// URL (unknown "
                                        "scheme or missing parts)"]
    assert check_url("tgram://{env:NOTIFY_UNSET}/42") == [
        "NOTIFY_UNSET is not set (the channel URL names {env:NOTIFY_UNSET})"]
    assert check_url("tgram://{env:NOTIFY_UNSET}/42", missing_ok=True) == []
    assert check_url("just text") == ["expected an Apprise URL, scheme://…"]


# --- start-up checks ------------------------------------------------------------------------

@pytest.mark.django_db
def test_start_up_refuses_a_bad_notify_urls_naming_the_item(settings):
    settings.NOTIFY_URLS = "json://h/, severity>=LOUD:json://u:pw@h/"
    [error] = check_notify_urls()
    assert (error.id, error.msg) == ("notifications.E001", "NOTIFY_URLS item 2: unknown "
                                     "severity 'LOUD' (INFO, WARNING or CRITICAL)")
    with pytest.raises(SystemCheckError):
        call_command("check")


def test_start_up_refuses_a_token_in_clear(settings):
    settings.NOTIFY_URLS = f"tgram://{TOKEN}/42"
    [error] = check_notify_urls()
    assert error.id == "notifications.E002"
    assert error.msg.startswith("NOTIFY_URLS item 1 (env-tgram): the URL holds a secret in "
                                "clear")
    assert TOKEN not in error.msg


def test_a_missing_secret_only_warns_it_never_stops_trading_from_starting(settings):
    settings.NOTIFY_URLS = "tgram://{env:NOTIFY_TG_MISSING}/42"
    [warning] = check_notify_urls()
    assert (warning.id, warning.level) == ("notifications.W001", 30)
    assert warning.msg == ("NOTIFY_URLS item 1 (env-tgram): NOTIFY_TG_MISSING is not set (the "
                           "channel URL names {env:NOTIFY_TG_MISSING}); messages to it fail "
                           "until it is set")


def test_the_watchdogs_urls_are_checked_too(settings):
    settings.WATCHDOG_NOTIFY_URLS = "rate=x:json://h/"
    [error] = check_notify_urls()
    assert error.msg.startswith("WATCHDOG_NOTIFY_URLS item 1: expected [severity>=LEVEL:]")


# --- channels in the database ----------------------------------------------------------------

@pytest.mark.django_db
def test_notify_urls_is_mirrored_without_storing_any_url(settings, monkeypatch):
    monkeypatch.setenv("NOTIFY_TG", TOKEN)
    settings.NOTIFY_URLS = ("severity>=WARNING:quiet=22:00-06:30:tgram://{env:NOTIFY_TG}/42,"
                            "rate=2/30:json://127.0.0.1:9/")
    sync_env_channels()

    js, tg = NotificationChannel.objects.order_by("name")
    assert (tg.name, tg.source, tg.url, tg.min_severity, tg.quiet_start, tg.quiet_end) == (
        "env-tgram", ChannelSource.ENV, "", "WARNING", time(22), time(6, 30))
    assert (js.name, js.rate_limit_messages, js.rate_limit_seconds) == ("env-json", 2, 30)
    assert display_url(tg) == "tgram://{env:NOTIFY_TG}/42"

    settings.NOTIFY_URLS = "json://127.0.0.1:9/"
    sync_env_channels()
    assert dict(NotificationChannel.objects.values_list("name", "enabled")) == {
        "env-tgram": False, "env-json": True}  # kept for its log, not used


@pytest.mark.django_db
def test_a_literal_token_in_notify_urls_is_shown_masked(settings):
    settings.NOTIFY_URLS = f"tgram://{TOKEN}/42"
    sync_env_channels()
    shown = display_url(NotificationChannel.objects.get())
    assert shown == "tgram://****/42/"
    assert TOKEN.split(":")[1] not in shown


@pytest.mark.django_db
def test_an_admin_channel_refuses_secrets_in_clear_and_foreign_variables(monkeypatch):
    monkeypatch.setenv("NOTIFY_TG", TOKEN)
    with pytest.raises(ValidationError) as info:
        NotificationChannel(name="tg", url=f"tgram://{TOKEN}/42").full_clean()
    assert info.value.message_dict["url"][0].startswith("the URL holds a secret in clear")
    with pytest.raises(ValidationError) as info:
        NotificationChannel(name="tg", url="json://u:{env:DATABASE_URL}@h/").full_clean()
    assert "only variables named NOTIFY_" in info.value.message_dict["url"][0]
    with pytest.raises(ValidationError) as info:
        NotificationChannel(name="env-json", url="json://h/", quiet_start=time(1)).full_clean()
    assert set(info.value.message_dict) == {"name", "quiet_end"}
    NotificationChannel(name="tg", url="tgram://{env:NOTIFY_TG}/42").full_clean()
