"""Secrets stay in: an account names only EXCHANGE_* variables and sends them only over https.

The issue's repro: staff set ``api_key_env='DATABASE_URL'`` and ``api_base_url`` to any
host, and the platform sent the database URL there as ``X-BAPI-API-KEY``.
"""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.urls import reverse

from execution.accounts import BaseUrlChangeNotConfirmed, exchange_account_save
from execution.exchanges import exchange_for
from execution.exchanges.ccxt_exchange import CcxtSettings
from execution.exchanges.errors import FatalError
from execution.models import ExchangeAccount, base_url_error
from tradingsite.models import AuditEvent

pytestmark = pytest.mark.django_db

PREFIX_ERROR = ("must be an environment variable name starting with EXCHANGE_ (capital "
                "letters, digits, _), got 'DATABASE_URL'")
CHANGE_URL = "admin:execution_exchangeaccount_change"


@pytest.fixture
def live_account(monkeypatch):
    monkeypatch.setenv("EXCHANGE_BYBIT_KEY", "the-key")
    monkeypatch.setenv("EXCHANGE_BYBIT_SECRET", "the-secret")
    return ExchangeAccount.objects.create(
        name="bybit-main", exchange_id="bybit", api_base_url="https://api.bybit.com",
        api_key_env="EXCHANGE_BYBIT_KEY", api_secret_env="EXCHANGE_BYBIT_SECRET")


def _form(account: ExchangeAccount, **changes) -> dict:
    data = {"name": account.name, "exchange_id": account.exchange_id, "market_type": "linear",
            "quote_currency": "USDT", "starting_capital": "10000", "order_queue": "",
            "enabled": "on", "api_key_env": account.api_key_env,
            "api_secret_env": account.api_secret_env, "api_password_env": "",
            "api_base_url": account.api_base_url, "paper_config": "{}"}
    data.update(changes)
    return {k: v for k, v in data.items() if v is not None}


# --- credential variable names ----------------------------------------------------------


@pytest.mark.parametrize("field", ["api_key_env", "api_secret_env", "api_password_env"])
def test_the_model_refuses_a_variable_without_the_prefix(field):
    account = ExchangeAccount(name="x", exchange_id="bybit", **{field: "DATABASE_URL"})
    with pytest.raises(ValidationError) as info:
        account.full_clean()
    assert info.value.message_dict == {field: [PREFIX_ERROR]}


@pytest.mark.parametrize("name", ["exchange_bybit_key", "EXCHANGE_", "EXCHANGE_KEY;rm",
                                  "SECRET_KEY", "EXCHANGE_KEY\n"])
def test_other_names_outside_the_pattern_are_refused(name):
    with pytest.raises(ValidationError):
        ExchangeAccount(name="x", exchange_id="bybit", api_key_env=name).full_clean()


@pytest.mark.parametrize("field", ["api_key_env", "api_secret_env", "api_password_env"])
def test_the_database_refuses_a_variable_without_the_prefix(field):
    with pytest.raises(IntegrityError), transaction.atomic():
        ExchangeAccount.objects.create(name="x", exchange_id="bybit", **{field: "DATABASE_URL"})
    assert not ExchangeAccount.objects.filter(name="x").exists()


def test_a_row_naming_database_url_is_never_read_or_sent(monkeypatch):
    """Even a row written around every check: nothing is read, no client is built."""
    monkeypatch.setenv("DATABASE_URL", "postgres://u:pw@db/x")
    account = ExchangeAccount(name="evil", exchange_id="bybit", api_key_env="DATABASE_URL",
                              api_base_url="https://attacker.example.com")
    assert account.credentials() == {}
    with pytest.raises(FatalError) as info:
        CcxtSettings.from_account(account)
    assert info.value.code == "config"
    assert str(info.value) == f"account evil: api_key_env: {PREFIX_ERROR}"
    with pytest.raises(FatalError):
        exchange_for(account)


def test_the_admin_refuses_database_url_and_changes_nothing(admin_client, live_account):
    response = admin_client.post(reverse(CHANGE_URL, args=[live_account.pk]),
                                 _form(live_account, api_key_env="DATABASE_URL"))
    assert response.status_code == 200
    assert response.context["adminform"].form.errors == {"api_key_env": [PREFIX_ERROR]}
    live_account.refresh_from_db()
    assert live_account.api_key_env == "EXCHANGE_BYBIT_KEY"
    assert not AuditEvent.objects.exists()


# --- where credentials may go ---------------------------------------------------------------


