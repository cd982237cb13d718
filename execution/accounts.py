"""Writes to exchange accounts: where an account's credentials go is confirmed and audited."""

from __future__ import annotations

from django.db import transaction
from django.forms.models import model_to_dict

from execution.models import ExchangeAccount
from tradingsite.audit import audit_record, changed_fields
from tradingsite.errors import DomainError

AUDITED_FIELDS = ("name", "exchange_id", "testnet", "api_base_url", "api_key_env",
                  "api_secret_env", "api_password_env", "market_type", "quote_currency",
                  "starting_capital", "paper_config", "order_queue", "live_trading", "enabled")


class BaseUrlChangeNotConfirmed(DomainError):
    """Moving an account with credentials to another API base URL needs an explicit yes."""

    http_status = 409
    code = "base_url_change_not_confirmed"


def base_url_change_needs_confirmation(before: ExchangeAccount | None,
                                       after: ExchangeAccount) -> bool:
    """A stored account whose credentials would now be sent to another host."""
    return (before is not None and before.api_base_url != after.api_base_url
            and (before.has_credentials or after.has_credentials))


@transaction.atomic
def exchange_account_save(*, account: ExchangeAccount, actor: str,
                          base_url_confirmed: bool = False, reason: str = ""
                          ) -> ExchangeAccount:
    """Validate and save ``account``; every change is written to the audit log.

    Pointing an account that names credentials at another ``api_base_url`` raises
    ``BaseUrlChangeNotConfirmed`` unless ``base_url_confirmed``: its keys would be
    sent there with every request.
    """
    account.full_clean()
    before = (ExchangeAccount.objects.select_for_update().filter(pk=account.pk).first()
              if account.pk else None)
    if base_url_change_needs_confirmation(before, account) and not base_url_confirmed:
        raise BaseUrlChangeNotConfirmed(
            f"account {account.name}: the API base URL changes from "
            f"{before.api_base_url or '(the exchange default)'} to "
            f"{account.api_base_url or '(the exchange default)'} and the account's credentials "
            "would be sent there: confirm the change")
    account.save()
    old, new = changed_fields(model_to_dict(before, AUDITED_FIELDS) if before else {},
                              model_to_dict(account, AUDITED_FIELDS), AUDITED_FIELDS)
    if before is None:
        old = {}
    if new:
        audit_record(actor=actor, action="exchange_account.update" if before
                     else "exchange_account.create", target=account, before=old, after=new,
                     reason=reason)
    return account
