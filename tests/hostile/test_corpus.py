"""Each request of the hand-written corpus gets a JSON 4xx naming what is wrong, and
changes nothing: the row count of every table is the same before and after.

Runs on SQLite and on PostgreSQL (both passes). ``test_the_valid_requests_are_accepted``
keeps the corpus honest: each case differs from an accepted request in one place.
"""

from __future__ import annotations

import pytest
from django.db import transaction

from tests.hostile.conftest import assert_json_4xx, row_counts
from tests.hostile.corpus import CORPUS, GROUPS, VALID, Hostile, render

pytestmark = pytest.mark.django_db


def send(api, world, case: Hostile):
    body = world.fill(case.body) if isinstance(case.body, str) else case.body
    kwargs = {} if case.content_type is None else {"content_type": case.content_type}
    return api.generic(case.method, world.fill(case.path), body or b"", **kwargs)


def test_the_corpus_holds_at_least_500_distinct_bad_requests():
    assert len(CORPUS) >= 500
    assert len({case.id for case in CORPUS}) == len(CORPUS)


@pytest.mark.parametrize("path", list(VALID))
def test_the_valid_requests_are_accepted(api, world, path):
    response = api.post(world.fill(path), world.fill(render(VALID[path])),
                        content_type="application/json")
    assert response.status_code in (200, 201, 202), response.content


def problems(api, world, case: Hostile) -> str | None:
    """What is wrong with the answer to ``case`` (None: a JSON 4xx naming it, nothing changed).

    The request runs in a savepoint rolled back afterwards: one case never sees another's.
    """
    before = row_counts()
    try:
        with transaction.atomic():
            response = send(api, world, case)
            after = row_counts()
            raise _RolledBack
    except _RolledBack:
        pass
    try:
        body = assert_json_4xx(response, *case.statuses)
        for name in case.names:
            assert name in body or name.lower() in str(body.get("detail", "")).lower(), (
                f"does not name {name!r}: {body}")
    except AssertionError as exc:
        return f"{case.id}: {exc}"
    return None if after == before else f"{case.id}: rows changed"


class _RolledBack(Exception):
    pass


@pytest.mark.parametrize("group", list(GROUPS))
def test_bad_requests_get_a_json_4xx_naming_what_is_wrong_and_change_nothing(api, world, group):
    found = [problem for case in GROUPS[group] if (problem := problems(api, world, case))]
    assert found == []
