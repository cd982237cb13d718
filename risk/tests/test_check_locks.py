"""What the risk check locks while it scores (PostgreSQL): its check rows, not the strategies.

A strategy row locked FOR UPDATE blocks every foreign-key check on it until the
check commits; the timeout pass needs one at its commit and deadlocked with the
risk check waiting on its positions.
"""

import threading

import pytest
from django.db import connection, transaction

from risk.selectors import lock_strategy_checks


def _key_share_without_waiting(strategy_id: int) -> str:
    """Take the lock a foreign-key check takes, from another connection, without waiting."""
    outcome: list[str] = []

    def other_worker() -> None:
        try:
            with transaction.atomic(), connection.cursor() as cursor:
                cursor.execute("SELECT 1 FROM lifecycle_strategy WHERE id = %s "
                               "FOR KEY SHARE NOWAIT", [strategy_id])
            outcome.append("free")
        except Exception as exc:  # LockNotAvailable
            outcome.append(type(exc).__name__)
        finally:
            connection.close()

    thread = threading.Thread(target=other_worker)
    thread.start()
    thread.join(timeout=30)
    return outcome[0]


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_claiming_a_strategys_check_leaves_the_strategy_row_free(strategy):
    with transaction.atomic():
        assert list(lock_strategy_checks([strategy.pk])) == [strategy.pk]
        assert _key_share_without_waiting(strategy.pk) == "free"
