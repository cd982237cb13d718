"""What the bot and signal webhooks accept: senders' bodies exactly as they render them.

freqtrade formats every webhook template value with ``str.format``, so a body carries
strings only: ``"1"`` for a trade id, ``"0.001666"`` or ``"1e-05"`` for a float (Python's
``str(float)``), ``"True"``/``"False"`` for a boolean, ``"2026-12-06 02:16:14.531996+00:00"``
for a time, ``"None"`` where a value is missing. Those renderings are accepted here
and nothing else: no JSON number (the template cannot produce one), no NaN or
infinity, no digit separator or non-ASCII digit. Every refusal names its field (400).

Quantities and prices are rounded to the database's precision (12 and 10 places):
freqtrade's floats may carry 17 significant digits, and a replay rounds the same way.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from typing import Any

from django.utils import timezone
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from execution.models import MONEY, QTY
from tradingsite.api_input import (
    FUTURE_SLACK,
    MAX_ID,
    PAST_FLOOR,
    StrictCharField,
    StrictChoiceField,
    StrictSerializer,
)

NUMBER_TEXT = r"-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][-+]?[0-9]{1,3})?"
POSITIVE_NUMBER_TEXT = r"(0|[1-9][0-9]*)(\.[0-9]+)?([eE][-+]?[0-9]{1,3})?"
ID_TEXT = r"[1-9][0-9]{0,18}"
BOOL_WORDS = {"True": True, "False": False, "true": True, "false": False}
TIME_TEXT = (r"[0-9]{4}-[0-9]{2}-[0-9]{2}[ T][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,6})?"
             r"(Z|[+-][0-9]{2}:[0-9]{2})")


def _text(field: serializers.Field, data: Any) -> str:
    if not isinstance(data, str):
        field.fail("not_text")
    return data


@extend_schema_field({"type": "string", "pattern": f"^{NUMBER_TEXT}$"})
class RenderedNumberField(serializers.Field):
    """A number as a string (``"60000.5"``, ``"1e-05"``), rounded to the column's places.

    ``positive``: greater than zero after rounding; the whole part must fit the column.
    """

    default_error_messages = {
        "not_text": 'Send the number as a string, as freqtrade renders it (e.g. "0.5").',
        "invalid": "Enter a number of ASCII digits (an optional minus, a fraction and an "
                   "exponent as Python writes floats); not NaN, infinity or None.",
        "positive": "Must be greater than zero.",
        "too_large": "Too large: at most {digits} digits before the point.",
    }

    def __init__(self, *, max_digits: int, decimal_places: int, positive: bool = False,
                 **kwargs: Any):
        self.max_digits, self.decimal_places, self.positive = (max_digits, decimal_places,
                                                               positive)
        super().__init__(**kwargs)

    def to_internal_value(self, data: Any) -> Decimal:
        text = _text(self, data)
        if not re.fullmatch(NUMBER_TEXT, text, re.ASCII):
            self.fail("invalid")
        try:
            value = Decimal(text).quantize(Decimal(1).scaleb(-self.decimal_places),
                                           rounding=ROUND_HALF_EVEN)
        except InvalidOperation:  # beyond what a quantize can hold: 1e999
            self.fail("too_large", digits=self.max_digits - self.decimal_places)
        if value.adjusted() >= self.max_digits - self.decimal_places:
            self.fail("too_large", digits=self.max_digits - self.decimal_places)
        if self.positive and value <= 0:
            self.fail("positive")
        return value

    def to_representation(self, value: Decimal) -> str:
        return str(value)


def quantity_field(**kwargs: Any) -> RenderedNumberField:
    return RenderedNumberField(max_digits=QTY["max_digits"],
                               decimal_places=QTY["decimal_places"], **kwargs)


def money_field(**kwargs: Any) -> RenderedNumberField:
    return RenderedNumberField(max_digits=MONEY["max_digits"],
                               decimal_places=MONEY["decimal_places"], **kwargs)


@extend_schema_field({"type": "string", "pattern": f"^{ID_TEXT}$"})
class RenderedIdField(serializers.Field):
    """A trade id as a string of ASCII digits (``"1"``), at most 64 bits."""

    default_error_messages = {
        "not_text": 'Send the id as a string, as freqtrade renders it (e.g. "1").',
        "invalid": "Enter a positive whole number of ASCII digits.",
    }

    def to_internal_value(self, data: Any) -> int:
        text = _text(self, data)
        if not re.fullmatch(ID_TEXT, text, re.ASCII) or int(text) > MAX_ID:
            self.fail("invalid")
        return int(text)

    def to_representation(self, value: int) -> str:
        return str(value)


@extend_schema_field({"type": "string", "enum": list(BOOL_WORDS)})
class RenderedBooleanField(serializers.Field):
    """``"True"`` or ``"False"`` (Python's rendering; lower case accepted too)."""

    default_error_messages = {"not_text": 'Send "True" or "False" (a string).',
                              "invalid": 'Enter "True" or "False".'}

    def to_internal_value(self, data: Any) -> bool:
        text = _text(self, data)
        if text not in BOOL_WORDS:
            self.fail("invalid")
        return BOOL_WORDS[text]

    def to_representation(self, value: bool) -> str:
        return str(value)


@extend_schema_field({"type": "string", "pattern": f"^{TIME_TEXT}$"})
class RenderedTimeField(serializers.Field):
    """A time with its UTC offset (``"2026-12-06 02:16:14.531996+00:00"``), kept to the
    millisecond (the precision of the bot's own trade records), between 2000 and now + 1 day."""

    default_error_messages = {
        "not_text": "Send the time as a string, as freqtrade renders it.",
        "invalid": 'Enter a time with its offset, e.g. "2026-12-06 02:16:14.531996+00:00".',
        "out_of_range": "Must lie after 2000-01-01 and before now + 1 day.",
    }

    def to_internal_value(self, data: Any) -> datetime:
        text = _text(self, data)
        if not re.fullmatch(TIME_TEXT, text, re.ASCII):
            self.fail("invalid")
        try:
            value = datetime.fromisoformat(text)
        except ValueError:  # 2026-02-30, 25:00, an offset of 25 h
            self.fail("invalid")
        try:
            value = value.astimezone(UTC)
        except OverflowError:  # 0001-01-01 at +14:00
            self.fail("out_of_range")
        value = value.replace(microsecond=value.microsecond // 1000 * 1000)
        if not PAST_FLOOR < value < timezone.now() + FUTURE_SLACK:
            self.fail("out_of_range")
        return value

    def to_representation(self, value: datetime) -> str:
        return value.isoformat()


@extend_schema_field({"type": "string", "maxLength": 255})
class IgnoredField(serializers.Field):
    """A template value the platform does not use: a string (or a scalar a hand-written
    template put there) of at most 255 characters, accepted and dropped."""

    default_error_messages = {"invalid": "Enter a string of at most 255 characters."}

    def __init__(self, **kwargs: Any):
        kwargs.setdefault("required", False)
        super().__init__(**kwargs)

    def to_internal_value(self, data: Any) -> None:
        if isinstance(data, (dict, list)) or (isinstance(data, str) and len(data) > 255):
            self.fail("invalid")
        return None


# --- freqtrade's webhook ------------------------------------------------------------------

class FreqtradeEvent:
    """The events of freqtrade's webhook configuration (its message types)."""

    ENTRY = "entry"
    ENTRY_FILL = "entry_fill"
    ENTRY_CANCEL = "entry_cancel"
    EXIT = "exit"
    EXIT_FILL = "exit_fill"
    EXIT_CANCEL = "exit_cancel"
    STATUS = "status"
    ALL = (ENTRY, ENTRY_FILL, ENTRY_CANCEL, EXIT, EXIT_FILL, EXIT_CANCEL, STATUS)


REQUIRED_FIELDS: dict[str, tuple[str, ...]] = {
    FreqtradeEvent.ENTRY: ("trade_id",),
    FreqtradeEvent.ENTRY_FILL: ("trade_id", "pair", "direction", "amount", "open_rate",
                                "open_date"),
    FreqtradeEvent.ENTRY_CANCEL: ("trade_id",),
    FreqtradeEvent.EXIT: ("trade_id",),
    FreqtradeEvent.EXIT_FILL: ("trade_id", "pair", "direction", "amount", "open_rate",
                               "open_date", "close_rate", "close_date", "exit_reason",
                               "profit_amount", "is_final_exit"),
    FreqtradeEvent.EXIT_CANCEL: ("trade_id",),
    FreqtradeEvent.STATUS: ("status",),
}

# Message keys freqtrade can fill in that the platform does not read.
IGNORED_KEYS = ("type", "buy_tag", "enter_tag", "exchange", "base_currency", "quote_currency",
                "leverage", "limit", "order_rate", "order_type", "stake_amount",
                "stake_currency", "fiat_currency", "current_rate", "sub_trade", "reason",
                "cumulative_profit", "gain", "final_profit_ratio", "bot_name")


class FreqtradeWebhookSerializer(StrictSerializer):
    """One freqtrade webhook body (``"format": "json"``), every value a string.

    ``event`` says which template sent it; ``secret`` is the connection's webhook
    secret (checked before anything else is read). The fields each event needs are
    listed in README (the ready-to-paste ``webhook`` block sends them all).
    """

    secret = StrictCharField(max_length=128, help_text="The connection's webhook secret.")
    event = StrictChoiceField(choices=[(e, e) for e in FreqtradeEvent.ALL])
    trade_id = RenderedIdField(required=False)
    pair = StrictCharField(max_length=64, visible=True, required=False)
    direction = StrictChoiceField(choices=[("Long", "Long"), ("Short", "Short")], required=False)
    amount = quantity_field(positive=True, required=False)
    open_rate = money_field(positive=True, required=False)
    open_date = RenderedTimeField(required=False)
    close_rate = money_field(positive=True, required=False)
    close_date = RenderedTimeField(required=False)
    exit_reason = StrictCharField(max_length=64, required=False)
    profit_amount = money_field(required=False)
    profit_ratio = RenderedNumberField(max_digits=28, decimal_places=10, required=False)
    is_final_exit = RenderedBooleanField(required=False)
    status = StrictCharField(max_length=200, visible=True, required=False)

    def get_fields(self) -> dict[str, serializers.Field]:
        fields = super().get_fields()
        for name in IGNORED_KEYS:
            fields[name] = IgnoredField()
        return fields

    def validate(self, data: Mapping[str, Any]) -> dict[str, Any]:
        missing = {name: ["This field is required for the event "
                          f"{data['event']!r}."] for name in REQUIRED_FIELDS[data["event"]]
                   if data.get(name) is None}
        if missing:
            raise serializers.ValidationError(missing)
        return {name: value for name, value in data.items()
                if name not in IGNORED_KEYS and name != "secret"}


class SignalAction:
    OPEN = "open"
    CLOSE = "close"


class TradeSignalSerializer(StrictSerializer):
    """A trade signal (a TradingView-style alert): open or close a position of the strategy.

    ``quantity`` or ``notional`` (the quote amount, converted at ``price``) says how
    much to open; ``price`` is the sender's reference price (the slippage check
    measures against it). A close names the symbol (and the side, when both are held).
    """

    secret = StrictCharField(max_length=128, help_text="The strategy's signal secret.")
    signal_id = StrictCharField(
        max_length=128, visible=True,
        help_text="The sender's id of this signal: repeated with the same body it gets the "
                  "first answer and nothing new happens; with another body it is a 409.")
    action = StrictChoiceField(choices=[(SignalAction.OPEN, "open"), (SignalAction.CLOSE,
                                                                      "close")])
    symbol = StrictCharField(max_length=64, visible=True)
    side = StrictChoiceField(choices=[("long", "long"), ("short", "short")], required=False)
    quantity = quantity_field(positive=True, required=False)
    notional = money_field(positive=True, required=False)
    price = money_field(positive=True, required=False)

    def validate(self, data: Mapping[str, Any]) -> dict[str, Any]:
        errors: dict[str, list[str]] = {}
        if data["action"] == SignalAction.OPEN:
            if "side" not in data:
                errors["side"] = ["An open needs a side (long or short)."]
            if ("quantity" in data) == ("notional" in data):
                errors["quantity"] = ["An open needs exactly one of quantity and notional."]
            elif "notional" in data and "price" not in data:
                errors["price"] = ["A notional is converted at this price: send it too."]
        else:
            for name in ("quantity", "notional", "price"):
                if name in data:
                    errors[name] = ["A close takes no amount: it closes the whole position."]
        if errors:
            raise serializers.ValidationError(errors)
        return {name: value for name, value in data.items() if name != "secret"}
