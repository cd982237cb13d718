"""The one danger level: health and lifecycle state together, the same in Python and SQL."""

from __future__ import annotations

import pytest
from django.utils import timezone

from lifecycle.danger import danger_level_expression, position_danger_level
from lifecycle.models import Position, PositionState
from tradingsite.testing.factories import PositionFactory

HEALTH = ["", "SAFE", "WARNING", "CRITICAL"]

# state → expected level for each health level in HEALTH's order
EXPECTED = {
    "OPEN": ["", "SAFE", "WARNING", "CRITICAL"],
    "WARNING": ["WARNING", "WARNING", "WARNING", "CRITICAL"],
    "CRITICAL": ["CRITICAL", "CRITICAL", "CRITICAL", "CRITICAL"],
    "CLOSING": ["WARNING", "WARNING", "WARNING", "CRITICAL"],
    "CLOSED": ["", "", "", ""],
}


@pytest.mark.parametrize("state", list(EXPECTED))
def test_the_level_is_the_more_severe_of_health_and_state(state):
    assert [position_danger_level(state, health) for health in HEALTH] == EXPECTED[state]


def test_a_held_position_past_open_is_never_safe():
    for state in (PositionState.WARNING, PositionState.CRITICAL, PositionState.CLOSING):
        assert position_danger_level(state, "SAFE") != "SAFE"


def test_the_issue_case_warning_state_scoring_safe_is_warning():
    """Position #4: WARNING three minutes before its forced close, scored SAFE at 70.3."""
    assert position_danger_level("WARNING", "SAFE") == "WARNING"


@pytest.mark.django_db
def test_the_sql_expression_agrees_with_the_rule_for_every_combination(strategy):
    made = {}
    for state in EXPECTED:
        for health in HEALTH:
            position = PositionFactory(strategy=strategy, state=state, danger_level=health,
                                       closed_at=timezone.now() if state == "CLOSED" else None)
            made[position.pk] = (state, health)
    rows = dict(Position.objects.annotate(level=danger_level_expression())
                .values_list("pk", "level"))
    assert {pk: rows[pk] for pk in made} == {
        pk: position_danger_level(state, health) for pk, (state, health) in made.items()}
    assert len(made) == 20


@pytest.fixture
def mixed_book(strategy):
    """Three held positions whose health alone says SAFE, and one unscored OPEN one."""
    return {
        "warning": PositionFactory(strategy=strategy, state="WARNING", danger_level="SAFE",
                                   health_score=70.3),
        "closing": PositionFactory(strategy=strategy, state="CLOSING", danger_level="SAFE",
                                   health_score=81),
        "critical": PositionFactory(strategy=strategy, state="CRITICAL", danger_level="SAFE",
                                    health_score=66),
        "safe": PositionFactory(strategy=strategy, state="OPEN", danger_level="SAFE",
                                health_score=90),
        "unscored": PositionFactory(strategy=strategy, state="OPEN"),
    }


@pytest.mark.django_db
def test_the_api_shows_and_filters_by_the_one_danger_level(viewer_api, mixed_book):
    listed = {p["id"]: (p["danger_level"], p["health_danger_level"])
              for p in viewer_api.get("/api/positions/", {"active": "true"}).json()["results"]}
    by_name = {name: listed[p.pk] for name, p in mixed_book.items()}
    assert by_name == {"warning": ("WARNING", "SAFE"), "closing": ("WARNING", "SAFE"),
                       "critical": ("CRITICAL", "SAFE"), "safe": ("SAFE", "SAFE"),
                       "unscored": ("", "")}
    warning = viewer_api.get("/api/positions/", {"danger_level": "WARNING"}).json()["results"]
    assert sorted(p["id"] for p in warning) == sorted(
        [mixed_book["warning"].pk, mixed_book["closing"].pk])
    health = viewer_api.get("/api/health/position-health", {"danger_level": "SAFE"}).json()
    assert [p["id"] for p in health["results"]] == [mixed_book["safe"].pk]


@pytest.mark.django_db
def test_the_report_counts_equal_the_rows(viewer_api, mixed_book):
    report = viewer_api.get("/api/health/report").json()
    assert report["counts"] == {"SAFE": 1, "WARNING": 2, "CRITICAL": 1, "UNSCORED": 1}
    assert report["positions"] == 5
