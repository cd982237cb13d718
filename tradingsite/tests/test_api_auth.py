"""Every API route refuses anonymous callers; writes are for staff only."""

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


def api_routes() -> list[str]:
    """Every concrete path under /api/ that the URL resolver knows."""
    routes = sorted({path for path, _ in _walk(get_resolver().url_patterns)
                     if path.startswith("/api/")})
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


def test_a_staff_token_authenticates_scripts(staff_user):
    key = api_token_issue(user=staff_user, actor="test")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    assert client.get("/api/trading/halt/").status_code == 200
    response = client.post("/api/trading/halt/", {"reason": "maintenance"}, format="json")
    assert response.status_code == 200
    assert response.json()["halted_by"] == "operator"
