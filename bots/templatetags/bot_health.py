"""``{% bot_connections_panel %}``: the dashboard's panel of bot connections.

A template tag, so the dashboard (below this app) names it only in its template.
"""

from __future__ import annotations

from typing import Any

from django import template

from bots.selectors import bot_connections_health

register = template.Library()


@register.inclusion_tag("bots/_connections.html")
def bot_connections_panel() -> dict[str, Any]:
    return {"health": bot_connections_health()}
