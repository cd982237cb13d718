"""Strict API input: one place decides what the API accepts; anything else is a JSON 4xx.

- Bodies are JSON objects (``StrictJSONParser``): at most ``MAX_BODY_BYTES`` (413),
  ``MAX_DEPTH`` levels, UTF-8, no NaN/Infinity, no repeated keys; numbers keep their
  text (``Decimal``), so ``62.9`` is never read as 62.
- Fields name what they take, exactly as the OpenAPI schema says: ids and integers
  are JSON integers in a body and ASCII digits in a query; decimals are strings of
  ASCII digits within the field's precision (no exponent, separator, sign or
  non-ASCII digit), positive where that is meant; booleans are ``true``/``false``;
  dates of the past lie between 2000-01-01 and now + 1 day.
- Unknown body fields and undocumented query parameters are refused by name
  (``StrictSerializer``, ``StrictApi``); ``limit`` is 1–1,000 and ``offset`` bounded
  (``StrictPagination``); an ``ordering`` is one documented field.

Each rule is written once, here; the schema of a field is derived from the same
rule (``StrictDecimalField.pattern``), so clients and schemathesis see what is enforced.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from types import MappingProxyType
from typing import Any

import django_filters
from django import forms
from django.db import models
from django.urls import register_converter
from django.utils import timezone
from drf_spectacular.extensions import OpenApiSerializerFieldExtension
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema_field
from rest_framework import serializers
from rest_framework.exceptions import APIException, ParseError, ValidationError
from rest_framework.filters import OrderingFilter
from rest_framework.mixins import ListModelMixin
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.parsers import JSONParser
from rest_framework.request import Request
from rest_framework.settings import api_settings

MAX_BODY_BYTES = 64 * 1024
MAX_DEPTH = 8
MAX_ID = 2**63 - 1
MAX_LIMIT = 1000
MAX_OFFSET = 1_000_000_000
PAST_FLOOR = datetime(2000, 1, 1, tzinfo=UTC)
FUTURE_SLACK = timedelta(days=1)
IDEMPOTENCY_HEADER = "Idempotency-Key"

INTEGER_TEXT = re.compile(r"0|-?[1-9][0-9]{0,18}", re.ASCII)  # 64 bits at most: int() is cheap
DECIMAL_TEXT = re.compile(r"-?(0|[1-9][0-9]*)(\.[0-9]+)?", re.ASCII)


# --- the body ------------------------------------------------------------------------

class PayloadTooLarge(APIException):
    status_code = 413
    default_detail = f"The request body is too large (more than {MAX_BODY_BYTES} bytes)."
    default_code = "payload_too_large"


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number JSON allows")


def _integer_literal(text: str) -> int:
    if len(text.lstrip("-")) > 19:
        raise ValueError(f"an integer of {len(text)} characters is beyond 64 bits")
    return int(text)


def _object_without_repeats(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"the key {key!r} is given twice")
        result[key] = value
    return result


def _check_shape(data: Any) -> None:
    """At most ``MAX_DEPTH`` levels; every string encodable (no lone surrogates).

    The error names where: the top-level field the bad value sits in.
    """
    stack: list[tuple[Any, int, str]] = [(data, 1, "the body")]
    while stack:
        value, depth, where = stack.pop()
        if isinstance(value, str):
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                raise ParseError(f"JSON parse error - a lone surrogate in {where}") from None
        elif isinstance(value, (dict, list)):
            if depth > MAX_DEPTH:
                raise ParseError(f"JSON parse error - {where} is nested deeper than "
                                 f"{MAX_DEPTH} levels")
            items = value.items() if isinstance(value, dict) else enumerate(value)
            for key, item in items:
                inside = key if depth == 1 and isinstance(key, str) else where
                stack.extend([(key, depth + 1, inside), (item, depth + 1, inside)])


class StrictJSONParser(JSONParser):
    """The API's only parser: bounded, UTF-8 JSON without NaN, repeated keys or float rounding."""

    def parse(self, stream, media_type=None, parser_context=None) -> Any:
        raw = stream.read(MAX_BODY_BYTES + 1)
        if len(raw) > MAX_BODY_BYTES:
            raise PayloadTooLarge()
        try:
            data = json.loads(raw.decode("utf-8"), parse_float=Decimal,
                              parse_int=_integer_literal, parse_constant=_refuse_constant,
                              object_pairs_hook=_object_without_repeats)
        except UnicodeDecodeError:
            raise ParseError("JSON parse error - the body is not UTF-8") from None
        except RecursionError:
            raise ParseError(f"JSON parse error - the body is nested deeper than {MAX_DEPTH} "
                             "levels") from None
        except ValueError as exc:
            raise ParseError(f"JSON parse error - {exc}") from None
        _check_shape(data)
        return data


