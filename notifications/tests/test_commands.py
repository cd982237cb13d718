"""``notify_test``: one message per channel and its outcome; the exit code says if any failed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import CommandError

from notifications.models import Delivery, DeliveryState, NotificationChannel

MANAGE = [sys.executable, str(Path(settings.BASE_DIR) / "manage.py")]


@pytest.mark.django_db
def test_notify_test_sends_one_message_to_each_channel(sink, notify_to, capsys):
    notify_to(sink.url)
    call_command("notify_test")

    assert capsys.readouterr().out == "env-json: delivered\n"
    [message] = sink.received
    assert message["title"] == "Test message from the trading platform (env-json)"
    assert message["message"].startswith("Sent by notify_test at ")
    delivery = Delivery.objects.get()
    assert (delivery.state, delivery.notification.kind) == (DeliveryState.SENT, "test")


@pytest.mark.django_db
def test_notify_test_fails_naming_the_channel_that_did_not_take_it(sink, notify_to, capsys):
    notify_to(f"name=ops:{sink.url}")
    sink.stop()
    with pytest.raises(CommandError, match=r"^not delivered to ops$"):
        call_command("notify_test")
    assert capsys.readouterr().err.startswith(
        "ops: FAILED (not delivered (failure); WARNING: A Connection error occurred")
    assert Delivery.objects.get().state == DeliveryState.FAILED  # a test is not retried


@pytest.mark.django_db
def test_notify_test_picks_one_channel_by_name(sink, notify_to):
    from tradingsite.testing.sink import Sink

    other = Sink()
    other.start()
    try:
        notify_to(f"name=first:{sink.url}", f"name=second:{other.url}")
        call_command("notify_test", "--channel", "second")
    finally:
        other.stop()
    assert (len(sink.received), len(other.received)) == (0, 1)
    with pytest.raises(CommandError, match=r"^no channel named 'third'$"):
        call_command("notify_test", "--channel", "third")


@pytest.mark.django_db
def test_notify_test_without_any_channel_says_how_to_add_one():
    with pytest.raises(CommandError, match="no enabled channel: set NOTIFY_URLS or add one in "
                                           "the admin"):
        call_command("notify_test")
    assert not NotificationChannel.objects.exists()


@pytest.fixture(scope="module")
def migrated(tmp_path_factory) -> dict[str, str]:
    """An environment with a migrated SQLite database of its own, as a user's shell has."""
    tmp = tmp_path_factory.mktemp("notify")
    env = {k: v for k, v in os.environ.items()
           if k not in {"DATABASE_URL", "REDIS_URL", "DJANGO_SETTINGS_MODULE", "NOTIFY_URLS"}}
    env.update(DJANGO_SETTINGS_MODULE="tradingsite.settings", TRADING_ENV="development",
               DATABASE_URL=f"sqlite:///{tmp / 'db.sqlite3'}", VAR_DIR=str(tmp / "var"))
    subprocess.run([*MANAGE, "migrate", "--noinput", "-v", "0"], env=env, check=True,
                   timeout=180, cwd=settings.BASE_DIR)
    return env


@pytest.mark.slow
def test_notify_test_in_a_shell_with_notify_urls_set(migrated, sink):
    env = {**migrated, "NOTIFY_URLS": sink.url}
    ok = subprocess.run([*MANAGE, "notify_test"], env=env, cwd=settings.BASE_DIR,
                        capture_output=True, text=True, timeout=120)
    assert (ok.returncode, ok.stdout) == (0, "env-json: delivered\n"), ok.stderr
    assert len(sink.received) == 1

    sink.stop()
    failed = subprocess.run([*MANAGE, "notify_test"], env=env, cwd=settings.BASE_DIR,
                            capture_output=True, text=True, timeout=120)
    assert failed.returncode == 1
    assert failed.stderr.splitlines()[-1] == "CommandError: not delivered to env-json"
    assert len(sink.received) == 1


@pytest.mark.slow
def test_a_token_in_clear_stops_start_up_without_being_printed(migrated):
    token = "123456789:AAHabcdefghijklmnopqrstuvwxyz0123456"
    env = {**migrated, "NOTIFY_URLS": f"tgram://{token}/42"}
    result = subprocess.run([*MANAGE, "check"], env=env, cwd=settings.BASE_DIR,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert "notifications.E002" in result.stderr
    assert token.split(":")[1] not in result.stderr + result.stdout
