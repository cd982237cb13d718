"""Base classes shared by the apps' API serializers."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers


class ReadModelSerializer(serializers.ModelSerializer):
    """A model serializer for read-only output whose blank choice fields stay valid.

    DRF drops ``allow_blank`` from read-only fields, so the OpenAPI schema would
    promise an enum value where the model stores "" (no danger level yet, no close
    reason): a client validating responses against the schema would reject them.
    """

    def include_extra_kwargs(self, kwargs: dict[str, Any], extra_kwargs: dict[str, Any]
                             ) -> dict[str, Any]:
        blank_choice = "choices" in kwargs and kwargs.get("allow_blank", False)
        kwargs = super().include_extra_kwargs(kwargs, extra_kwargs)
        if blank_choice:
            kwargs["allow_blank"] = True
        return kwargs