# --- fields ----------------------------------------------------------------------------

def _in_query(field: serializers.Field) -> bool:
    """Query values are text; body values are JSON's own types."""
    return getattr(field.root, "in_query", False)


def _integer(field: serializers.Field, data: Any, code: str = "invalid") -> int:
    if _in_query(field):
        if not isinstance(data, str) or not INTEGER_TEXT.fullmatch(data):
            field.fail(code)
        return int(data)
    if isinstance(data, bool) or not isinstance(data, int):
        field.fail(code)
    return data


class StrictIntegerField(serializers.IntegerField):
    """A JSON integer (in a query: ASCII digits), never a float, bool or numeric text."""

    default_error_messages = {"invalid": "Enter a whole number (ASCII digits, no fraction)."}

    def to_internal_value(self, data: Any) -> int:
        value = _integer(self, data)
        self.run_validators(value)
        return value


class IdField(serializers.PrimaryKeyRelatedField):
    """An object's id: a positive JSON integer, never ``62.9``, ``true`` or ``"62"``."""

    default_error_messages = {"incorrect_type": "Enter an object id (a positive whole number)."}

    def to_internal_value(self, data: Any) -> Any:
        value = _integer(self, data, "incorrect_type")
        if not 1 <= value <= MAX_ID:
            self.fail("does_not_exist", pk_value=value)
        return super().to_internal_value(value)


class StrictBooleanField(serializers.BooleanField):
    """``true`` or ``false`` (in a query: those words), nothing that merely looks truthy."""

    default_error_messages = {"invalid": "Enter true or false."}
    WORDS = {"true": True, "false": False}

    def to_internal_value(self, data: Any) -> bool:
        if _in_query(self):
            if data not in self.WORDS:
                self.fail("invalid")
            return self.WORDS[data]
        if not isinstance(data, bool):
            self.fail("invalid")
        return data


def _text(field: serializers.Field, data: Any) -> str:
    if not isinstance(data, str):
        field.fail("not_text")
    return data


class StrictCharField(serializers.CharField):
    """A JSON string, kept as sent (no trimming: the schema's lengths are what is checked).

    ``visible``: must hold a character other than whitespace (a reason, a name).
    """

    default_error_messages = {"not_text": "Enter text (a JSON string).",
                              "invisible": "Enter at least one visible character."}
    VISIBLE = r"\S"

    def __init__(self, *, visible: bool = False, **kwargs: Any):
        kwargs.setdefault("trim_whitespace", False)
        self.visible = visible
        super().__init__(**kwargs)

    def to_internal_value(self, data: Any) -> str:
        value = super().to_internal_value(_text(self, data))
        if self.visible and not re.search(self.VISIBLE, value):
            self.fail("invisible")
        return value


class StrictChoiceField(serializers.ChoiceField):
    """One of the listed strings, exactly (no number or bool coerced to its text)."""

    default_error_messages = {"not_text": "Enter one of the listed values (a JSON string)."}

    def to_internal_value(self, data: Any) -> Any:
        return super().to_internal_value(_text(self, data))


class StrictSlugRelatedField(serializers.SlugRelatedField):
    """An object named by a string (a strategy's name), never by a number."""

    default_error_messages = {"not_text": "Enter a name (a JSON string)."}

    def to_internal_value(self, data: Any) -> Any:
        return super().to_internal_value(_text(self, data))


def decimal_pattern(max_digits: int, decimal_places: int, *, positive: bool = False,
                    signed: bool = True) -> str:
    """The text of a decimal of at most these digits, as a regular expression.

    ``positive``: not zero (spelled out per position of the first non-zero digit, so
    that any JSON Schema generator can use it: no lookahead).
    """
    whole, places = max_digits - decimal_places, decimal_places
    fraction = f"(\\.[0-9]{{1,{places}}})?" if places else ""
    if positive:
        small = "|".join(f"0{{{k}}}[1-9][0-9]{{0,{places - k - 1}}}" for k in range(places))
        body = f"[1-9][0-9]{{0,{whole - 1}}}{fraction}" + (f"|0\\.({small})" if places else "")
    else:
        body = f"(0|[1-9][0-9]{{0,{whole - 1}}}){fraction}"
    return f"^{'-?' if signed and not positive else ''}({body})$"


