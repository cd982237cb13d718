"""Decimals in the admin as an operator writes them: 800, 1.1756 — not 800.000000000000.

Django's admin writes a ``DecimalField`` with all its ``decimal_places`` in change lists
and read-only fields (``admin.utils.display_for_field``) and in its inputs, with no
setting to change it. ``install()`` (from ``TradingsiteConfig.ready``) wraps that one
function, where the admin's list and read-only rendering import it, so every model
admin — ours and third-party ones — shows decimals without trailing zeros; and
``PlainDecimalInput`` does the same for editable decimals.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django import forms
from django.db import models

from tradingsite.numbers import plain

_original = None


def display_for_field(value: Any, field: models.Field, empty_value_display: str,
                      *args: Any, **kwargs: Any) -> str:
    if isinstance(field, models.DecimalField) and isinstance(value, Decimal):
        return plain(value)
    return _original(value, field, empty_value_display, *args, **kwargs)


def install() -> None:
    global _original
    from django.contrib.admin import helpers, utils
    from django.contrib.admin.templatetags import admin_list

    if _original is not None:
        return
    _original = utils.display_for_field
    for module in (utils, helpers, admin_list):
        module.display_for_field = display_for_field


class PlainDecimalInput(forms.NumberInput):
    """A number input that shows 10000, not 10000.0000000000."""

    def format_value(self, value: Any) -> str | None:
        if isinstance(value, Decimal):
            return plain(value)
        return super().format_value(value)


PLAIN_DECIMALS = {models.DecimalField: {"widget": PlainDecimalInput}}
