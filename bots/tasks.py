"""Bots Celery tasks: thin entry points over ``bots.sync``."""

from __future__ import annotations

import logging

from celery import shared_task

from bots.models import BotConnection
from bots.sync import bot_connection_sync, bot_connections_due_for_sync
from tradingsite.schedule import PeriodicSpec

log = logging.getLogger(__name__)

PERIODIC_TASKS = [
    PeriodicSpec("bots: sync bot connections", "bots.tasks.sync_due_bots", 5,
                 "Send a sync to each bot connection due (every bots.botSyncSeconds): adopt "
                 "trades whose webhook was lost, close positions the bot no longer holds."),
]


@shared_task(acks_late=True)
def sync_due_bots() -> int:
    """Schedule one ``sync_bot`` per connection whose sync is due."""
    due = bot_connections_due_for_sync()
    for connection_id in due:
        sync_bot.delay(connection_id)
    return len(due)


@shared_task(acks_late=True)
def sync_bot(connection_id: int) -> dict:
    connection = BotConnection.objects.select_related("strategy").filter(pk=connection_id).first()
    if connection is None:
        log.warning("sync_bot: connection %s does not exist", connection_id)
        return {}
    result = bot_connection_sync(connection)
    return {"adopted": result.adopted, "closed": result.closed, "missing": result.missing,
            "errors": result.errors}
