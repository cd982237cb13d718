"""Every API route refuses anonymous callers; writes are for staff only.

Webhooks (``body_secret_auth`` views: a bot's or an alert sender's, which cannot send a
header) authenticate by the secret in their body instead: without it every call is
refused, whatever token or session comes with it.
"""

from __future__ import annotations

import re

import pytest
from django.urls import URLPattern, URLResolver, get_resolver
from rest_framework.test import APIClient

from tradingsite.tokens import api_token_issue

pytestmark = pytest.mark.django_db

WRITE_METHODS = ("post", "put", "patch", "delete")
_CONVERTER = re.compile(r"<(?:\w+:)?\w+>")
_GROUP = re.compile(r"\(\?P<\w+>[^)]*\)")


def _concrete(regex_or_route: str) -> str:
    """An example path for a route or regex: every parameter becomes 1."""
    path = _GROUP.sub("1", regex_or_route)
    path = _CONVERTER.sub("1", path)
    return path.replace("^", "").replace("$", "").replace("\\", "")


def _walk(patterns, prefix: str = ""):
    for entry in patterns:
        part = _concrete(str(entry.pattern))
        if isinstance(entry, URLResolver):
            yield from _walk(entry.url_patterns, prefix + part)
        elif isinstance(entry, URLPattern):
            yield "/" + prefix + part, entry


def _body_secret_auth(entry: URLPattern) -> bool:
    view = getattr(entry.callback, "cls", None) or getattr(entry.callback, "view_class", None)
    return bool(getattr(view, "body_secret_auth", False))


def api_routes(*, webhooks: bool = False) -> list[str]:
    """Every concrete path under /api/ that the URL resolver knows (the token-authenticated
    ones, or with ``webhooks`` those that authenticate by a secret in their body)."""
    routes = sorted({path for path, entry in _walk(get_resolver().url_patterns)
                     if path.startswith("/api/") and _body_secret_auth(entry) == webhooks})
    assert routes, "no API routes found"
    return routes


def test_the_resolver_walk_finds_the_platform_routes():
    routes = api_routes()
    for expected in ("/api/schema/", "/api/docs/", "/api/positions/", "/api/positions/1/",
                     "/api/positions/1/health/", "/api/actions/",
                     "/api/strategies/", "/api/trading/halt/", "/api/trading/resume/"):
        assert expected in routes


@pytest.mark.parametrize("path", api_routes())
def test_anonymous_requests_are_refused_on_every_route(path):
    client = APIClient()
    for method in ("get", *WRITE_METHODS):
        response = getattr(client, method)(path)
        assert response.status_code == 401, (method, path, response.status_code)
        assert response.headers["WWW-Authenticate"] == "Token"


@pytest.mark.parametrize("path", api_routes())
def test_a_wrong_token_is_refused_on_every_route(path):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Token not-a-real-token")
    assert client.get(path).status_code == 401


@pytest.mark.parametrize("path", api_routes())
def test_non_staff_writes_are_forbidden_on_every_route(path, viewer_user):
    client = APIClient()
    client.force_authenticate(viewer_user)
    for method in WRITE_METHODS:
        response = getattr(client, method)(path, {}, format="json")
        # 405 where the route has no such method at all; never a 2xx or a 400.
        assert response.status_code in (403, 405), (method, path, response.status_code)
    assert client.post(path, {}, format="json").status_code in (403, 405)


@pytest.mark.parametrize("path", api_routes(webhooks=True))
def test_webhooks_refuse_every_call_without_their_secret_token_or_not(path, staff_user):
    staff = APIClient()
    staff.credentials(HTTP_AUTHORIZATION=f"Token {api_token_issue(user=staff_user, actor='t')}")
    for client in (APIClient(), staff):
        response = client.post(path, {"secret": "not-the-secret"}, format="json")
        assert response.status_code == 401, (path, response.status_code)
        assert response.json() == {"detail": "Invalid webhook credentials.",
                                   "code": "not_authenticated"}
        for method in ("get", "put", "patch", "delete"):
            assert getattr(client, method)(path).status_code == 405, (method, path)


def test_a_staff_token_authenticates_scripts(staff_user):
    key = api_token_issue(user=staff_user, actor="test")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    assert client.get("/api/trading/halt/").status_code == 200
    response = client.post("/api/trading/halt/", {"reason": "maintenance"}, format="json")
    assert response.status_code == 200
    assert response.json()["halted_by"] == "operator"
