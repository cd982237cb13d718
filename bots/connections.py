"""Bot connections and signal sources: created, edited and audited; their secrets issued once.

A secret is returned by the call that issues it and never again: the database keeps its
SHA-256 digest and first characters (``bots.secrets``). Authentication compares the
digest in constant time whatever was wrong, so a 401 does not say which part it was.
"""

from __future__ import annotations

from typing import Any

from django.db import IntegrityError, transaction
from django.forms.models import model_to_dict

from bots.models import BotConnection, BotKind, SignalSource
from bots.secrets import new_secret, secret_matches
from lifecycle.models import Strategy
from tradingsite.audit import audit_record, changed_fields
from tradingsite.errors import ConflictError

AUDITED_FIELDS = ("name", "kind", "strategy", "api_url", "username_env", "password_env",
                  "enabled")


@transaction.atomic
def bot_connection_save(*, connection: BotConnection, actor: str) -> str | None:
    """Validate and save a connection; every change is written to the audit log.

    A new connection gets its webhook secret, returned this once (only its digest
    and first characters are stored); an existing one keeps its secret (None).
    """
    secret = None
    if connection.pk is None:
        secret, connection.webhook_secret_prefix, connection.webhook_secret_digest = new_secret()
    connection.full_clean(validate_unique=False)
    before = (BotConnection.objects.select_for_update().filter(pk=connection.pk).first()
              if connection.pk else None)
    try:
        with transaction.atomic():
            connection.save()
    except IntegrityError:
        raise ConflictError(f"a bot connection named {connection.name!r} exists") from None
    old, new = changed_fields(model_to_dict(before, AUDITED_FIELDS) if before else {},
                              model_to_dict(connection, AUDITED_FIELDS), AUDITED_FIELDS)
    if before is None:
        new["webhook_secret"] = f"{connection.webhook_secret_prefix}…"
    if new:
        audit_record(actor=actor, action="bot_connection.update" if before
                     else "bot_connection.create", target=connection,
                     before=old if before else {}, after=new)
    return secret


def bot_connection_create(*, name: str, strategy: Strategy, api_url: str, username_env: str,
                          password_env: str, kind: str = BotKind.FREQTRADE,
                          enabled: bool = True, actor: str) -> tuple[BotConnection, str]:
    """A new connection and its webhook secret (returned once)."""
    connection = BotConnection(name=name, kind=kind, strategy=strategy, api_url=api_url,
                               username_env=username_env, password_env=password_env,
                               enabled=enabled)
    secret = bot_connection_save(connection=connection, actor=actor)
    assert secret is not None
    return connection, secret


@transaction.atomic
def bot_connection_rotate_secret(connection: BotConnection, *, actor: str) -> str:
    """A new webhook secret; the old one stops working at once."""
    secret, prefix, digest = new_secret()
    before = connection.webhook_secret_prefix
    BotConnection.objects.filter(pk=connection.pk).update(webhook_secret_prefix=prefix,
                                                          webhook_secret_digest=digest)
    connection.webhook_secret_prefix, connection.webhook_secret_digest = prefix, digest
    audit_record(actor=actor, action="bot_connection.rotate_secret", target=connection,
                 before={"webhook_secret": f"{before}…"}, after={"webhook_secret": f"{prefix}…"})
    return secret


def bot_connection_authenticate(name: Any, secret: Any) -> BotConnection | None:
    """The enabled connection ``name`` if ``secret`` is its webhook secret, else None.

    The digest comparison runs whatever was wrong (unknown name, disabled, wrong
    secret), so the answer does not tell which part it was.
    """
    connection = None
    if isinstance(name, str) and len(name) <= 40:
        connection = BotConnection.objects.select_related("strategy").filter(name=name).first()
    digest = connection.webhook_secret_digest if connection is not None else None
    if not secret_matches(secret, digest) or connection is None or not connection.enabled:
        return None
    return connection


@transaction.atomic
def signal_source_issue(*, strategy: Strategy, actor: str) -> tuple[SignalSource, str]:
    """The strategy's signal secret, new or replaced; returned once."""
    secret, prefix, digest = new_secret()
    source, created = SignalSource.objects.select_for_update().get_or_create(
        strategy=strategy, defaults={"secret_prefix": prefix, "secret_digest": digest})
    before = "" if created else source.secret_prefix
    if not created:
        source.secret_prefix, source.secret_digest = prefix, digest
        source.save(update_fields=["secret_prefix", "secret_digest"])
    audit_record(actor=actor, action="signal_source.issue" if created else
                 "signal_source.rotate_secret", target=source,
                 before={"secret": f"{before}…"} if before else {}, after={"secret": f"{prefix}…"})
    return source, secret


def signal_source_authenticate(strategy_name: Any, secret: Any) -> SignalSource | None:
    """The enabled signal source of ``strategy_name`` if ``secret`` is its secret, else None."""
    source = None
    if isinstance(strategy_name, str) and len(strategy_name) <= 64:
        source = SignalSource.objects.select_related("strategy__account").filter(
            strategy__name=strategy_name).first()
    digest = source.secret_digest if source is not None else None
    if not secret_matches(secret, digest) or source is None or not source.enabled:
        return None
    return source
