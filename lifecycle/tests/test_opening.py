"""Opening positions: entry fills, hand-over by an external bot, refused input."""

import threading
from decimal import Decimal

import pytest
from django.db import connection

from lifecycle.models import Position, PositionEvent, PositionFill
from lifecycle.services import position_hand_over, position_open
from lifecycle.tests.conftest import T0

pytestmark = pytest.mark.django_db

ENTRY = {"symbol": "XRP/USDT:USDT", "side": "long", "quantity": Decimal("100"),
         "entry_price": Decimal("0.61")}


def test_a_hand_over_is_idempotent_on_strategy_and_external_ref(strategy):
    first, created = position_hand_over(strategy=strategy, external_ref="bot-7", opened_at=T0,
                                        actor="bot", **ENTRY)
    again, created_again = position_hand_over(strategy=strategy, external_ref="bot-7",
                                              actor="bot", **ENTRY)
    assert (created, created_again, first.pk) == (True, False, again.pk)
    assert (first.source, first.external_ref, first.opened_at) == ("api", "bot-7", T0)
    assert PositionFill.objects.get().fill_key == f"handover:{strategy.pk}:bot-7"
    assert list(PositionEvent.objects.values_list("kind", "actor", "reason")) == [
        ("opened", "bot", "opened from API hand-over")]


@pytest.mark.parametrize(("field", "value", "message"), [
    ("side", "up", "side must be one of"),
    ("source", "telepathy", "source must be one of"),
    ("quantity", Decimal("0"), "must be positive"),
    ("entry_price", Decimal("-1"), "must be positive"),
    ("entry_fee", Decimal("-0.1"), "must not be negative"),
])
def test_impossible_entries_are_refused(strategy, field, value, message):
    with pytest.raises(ValueError, match=message):
        position_open(strategy=strategy, **{**ENTRY, field: value})
    assert not Position.objects.exists()


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_workers_applying_the_same_entry_fill_open_one_position(strategy):
    barrier = threading.Barrier(2)
    opened, errors = [], []

    def worker() -> None:
        try:
            barrier.wait(timeout=30)
            opened.append(position_open(strategy=strategy, fill_key="entry-9:100", **ENTRY).pk)
        except Exception as exc:  # reported by the assertion below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    assert len(set(opened)) == 1 and Position.objects.count() == 1
    assert PositionEvent.objects.filter(kind="opened").count() == 1
