"""The OpenAPI schema validates, documents the errors and is served without a CDN."""

from __future__ import annotations

import pytest
from django.core.management import call_command
from django.db import DataError
from drf_spectacular.generators import SchemaGenerator
from drf_spectacular.settings import spectacular_settings
from rest_framework.test import APIClient

from tradingsite.api_errors import exception_handler
from tradingsite.api_input import StrictApi
from tradingsite.errors import InvalidStateTransition

pytestmark = pytest.mark.django_db


def test_the_schema_validates_without_warnings(tmp_path):
    out = tmp_path / "schema.yml"
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(out))
    assert "openapi: 3.0.3" in out.read_text()


def test_every_operation_documents_the_json_errors(viewer_user):
    client = APIClient()
    client.force_authenticate(viewer_user)
    schema = client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()
    assert schema["components"]["schemas"]["Error"]["properties"]["detail"] == {
        "type": "string", "description": "What went wrong."}
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            assert {"400", "401", "403"} <= set(operation["responses"]), (method, path)
            if "{" in path:
                assert "404" in operation["responses"], (method, path)
            if method in {"post", "put", "patch", "delete"}:
                assert {"409", "415"} <= set(operation["responses"]), (method, path)


def test_the_docs_pages_use_the_bundled_sidecar_assets(viewer_user):
    client = APIClient()
    client.force_authenticate(viewer_user)
    for page in ("/api/docs/", "/api/redoc/"):
        html = client.get(page).content.decode()
        assert "cdn." not in html and "unpkg" not in html and "jsdelivr" not in html, page
        assert "/static/drf_spectacular_sidecar/" in html, page


@pytest.mark.parametrize("error", [
    OverflowError("Python int too large to convert to SQLite INTEGER"),
    DataError("time zone displacement out of range")])
def test_a_value_the_database_refuses_is_a_400(error):
    response = exception_handler(error, {})
    assert response.status_code == 400
    assert response.data == {
        "detail": "A value in the request is out of the range the database accepts.",
        "code": "out_of_range"}


def test_domain_errors_keep_their_status_and_code():
    response = exception_handler(InvalidStateTransition("CLOSED → OPEN"), {})
    assert (response.status_code, response.data) == (
        409, {"detail": "CLOSED → OPEN", "code": "invalid_state_transition"})


def test_every_api_view_accepts_exactly_the_query_parameters_its_schema_lists():
    """The strict-input mixin and the schema cannot drift apart."""
    generator = SchemaGenerator()
    generator._initialise_endpoints()
    checked = 0
    for path, path_regex, method, view in generator._get_paths_and_endpoints():
        view.request = spectacular_settings.GET_MOCK_REQUEST(method, path, view, None)
        operation = view.schema.get_operation(path, path_regex, "^/", method, generator.registry)
        if operation is None:  # the schema and docs views themselves
            continue
        documented = {parameter["name"] for parameter in operation.get("parameters", [])
                      if parameter["in"] == "query"}
        assert isinstance(view, StrictApi), f"{method} {path}: {type(view).__name__}"
        assert view.accepted_query_params() == documented, (method, path)
        checked += 1
    assert checked >= 27  # every operation of the schema (more as routes are added)
