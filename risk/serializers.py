"""Shapes of the risk monitor's data, shared by the API and the live push."""

from __future__ import annotations

from typing import Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from risk.models import RiskAlert
from risk.scoring import COMPONENTS


class RiskAlertSerializer(serializers.ModelSerializer):
    symbol = serializers.SerializerMethodField()
    is_open = serializers.BooleanField(read_only=True)

    class Meta:
        model = RiskAlert
        fields = ["id", "position", "symbol", "subject", "severity", "kind", "message",
                  "first_seen", "last_seen", "occurrences", "resolved_at", "is_open",
                  "acknowledged", "acknowledged_at", "acknowledged_by"]
        read_only_fields = fields

    @extend_schema_field(OpenApiTypes.STR)
    def get_symbol(self, alert: RiskAlert) -> str | None:
        """The position's symbol, annotated by the selectors (no query per alert)."""
        return getattr(alert, "symbol", None)


def alert_payload(alert: RiskAlert) -> dict[str, Any]:
    return dict(RiskAlertSerializer(alert).data)


def alert_payloads(alerts: list[RiskAlert]) -> list[dict[str, Any]]:
    """Payloads of many alerts (the serializer's fields are built once)."""
    return [dict(item) for item in RiskAlertSerializer(alerts, many=True).data]


class ComponentsSerializer(serializers.Serializer):
    time_at_risk = serializers.FloatField()
    drawdown = serializers.FloatField()
    volume = serializers.FloatField()
    volatility = serializers.FloatField()
    profitability = serializers.FloatField()


class PositionHealthSerializer(serializers.Serializer):
    """A position's latest health (the items of ``health.updated`` have the same shape)."""

    id = serializers.IntegerField()
    strategy = serializers.CharField()
    symbol = serializers.CharField()
    side = serializers.CharField()
    state = serializers.CharField()
    score = serializers.FloatField(allow_null=True, help_text="Health score 0–100; null before "
                                   "the first check.")
    components = ComponentsSerializer(allow_null=True)
    danger_level = serializers.CharField(
        help_text="The one danger level: the more severe of the health level and the lifecycle "
                  "state (WARNING, CLOSING: at least WARNING; CRITICAL: CRITICAL); '' for an "
                  "OPEN position before its first check.")
    health_danger_level = serializers.CharField(
        help_text="The level of the health score alone: SAFE, WARNING, CRITICAL ('' before the "
                  "first check).")
    minutes_to_timeout = serializers.FloatField()
    last_price = serializers.DecimalField(max_digits=28, decimal_places=10, allow_null=True)
    unrealised_pnl = serializers.FloatField(allow_null=True, help_text="Quote currency, after "
                                            "the assumed entry and exit fee.")
    data_complete = serializers.BooleanField()
    missing = serializers.ListField(child=serializers.ChoiceField(choices=COMPONENTS))
    checked_at = serializers.DateTimeField(allow_null=True)


class LevelCountsSerializer(serializers.Serializer):
    SAFE = serializers.IntegerField()
    WARNING = serializers.IntegerField()
    CRITICAL = serializers.IntegerField()
    UNSCORED = serializers.IntegerField()


class StrategyCheckSerializer(serializers.Serializer):
    strategy = serializers.CharField()
    last_checked_at = serializers.DateTimeField(allow_null=True)
    positions_checked = serializers.IntegerField()
    duration_ms = serializers.IntegerField(allow_null=True)


class HealthReportSerializer(serializers.Serializer):
    generated_at = serializers.DateTimeField()
    positions = serializers.IntegerField()
    counts = LevelCountsSerializer()
    worst_positions = PositionHealthSerializer(many=True)
    open_alerts = RiskAlertSerializer(many=True)
    checks = StrategyCheckSerializer(many=True)
