"""The close-executor seam: the pipeline closes, unless the position's owner registered."""

import pytest

from lifecycle import close_executors
from lifecycle.close_executors import close_executor_for, register_close_executor
from lifecycle.models import Position, PositionSource


@pytest.fixture
def registry(monkeypatch):
    """An empty registry for the test (the apps' own registrations are put back after)."""
    monkeypatch.setattr(close_executors, "_executors", {})


def owner_closes(action, position) -> bool:
    return True


def test_without_a_registered_executor_the_pipeline_closes(registry):
    for source in PositionSource.values:
        assert close_executor_for(Position(source=source)) is None


def test_a_registered_executor_closes_its_sources_positions_only(registry):
    register_close_executor(PositionSource.BOT, owner_closes)
    assert close_executor_for(Position(source=PositionSource.BOT)) is owner_closes
    assert close_executor_for(Position(source=PositionSource.API)) is None


def test_one_executor_per_source_and_only_known_sources(registry):
    register_close_executor(PositionSource.BOT, owner_closes)
    register_close_executor(PositionSource.BOT, owner_closes)  # the same again: a no-op
    with pytest.raises(ValueError, match="already close through"):
        register_close_executor(PositionSource.BOT, lambda action, position: True)
    with pytest.raises(ValueError, match="source must be one of"):
        register_close_executor("robot", owner_closes)
