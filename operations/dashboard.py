"""What the dashboard pages start from, in the API's own JSON shapes.

The browser renders rows from one shape whether they come from this first paint,
from the API or from a live event, so the page and the API never disagree.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.urls import reverse
from django.utils import timezone

from analytics.metrics import METRIC_DEFINITIONS
from analytics.periods import Period
from execution.api import ActionSerializer, OrderSerializer
from execution.models import ExchangeAccount, OrderStatus
from guard.api import GuardOverviewSerializer
from guard.selectors import guard_overview
from lifecycle.models import Strategy
from operations import api, selectors
from risk.serializers import RiskAlertSerializer
from tradingsite.domain import CloseReason
from tradingsite.services import halt_payload, platform_state

PERIODS = [period.value for period in Period]


_ID_MARK = 987654321


def _url_template(name: str) -> str:
    """A route with one id as ``…/{id}/…``, for the scripts to fill in."""
    return reverse(name, args=[_ID_MARK]).replace(str(_ID_MARK), "{id}")


def endpoints() -> dict[str, str]:
    """URLs the dashboard's scripts call (resolved here so routes can move)."""
    return {
        "positions": reverse("position-list"),
        "actions": reverse("action-request"),
        "halt": reverse("trading-halt"),
        "alerts": reverse("risk-alerts"),
        "acknowledge": _url_template("risk-alert-acknowledge"),
        "cancel_order": _url_template("execution-order-cancel"),
        "resume": reverse("trading-resume"),
        "performance": reverse("analytics-performance"),
        "equity": reverse("analytics-equity"),
        "execution": reverse("analytics-execution"),
        "guard": reverse("guard-overview"),
        "guard_state": reverse("guard-state"),
        "trades": reverse("analytics-trades"),
        "trades_export": reverse("analytics-trades-export"),
        "profit": reverse("analytics-profit"),
        "strategies": reverse("analytics-strategies"),
        "accounts": reverse("analytics-accounts"),
        "candles": _url_template("position-candles"),
        "position_health": _url_template("position-health"),
        "live_accounts": reverse("execution-accounts"),
        "exposure": reverse("analytics-exposure"),
        "live": "/ws/health/",
    }


def currencies() -> dict[str, Any]:
    """Each account's quote currency, and the one all share ('' when they differ)."""
    by_account = dict(ExchangeAccount.objects.values_list("name", "quote_currency"))
    codes = set(by_account.values())
    return {"by_account": by_account, "common": codes.pop() if len(codes) == 1 else ""}


def _user(user: AbstractBaseUser) -> dict[str, Any]:
    return {"username": user.get_username(), "is_staff": bool(getattr(user, "is_staff", False))}


def dashboard_state(user: AbstractBaseUser) -> dict[str, Any]:
    """Open positions, recent alerts and the halt flag, as the API would return them."""
    context = {"now": timezone.now()}
    return {
        "now": context["now"],
        "user": _user(user),
        "endpoints": endpoints(),
        "periods": PERIODS,
        "currencies": currencies(),
        "strategy_names": list(Strategy.objects.order_by("name").values_list("name", flat=True)),
        "exit_reasons": CloseReason.values,
        "metric_definitions": METRIC_DEFINITIONS,
        "positions": api.PositionOverviewSerializer(selectors.open_positions(), many=True,
                                                    context=context).data,
        "alerts": RiskAlertSerializer(selectors.recent_alerts(), many=True).data,
        "halt": api.TradingHaltSerializer(halt_payload(platform_state())).data,
        "guard": GuardOverviewSerializer(guard_overview()).data,
    }


def position_page_state(user: AbstractBaseUser, position_id: int) -> dict[str, Any]:
    """One position with its health history, orders and actions; ``Position.DoesNotExist``."""
    position = selectors.position_detail(position_id)
    context = {"now": timezone.now()}
    risk = position.strategy.effective_config().risk_monitoring
    return {
        "now": context["now"],
        "user": _user(user),
        "endpoints": endpoints(),
        "position": api.PositionDetailSerializer(position, context=context).data,
        "health_history": api.HealthSnapshotSerializer(
            selectors.position_health_history(position), many=True).data,
        "orders": OrderSerializer(selectors.position_orders(position), many=True).data,
        "final_order_statuses": OrderStatus.final(),
        "actions": ActionSerializer(selectors.position_actions(position), many=True).data,
        "halt": api.TradingHaltSerializer(halt_payload(platform_state())).data,
        "thresholds": {"warning": risk.warning_score_threshold,
                       "critical": risk.health_score_threshold},
        "candles": api.PositionCandlesSerializer(api.position_candles_payload(position)).data,
    }
