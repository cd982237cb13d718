"""OpenAPI post-processing: document the JSON errors every operation can answer with.

The exception handler (``tradingsite.api_errors``) answers every failure as JSON:
``{"detail": ..., "code": ...}`` or, for invalid input, ``{"field": ["message", ...]}``.
Declaring those responses once here keeps each view's schema about its success case.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.openapi import AutoSchema
from drf_spectacular.plumbing import force_instance
from rest_framework.negotiation import DefaultContentNegotiation

from tradingsite.api_input import StrictSerializer

ERROR_COMPONENT = "Error"
ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "An error. Invalid input carries one list of messages per field "
                   "(`non_field_errors` for the request as a whole).",
    "properties": {
        "detail": {"type": "string", "description": "What went wrong."},
        "code": {"type": "string", "description": "Machine-readable reason, when known."},
    },
    "additionalProperties": True,
}
READ_METHODS = {"get", "head", "options"}
ERRORS: dict[str, str] = {
    "400": "Invalid input (field messages) or an invalid filter value.",
    "401": "Not authenticated (token requests without a valid token).",
    "403": "Not authenticated (session) or not allowed: writes are for staff.",
    "404": "No such object.",
    "409": "Refused by the platform's rules: invalid state transition or conflict "
           "(`request_mismatch`: an idempotency key or reference repeated for a different "
           "request; `fields` names what differs).",
    "413": "The request body is too large.",
    "415": "The request body is not JSON (application/json).",
}


def _errors_for(path: str, method: str) -> list[str]:
    codes = ["400", "401", "403"]
    if "{" in path:
        codes.append("404")
    if method not in READ_METHODS:
        codes += ["409", "413", "415"]
    return codes


class ApiSchema(AutoSchema):
    """The schema of what ``tradingsite.api_input`` enforces.

    A view's ``query_serializer_class`` is its query's parameters; a view that builds
    its own page (``paged``) documents ``limit``/``offset``; a strict request body
    has no other properties (``additionalProperties: false``).
    """

    def get_override_parameters(self) -> list[Any]:
        parameters = super().get_override_parameters()
        query = getattr(self.view, "query_serializer_class", None)
        if query is not None and self.method == "GET":
            parameters = [query, *parameters]
        return parameters

    def _get_pagination_parameters(self) -> list[dict[str, Any]]:
        if getattr(self.view, "paged", False):
            return self.view.paginator.get_schema_operation_parameters(self.view)
        return super()._get_pagination_parameters()

    def _map_basic_serializer(self, serializer: Any, direction: str) -> dict[str, Any]:
        schema = super()._map_basic_serializer(serializer, direction)
        strict = force_instance(serializer)
        if direction == "request" and isinstance(strict, StrictSerializer) and not strict.in_query:
            schema["additionalProperties"] = False
        return schema


class SchemaFormatNegotiation(DefaultContentNegotiation):
    """``/api/schema/?format=json|yaml``: the schema's one query parameter.

    The API itself takes no ``format`` (``URL_FORMAT_OVERRIDE`` is off: it answers JSON).
    """

    def select_renderer(self, request: Any, renderers: Any, format_suffix: Any = None) -> Any:
        return super().select_renderer(request, renderers,
                                       format_suffix or request.query_params.get("format"))


def add_error_responses(result: dict[str, Any], generator: Any, request: Any,
                        public: bool) -> dict[str, Any]:
    """drf-spectacular post-processing hook: add the shared error responses to each operation."""
    components = result.setdefault("components", {}).setdefault("schemas", {})
    components.setdefault(ERROR_COMPONENT, ERROR_SCHEMA)
    ref = {"$ref": f"#/components/schemas/{ERROR_COMPONENT}"}
    for path, operations in result.get("paths", {}).items():
        for method, operation in operations.items():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            for code in _errors_for(path, method):
                operation["responses"].setdefault(code, {
                    "description": ERRORS[code],
                    "content": {"application/json": {"schema": ref}},
                })
    return result
