"""Fixtures of the lifecycle tests: a fixed clock origin and a recorder of dispatched actions."""

from datetime import UTC, datetime

import pytest

T0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)


@pytest.fixture
def dispatched(monkeypatch):
    """Action ids handed to the workers (directly or through the fan-out task)."""
    from execution.tasks import dispatch_actions, process_action

    sent: list[int] = []
    monkeypatch.setattr(process_action, "delay", lambda action_id: sent.append(action_id))
    monkeypatch.setattr(dispatch_actions, "apply_async",
                        lambda args, **kwargs: sent.extend(args[0]))
    return sent
