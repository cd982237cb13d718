"""Platform-level tasks."""

from __future__ import annotations

from celery import shared_task


@shared_task(name="tradingsite.tasks.ping", ignore_result=True)
def ping(token: str) -> str:
    """Echo ``token``: proves that a message went through the broker and a worker ran it.

    ``runplatform`` sends one at start-up and waits for its own worker to answer.
    """
    return token