class StrictDecimalField(serializers.DecimalField):
    """A decimal sent as a string of ASCII digits, within the field's digits.

    No JSON number (a float may already have lost digits), exponent, digit separator,
    leading zero, plus sign or non-ASCII digit. ``positive``: greater than zero;
    ``min_value=0``: not negative. ``pattern`` is the whole rule as a regular
    expression, published in the schema.
    """

    default_error_messages = {
        "not_text": 'Send the number as a string of ASCII digits, e.g. "0.5".',
        "invalid": "Enter a decimal of ASCII digits: no exponent, digit separator, leading "
                   "zero or sign other than a leading minus.",
        "negative": "Must not be negative.",
        "positive": "Must be greater than zero.",
    }

    def __init__(self, *, positive: bool = False, **kwargs: Any):
        self.positive = positive
        super().__init__(**kwargs)

    @property
    def signed(self) -> bool:
        return not self.positive and (self.min_value is None or self.min_value < 0)

    @property
    def pattern(self) -> str:
        return decimal_pattern(self.max_digits, self.decimal_places, positive=self.positive,
                               signed=self.signed)

    def validate_empty_values(self, data: Any) -> tuple[bool, Any]:
        return serializers.Field.validate_empty_values(self, data)  # "" is not null here

    def to_internal_value(self, data: Any) -> Decimal:
        text = _text(self, data)
        if not DECIMAL_TEXT.fullmatch(text):
            self.fail("invalid")
        if text.startswith("-") and not self.signed:
            self.fail("positive" if self.positive else "negative")
        value = super().to_internal_value(text)
        if self.positive and value == 0:
            self.fail("positive")
        return value


class IdFieldSchema(OpenApiSerializerFieldExtension):
    target_class = IdField
    match_subclasses = True

    def map_serializer_field(self, auto_schema: Any, direction: str) -> dict[str, Any]:
        return {"type": "integer", "minimum": 1, "maximum": MAX_ID}


class StrictDecimalFieldSchema(OpenApiSerializerFieldExtension):
    target_class = StrictDecimalField
    match_subclasses = True

    def map_serializer_field(self, auto_schema: Any, direction: str) -> dict[str, Any]:
        return {"type": "string", "format": "decimal", "pattern": self.target.pattern}


class StrictDateTimeField(serializers.DateTimeField):
    """An ISO 8601 time (without offset: the configured time zone), as UTC."""

    default_error_messages = {"not_text": "Enter an ISO 8601 time (a JSON string)."}

    def to_internal_value(self, data: Any) -> datetime:
        if not _text(self, data).isascii():  # Python's ISO parser reads any Unicode digit
            self.fail("invalid", format="ISO 8601")
        try:
            return super().to_internal_value(data).astimezone(UTC)
        except OverflowError:
            self.fail("overflow")


class PastDateTimeField(StrictDateTimeField):
    """When something happened: after 2000-01-01 and before now + 1 day (clock skew)."""

    default_error_messages = {"out_of_range": "Must lie after 2000-01-01 and before now + 1 day."}

    def to_internal_value(self, data: Any) -> datetime:
        value = super().to_internal_value(data)
        if not PAST_FLOOR < value < timezone.now() + FUTURE_SLACK:
            self.fail("out_of_range")
        return value


# --- serializers -----------------------------------------------------------------------

class StrictSerializer(serializers.Serializer):
    """A request body: a JSON object of this serializer's fields, nothing else (400 by name)."""

    in_query = False

    def to_internal_value(self, data: Any) -> Any:
        unknown = {}
        if isinstance(data, Mapping) and not self.in_query:
            writable = {name for name, field in self.fields.items() if not field.read_only}
            unknown = {name: ["Unknown field."] for name in data if name not in writable}
        try:
            value = super().to_internal_value(data)
        except ValidationError as exc:
            if unknown and isinstance(exc.detail, dict):
                exc.detail.update(unknown)
            raise
        if unknown:
            raise ValidationError(unknown)
        return value


class StrictQuerySerializer(StrictSerializer):
    """The query of an operation: text values; parameters it does not know are refused
    by ``StrictApi`` (pagination's ``limit``/``offset`` are not its own)."""

    in_query = True


class EmptyBody(StrictSerializer):
    """For writes that take no body: nothing, or ``{}``."""


IDEMPOTENCY_PARAMETER = OpenApiParameter(
    IDEMPOTENCY_HEADER, {"type": "string", "minLength": 1, "maxLength": 128,
                         "pattern": StrictCharField.VISIBLE},
    OpenApiParameter.HEADER, description="Same as the idempotency_key field.")


