"""Filters of the trade list API."""

from __future__ import annotations

import django_filters
from django.db.models import QuerySet
from django.utils import timezone

from analytics.periods import Period, period_window
from lifecycle.models import PositionSide, Trade
from tradingsite.api_input import ChoiceFilter, DecimalFilter, StrictFilterSet, TimeFilter
from tradingsite.domain import CloseReason


class TradeFilter(StrictFilterSet):
    strategy = django_filters.CharFilter(field_name="strategy__name", help_text="Strategy name.")
    symbol = django_filters.CharFilter()
    side = ChoiceFilter(choices=PositionSide.choices)
    exit_reason = ChoiceFilter(choices=CloseReason.choices)
    period = ChoiceFilter(
        choices=[(p.value, p.value) for p in Period], method="filter_period",
        help_text="Calendar period of closed_at in the configured time zone.")
    closed_after = TimeFilter(field_name="closed_at", lookup_expr="gte")
    closed_before = TimeFilter(field_name="closed_at", lookup_expr="lt")
    min_pnl = DecimalFilter(field_name="pnl", lookup_expr="gte")
    max_pnl = DecimalFilter(field_name="pnl", lookup_expr="lte")

    class Meta:
        model = Trade
        fields = ["strategy", "symbol", "side", "exit_reason"]

    def filter_period(self, queryset: QuerySet[Trade], name: str, value: str) -> QuerySet[Trade]:
        window = period_window(value, timezone.now(), timezone.get_default_timezone())
        if window.start is not None:
            queryset = queryset.filter(closed_at__gte=window.start)
        if window.end is not None:
            queryset = queryset.filter(closed_at__lt=window.end)
        return queryset
