"""API tokens: issued once, stored as a digest, shown afterwards only by their prefix."""

from __future__ import annotations

import hashlib
import secrets
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from rest_framework import exceptions
from rest_framework.authentication import TokenAuthentication

from tradingsite.audit import audit_record
from tradingsite.models import ApiToken


def token_digest(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


@transaction.atomic
def api_token_issue(*, user: AbstractBaseUser, actor: str) -> str:
    """A new key for ``user``, replacing (revoking) any previous one; the only time it is shown."""
    key = secrets.token_urlsafe(30)
    previous = ApiToken.objects.select_for_update().filter(user=user).first()
    if previous is not None:
        previous.delete()
    token = ApiToken.objects.create(user=user, prefix=key[:ApiToken.PREFIX_LENGTH],
                                    digest=token_digest(key))
    audit_record(actor=actor, action="api_token.rotate" if previous else "api_token.issue",
                 target=user,
                 before={"prefix": previous.prefix} if previous else {},
                 after={"prefix": token.prefix})
    return key


@transaction.atomic
def api_token_revoke(*, token: ApiToken, actor: str) -> None:
    """The key stops working at once."""
    audit_record(actor=actor, action="api_token.revoke", target=token.user,
                 before={"prefix": token.prefix}, after={})
    token.delete()


class DigestTokenAuthentication(TokenAuthentication):
    """``Authorization: Token <key>``, looked up by the key's digest (nothing stored in clear)."""

    def authenticate_credentials(self, key: str) -> tuple[Any, ApiToken]:
        token = (ApiToken.objects.select_related("user")
                 .filter(digest=token_digest(key)).first())
        if token is None:
            raise exceptions.AuthenticationFailed("Invalid token.")
        if not token.user.is_active:
            raise exceptions.AuthenticationFailed("User inactive or deleted.")
        return token.user, token