def idempotency_key(request: Request, data: Any) -> Any:
    """The body with the ``Idempotency-Key`` header as its ``idempotency_key``.

    Both may be given only if they agree (400 otherwise).
    """
    header = request.headers.get(IDEMPOTENCY_HEADER)
    if header is None or not isinstance(data, Mapping):
        return data
    if "idempotency_key" in data and data["idempotency_key"] != header:
        raise ValidationError({"idempotency_key": [
            f"Differs from the {IDEMPOTENCY_HEADER} header; send one of them."]})
    return {**data, "idempotency_key": header}


# --- pagination and ordering -----------------------------------------------------------

class StrictPagination(LimitOffsetPagination):
    """``limit`` 1–1,000 (default ``PAGE_SIZE``) and ``offset`` 0–10⁹: 400 otherwise."""

    default_limit = api_settings.PAGE_SIZE
    max_limit = MAX_LIMIT

    @staticmethod
    def _bounded(request: Request, name: str, low: int, high: int, default: int) -> int:
        text = request.query_params.get(name)
        if text is None:
            return default
        if INTEGER_TEXT.fullmatch(text) and low <= int(text) <= high:
            return int(text)
        raise ValidationError({name: [f"Enter a whole number from {low} to {high}."]})

    def get_limit(self, request: Request) -> int:
        return self._bounded(request, self.limit_query_param, 1, self.max_limit,
                             self.default_limit)

    def get_offset(self, request: Request) -> int:
        return self._bounded(request, self.offset_query_param, 0, MAX_OFFSET, 0)

    def get_schema_operation_parameters(self, view: Any) -> list[dict[str, Any]]:
        bounds = {self.limit_query_param: (1, self.max_limit),
                  self.offset_query_param: (0, MAX_OFFSET)}
        parameters = super().get_schema_operation_parameters(view)
        for parameter in parameters:
            low, high = bounds[parameter["name"]]
            parameter["schema"] = {"type": "integer", "minimum": low, "maximum": high}
        return parameters


class StrictOrderingFilter(OrderingFilter):
    """``ordering``: one of the view's ``ordering_fields``, optionally with ``-`` (else 400)."""

    def terms(self, view: Any) -> list[str]:
        fields = getattr(view, "ordering_fields", None) or []
        return [term for name in fields for term in (name, f"-{name}")]

    def get_ordering(self, request: Request, queryset: Any, view: Any) -> Any:
        term = request.query_params.get(self.ordering_param)
        if term is None:
            return self.get_default_ordering(view)
        if term not in self.terms(view):
            raise ValidationError({self.ordering_param: [
                f"Enter one of: {', '.join(self.terms(view))}."]})
        return [term]

    def get_schema_operation_parameters(self, view: Any) -> list[dict[str, Any]]:
        if not self.terms(view):
            return []
        return [{"name": self.ordering_param, "required": False, "in": "query",
                 "description": "Sort by this field (a leading - for descending).",
                 "schema": {"type": "string", "enum": self.terms(view)}}]


# --- filters (django-filter) -----------------------------------------------------------

class _TextFormField(forms.Field):
    """A query value that must be present when its parameter is given (``?x=`` is an error)."""

    default_error_messages = {"required": "Enter a value."}

    def __init__(self, *, required: bool = False, **kwargs: Any):
        super().__init__(required=required, **kwargs)

    def clean(self, value: Any) -> Any:
        if value is None:  # parameter absent
            return None
        if value == "":
            raise forms.ValidationError(self.error_messages["required"], code="required")
        return super().clean(value)


class _IdFormField(_TextFormField):
    def to_python(self, value: str) -> int:
        if not INTEGER_TEXT.fullmatch(value) or not 1 <= int(value) <= MAX_ID:
            raise forms.ValidationError("Enter an object id (a positive whole number).",
                                        code="invalid")
        return int(value)


class _BooleanFormField(_TextFormField):
    def to_python(self, value: str) -> bool:
        if value not in StrictBooleanField.WORDS:
            raise forms.ValidationError("Enter true or false.", code="invalid")
        return StrictBooleanField.WORDS[value]


MONEY_PATTERN = decimal_pattern(28, 10)


class _DecimalFormField(_TextFormField):
    def to_python(self, value: str) -> Decimal:
        if not re.fullmatch(MONEY_PATTERN, value):
            raise forms.ValidationError("Enter a decimal of ASCII digits (e.g. -12.5), at most "
                                        "18 digits before the point and 10 after.",
                                        code="invalid")
        return Decimal(value)


