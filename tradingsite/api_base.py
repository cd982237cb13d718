"""Base classes shared by the apps' API serializers."""

from __future__ import annotations

import copy
from typing import Any, ClassVar

from rest_framework import serializers
from rest_framework.fields import Field


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

    # Built once per class: a model serializer introspects its model on every
    # instantiation (about a millisecond for forty fields, on every API answer).
    _built_fields: ClassVar[dict[type, dict[str, Field]]] = {}

    def get_fields(self) -> dict[str, Field]:
        """Read-only fields depend on the class alone: build them once, hand out copies."""
        built = ReadModelSerializer._built_fields.get(type(self))
        if built is None:
            built = ReadModelSerializer._built_fields[type(self)] = super().get_fields()
        return copy.deepcopy(built)
