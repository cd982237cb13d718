"""The platform's promises checked from a test: after a scenario, and by the fault harness.

An observer's reads must not change the scenario: every paper exchange of the process and
every running Bybit emulator hold their scripted faults while the checks read them.
Positions a test handed over (or built with a factory) were never opened on the test's
exchange, so that market's net position cannot be compared there: those markets are
left out of ``net_positions_match`` and said so.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db.models import Exists, OuterRef
from django.utils import timezone

from execution.exchanges.paper import paper_exchanges
from execution.models import Order, OrderPurpose
from lifecycle.models import Position
from operations.invariants import (
    GRACE,
    NET_POSITIONS_MATCH,
    Violation,
    check_read,
    read_exchanges,
    violations_of,
)


@contextmanager
def faults_held() -> Iterator[None]:
    """No scripted exchange fault fires inside (paper exchanges and Bybit emulators)."""
    from execution.tests.bybit_emulator import BybitEmulator

    with ExitStack() as stack:
        for exchange in paper_exchanges():
            stack.enter_context(exchange.faults_held())
        for emulator in list(BybitEmulator.running):
            stack.enter_context(emulator.faults_held())
        yield


def unbacked_markets() -> set[tuple[str, str]]:
    """(account name, symbol) holding a position no entry fill on that account opened."""
    entries = Order.objects.filter(position=OuterRef("pk"), purpose=OrderPurpose.ENTRY,
                                   filled_quantity__gt=0)
    return set(Position.objects.exclude(Exists(entries)).values_list(
        "strategy__account__name", "symbol"))


@dataclass
class ScenarioCheck:
    """What the check after one scenario compared, and what it found broken."""

    violations: list[Violation] = field(default_factory=list)
    accounts_read: list[str] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)
    markets_not_compared: list[tuple[str, str]] = field(default_factory=list)

    @property
    def compared_with_an_exchange(self) -> bool:
        return bool(self.accounts_read)


def check_promises(*, now: datetime | None = None, grace: timedelta = GRACE) -> ScenarioCheck:
    """Every promise, with faults held; net positions only where the exchange opened them."""
    now = now or timezone.now()
    with faults_held():
        views = read_exchanges(now=now)
        result = check_read(views, now=now, grace=grace)
    skip = unbacked_markets()
    check = ScenarioCheck(
        accounts_read=[view.account.name for view in views if view.read],
        unreadable=[f"{view.account.name}: {view.unreadable}" for view in views
                    if view.unreadable])
    for violation in violations_of(result):
        market = (violation.evidence.get("account"), violation.evidence.get("symbol"))
        if violation.invariant == NET_POSITIONS_MATCH and market in skip:
            check.markets_not_compared.append(market)
            continue
        check.violations.append(violation)
    return check