class _DateTimeFormField(_TextFormField):
    def to_python(self, value: str) -> datetime:
        field = StrictDateTimeField()
        try:
            return field.to_internal_value(value)
        except ValidationError:
            raise forms.ValidationError("Enter an ISO 8601 time.", code="invalid") from None


@extend_schema_field({"type": "integer", "minimum": 1, "maximum": MAX_ID})
class IdFilter(django_filters.Filter):
    field_class = _IdFormField


@extend_schema_field(OpenApiTypes.BOOL)
class BooleanFilter(django_filters.BooleanFilter):
    field_class = _BooleanFormField


@extend_schema_field({"type": "string", "format": "decimal", "pattern": MONEY_PATTERN})
class DecimalFilter(django_filters.Filter):
    field_class = _DecimalFormField


@extend_schema_field(OpenApiTypes.DATETIME)
class TimeFilter(django_filters.Filter):
    """An ISO 8601 time, as UTC: the database refuses offsets beyond ±16 h."""

    field_class = _DateTimeFormField


class _StrictChoiceFormField(django_filters.fields.ChoiceField):
    def clean(self, value: Any) -> Any:
        if value == "":
            raise forms.ValidationError("Select one of the listed values.", code="required")
        return super().clean(value)


class ChoiceFilter(django_filters.ChoiceFilter):
    field_class = _StrictChoiceFormField


class StrictFilterSet(django_filters.FilterSet):
    """Filters whose values are checked as strictly as the body fields (see module doc)."""

    FILTER_DEFAULTS = {
        **django_filters.FilterSet.FILTER_DEFAULTS,
        models.BooleanField: {"filter_class": BooleanFilter},
    }

    @classmethod
    def filter_for_lookup(cls, field: Any, lookup_type: str) -> tuple[type, dict]:
        filter_class, params = super().filter_for_lookup(field, lookup_type)
        if filter_class is django_filters.ChoiceFilter:
            filter_class = ChoiceFilter
        return filter_class, params


# --- views -------------------------------------------------------------------------------

class IdConverter:
    """``<id:pk>`` in a route: an id the database can hold, else the route does not match (404)."""

    regex = "[0-9]{1,19}"

    def to_python(self, value: str) -> int:
        number = int(value)
        if not 1 <= number <= MAX_ID:
            raise ValueError(f"{value} is not an object id")
        return number

    def to_url(self, value: int) -> str:
        return str(value)


register_converter(IdConverter, "id")


class StrictApi:
    """Mixed into every API view: query parameters the operation does not document → 400.

    ``query_serializer_class`` (a ``StrictQuerySerializer``) validates the query once,
    before the handler, into ``self.params``; the schema lists its fields too
    (``tradingsite.api_schema.ApiSchema``).
    """

    query_serializer_class: type[StrictQuerySerializer] | None = None
    paged = False  # a page the view builds itself (``self.paginator``)
    params: Mapping[str, Any] = MappingProxyType({})  # (schema generation runs no request)

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        super().initial(request, *args, **kwargs)
        method = request.method.lower()
        if method not in self.http_method_names or not hasattr(self, method):
            return  # a method the view does not have: dispatch answers 405
        accepted = self.accepted_query_params()
        unknown = sorted(name for name in request.query_params if name not in accepted)
        if unknown:
            raise ValidationError({name: ["Unknown query parameter."] for name in unknown})
        self.params = {}
        if self.query_serializer_class is not None and request.method == "GET":
            given = self.query_serializer_class(data=request.query_params.dict())
            given.is_valid(raise_exception=True)
            self.params = given.validated_data

    def lists(self) -> bool:
        action = getattr(self, "action", None)
        if action is not None:
            return action == "list"
        return self.paged or isinstance(self, ListModelMixin)

    def accepted_query_params(self) -> set[str]:
        names: set[str] = set()
        if self.query_serializer_class is not None and self.request.method == "GET":
            names |= set(self.query_serializer_class().fields)
        if not self.lists():
            return names
        paginator = getattr(self, "paginator", None)
        if paginator is not None:
            names |= {paginator.limit_query_param, paginator.offset_query_param}
        for backend in getattr(self, "filter_backends", ()):
            if issubclass(backend, django_filters.rest_framework.DjangoFilterBackend):
                filterset = getattr(self, "filterset_class", None)
                names |= set(filterset.base_filters) if filterset else set()
            elif issubclass(backend, StrictOrderingFilter) and backend().terms(self):
                names.add(backend.ordering_param)
        return names