@pytest.mark.parametrize(("url", "error"), [
    ("https://api.bybit.com", None),
    ("https://api-testnet.bybit.com/", None),
    ("http://127.0.0.1:9/", None),
    ("http://127.8.9.10:8080", None),
    ("http://localhost:8080/v5", None),
    ("http://[::1]:8080", None),
    ("", None),
    ("http://attacker.example.com", "must use https (plain http only for a loopback host), "
                                    "got 'http://attacker.example.com'"),
    ("http://10.0.0.5:8080", "must use https (plain http only for a loopback host), "
                             "got 'http://10.0.0.5:8080'"),
    ("http://localhost.attacker.com", "must use https (plain http only for a loopback host), "
                                      "got 'http://localhost.attacker.com'"),
    ("ftp://api.bybit.com", "must use https (plain http only for a loopback host), "
                            "got 'ftp://api.bybit.com'"),
    ("https://user:pw@api.bybit.com", "must not contain a user name or password"),
])
def test_the_base_url_must_be_https_unless_loopback(url, error):
    assert base_url_error(url) == error


def test_the_model_refuses_a_plain_http_base_url():
    account = ExchangeAccount(name="x", exchange_id="bybit", api_base_url="http://evil.example")
    with pytest.raises(ValidationError) as info:
        account.full_clean()
    assert info.value.message_dict == {"api_base_url": [
        "must use https (plain http only for a loopback host), got 'http://evil.example'"]}


def test_a_row_with_a_plain_http_host_and_credentials_is_not_used():
    account = ExchangeAccount(name="x", exchange_id="bybit", api_base_url="http://evil.example",
                              api_key_env="EXCHANGE_BYBIT_KEY")
    with pytest.raises(FatalError, match="api_base_url: must use https"):
        CcxtSettings.from_account(account)


def test_changing_the_base_url_of_an_account_with_credentials_needs_confirmation(
        admin_client, admin_user, live_account):
    url = reverse(CHANGE_URL, args=[live_account.pk])
    refused = admin_client.post(url, _form(live_account, api_base_url="https://proxy.example.com"))
    assert refused.status_code == 200
    assert refused.context["adminform"].form.errors == {"confirm_base_url_change": [
        "The API base URL changes from https://api.bybit.com to https://proxy.example.com: the "
        "credentials (key: $EXCHANGE_BYBIT_KEY (set), secret: $EXCHANGE_BYBIT_SECRET (set)) will "
        "be sent there. Tick to confirm."]}
    live_account.refresh_from_db()
    assert live_account.api_base_url == "https://api.bybit.com"
    assert not AuditEvent.objects.exists()

    confirmed = admin_client.post(url, _form(live_account, api_base_url="https://proxy.example.com",
                                             confirm_base_url_change="on"))
    assert confirmed.status_code == 302
    live_account.refresh_from_db()
    assert live_account.api_base_url == "https://proxy.example.com"
    event = AuditEvent.objects.get()
    assert (event.actor, event.action, event.target_type, event.target_id, event.before,
            event.after) == (admin_user.username, "exchange_account.update",
                             "execution.exchangeaccount", str(live_account.pk),
                             {"api_base_url": "https://api.bybit.com"},
                             {"api_base_url": "https://proxy.example.com"})


def test_an_account_without_credentials_changes_its_base_url_without_confirmation(
        admin_client):
    account = ExchangeAccount.objects.create(name="public", exchange_id="bybit")
    response = admin_client.post(reverse(CHANGE_URL, args=[account.pk]),
                                 _form(account, api_base_url="https://api-testnet.bybit.com"))
    assert response.status_code == 302
    assert AuditEvent.objects.get().after == {"api_base_url": "https://api-testnet.bybit.com"}


def test_the_service_refuses_an_unconfirmed_base_url_change(live_account):
    live_account.api_base_url = "https://proxy.example.com"
    with pytest.raises(BaseUrlChangeNotConfirmed) as info:
        exchange_account_save(account=live_account, actor="script")
    assert info.value.http_status == 409
    assert ExchangeAccount.objects.get(pk=live_account.pk).api_base_url == "https://api.bybit.com"
    assert not AuditEvent.objects.exists()


def test_the_service_refuses_database_url_like_the_model(live_account):
    live_account.api_secret_env = "DATABASE_URL"
    with pytest.raises(ValidationError):
        exchange_account_save(account=live_account, actor="script")
    assert not AuditEvent.objects.exists()


def test_creating_an_account_is_audited_with_its_values():
    account = exchange_account_save(
        account=ExchangeAccount(name="new", exchange_id="bybit",
                                api_key_env="EXCHANGE_NEW_KEY"), actor="script")
    event = AuditEvent.objects.get()
    assert (event.action, event.before) == ("exchange_account.create", {})
    assert event.after["api_key_env"] == "EXCHANGE_NEW_KEY"
    assert event.after["starting_capital"] == "10000"
    assert event.target_id == str(account.pk)
