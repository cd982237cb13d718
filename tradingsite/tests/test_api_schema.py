"""The OpenAPI schema validates, documents the errors and is served without a CDN."""

from __future__ import annotations

import pytest
from django.core.management import call_command
from rest_framework.test import APIClient

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
