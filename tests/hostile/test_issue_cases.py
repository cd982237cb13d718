"""The API cases of issue 14, each with its exact input: a JSON 4xx, and nothing written.

Runs on SQLite and on PostgreSQL (both passes of the suite).
"""

from __future__ import annotations

import json

import pytest

from execution.models import Action, Order
from lifecycle.models import Position
from tests.hostile.conftest import assert_json_4xx, row_counts
from tests.hostile.corpus import LISTS
from tradingsite.testing.factories import PositionFactory

pytestmark = pytest.mark.django_db

JSON_WRITES = ["/api/actions/", "/api/trading/halt/", "/api/execution/orders/place",
               "/api/lifecycle/positions", "/api/lifecycle/positions/{position}/close"]


def post(api, path: str, body: str | bytes, content_type: str = "application/json"):
    return api.generic("POST", path, body, content_type=content_type)


@pytest.mark.parametrize("path", LISTS)
def test_a_limit_of_2_to_the_63_is_a_400_on_every_list(api, world, path):
    response = api.get(f"{path}?limit=9223372036854775808")
    assert assert_json_4xx(response, 400) == {"limit": ["Enter a whole number from 1 to 1000."]}


@pytest.mark.parametrize("path", LISTS)
def test_a_limit_of_100000000_is_a_400_not_every_row(api, world, path):
    response = api.get(f"{path}?limit=100000000")
    assert assert_json_4xx(response, 400) == {"limit": ["Enter a whole number from 1 to 1000."]}


@pytest.mark.parametrize("path", LISTS)
def test_an_offset_beyond_the_bound_is_a_400(api, world, path):
    response = api.get(f"{path}?offset=9223372036854775808")
    assert assert_json_4xx(response, 400) == {
        "offset": ["Enter a whole number from 0 to 1000000000."]}


def test_a_page_of_1000_is_served(api, world):
    response = api.get("/api/positions/?limit=1000&offset=0")
    assert (response.status_code, response.json()["count"]) == (200, 1)


@pytest.mark.parametrize("path", JSON_WRITES)
def test_a_body_of_100000_brackets_is_a_json_413_not_a_recursion_error(api, world, path):
    before = row_counts()
    response = post(api, world.fill(path), "[" * 100_000)
    assert assert_json_4xx(response, 413) == {
        "detail": "The request body is too large (more than 65536 bytes)."}
    assert row_counts() == before


@pytest.mark.parametrize("path", JSON_WRITES)
def test_a_body_nested_deeper_than_the_limit_is_a_json_400(api, world, path):
    response = post(api, world.fill(path), "[" * 60_000)
    assert assert_json_4xx(response, 400) == {
        "detail": "JSON parse error - the body is nested deeper than 8 levels"}


def test_unknown_fields_never_turn_a_limit_order_into_a_market_order(api, world):
    response = post(api, "/api/execution/orders/place", json.dumps({
        "strategy": world.strategy, "symbol": "BTC/USDT:USDT", "side": "buy", "quantity": "1",
        "type": "limit", "limit_price": "0.0001"}))
    assert assert_json_4xx(response, 400) == {"type": ["Unknown field."],
                                              "limit_price": ["Unknown field."]}
    assert Order.objects.count() == 1  # the world's own


def test_position_62_point_9_closes_nothing(api, strategy, staff_user):
    PositionFactory(strategy=strategy, id=62)
    response = post(api, "/api/actions/", '{"position": 62.9}')
    assert assert_json_4xx(response, 400) == {
        "position": ["Enter an object id (a positive whole number)."]}
    assert not Action.objects.exists()


@pytest.mark.parametrize("quantity", ["1_000", "\u0661\u0660\u0660\u0660"])
@pytest.mark.parametrize("path", ["/api/lifecycle/positions", "/api/execution/orders/place"])
def test_quantities_with_a_separator_or_arabic_digits_are_refused(api, world, path, quantity):
    before = row_counts()
    body = {"strategy": world.strategy, "symbol": "BTC/USDT:USDT", "quantity": quantity,
            **({"side": "long", "entry_price": "50000"} if "lifecycle" in path
               else {"side": "buy"})}
    response = post(api, path, json.dumps(body))
    assert assert_json_4xx(response, 400) == {"quantity": [
        "Enter a decimal of ASCII digits: no exponent, digit separator, leading zero or sign "
        "other than a leading minus."]}
    assert row_counts() == before


@pytest.mark.parametrize("value", ["NaN", "Infinity", "-Infinity", "1e3", "1E-7", "0x10"])
def test_nan_infinity_and_exponents_are_refused_as_text(api, world, value):
    response = post(api, "/api/execution/orders/place", json.dumps({
        "strategy": world.strategy, "symbol": "BTC/USDT:USDT", "side": "buy",
        "quantity": value}))
    assert list(assert_json_4xx(response, 400)) == ["quantity"]
    assert Order.objects.count() == 1


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
def test_nan_and_infinity_literals_are_not_json(api, world, literal):
    response = post(api, "/api/execution/orders/place",
                    f'{{"strategy": "{world.strategy}", "symbol": "BTC/USDT:USDT", '
                    f'"side": "buy", "quantity": {literal}}}')
    assert assert_json_4xx(response, 400) == {
        "detail": f"JSON parse error - {literal} is not a number JSON allows"}


def test_a_number_instead_of_a_decimal_string_is_refused(api, world):
    response = post(api, "/api/execution/orders/place", json.dumps({
        "strategy": world.strategy, "symbol": "BTC/USDT:USDT", "side": "buy", "quantity": 1}))
    assert assert_json_4xx(response, 400) == {
        "quantity": ['Send the number as a string of ASCII digits, e.g. "0.5".']}


def test_opened_at_in_year_0001_is_refused(api, world):
    response = post(api, "/api/lifecycle/positions", json.dumps({
        "strategy": world.strategy, "symbol": "BTC/USDT:USDT", "side": "long",
        "quantity": "1", "entry_price": "50000", "opened_at": "0001-01-01T00:00:00Z"}))
    assert assert_json_4xx(response, 400) == {
        "opened_at": ["Must lie after 2000-01-01 and before now + 1 day."]}
    assert Position.objects.count() == 1


def test_a_hand_over_repeating_its_ref_with_another_symbol_side_and_quantity_is_a_409(api,
                                                                                     world):
    first = {"strategy": world.strategy, "symbol": "BTC/USDT:USDT", "side": "long",
             "quantity": "1", "entry_price": "50000", "external_ref": "bot-1"}
    created = post(api, "/api/lifecycle/positions", json.dumps(first))
    same = post(api, "/api/lifecycle/positions", json.dumps(first))
    other = post(api, "/api/lifecycle/positions", json.dumps(
        {**first, "symbol": "ETH/USDT:USDT", "side": "short", "quantity": "3"}))
    assert (created.status_code, same.status_code) == (201, 200)
    assert same.json()["id"] == created.json()["id"]
    body = assert_json_4xx(other, 409)
    assert (body["code"], body["fields"]) == ("request_mismatch", ["quantity", "side", "symbol"])
    assert Position.objects.count() == 2  # the world's and the handed-over one


def test_a_repeated_action_key_with_another_reason_is_a_409(api, world):
    first = {"position": world.position, "idempotency_key": "k-1", "reason": "manual"}
    created = post(api, "/api/actions/", json.dumps(first))
    same = post(api, "/api/actions/", json.dumps(first))
    other = post(api, "/api/actions/", json.dumps({**first, "reason": "risk"}))
    assert (created.status_code, same.status_code) == (201, 200)
    assert same.json()["id"] == created.json()["id"]
    body = assert_json_4xx(other, 409)
    assert (body["code"], body["fields"]) == ("request_mismatch", ["reason"])
    assert Action.objects.count() == 1


def test_multipart_without_a_boundary_is_a_json_415(api, world):
    response = post(api, "/api/actions/", b"position=1", content_type="multipart/form-data")
    assert assert_json_4xx(response, 415) == {
        "detail": 'Unsupported media type "multipart/form-data" in request.'}


def test_a_body_over_2_5_mb_is_a_json_413(api, world):
    before = row_counts()
    response = post(api, "/api/actions/",
                    json.dumps({"position": world.position, "note": "x" * 2_700_000}))
    assert assert_json_4xx(response, 413) == {"detail": "The request body is too large.",
                                              "code": "payload_too_large"}
    assert row_counts() == before


@pytest.mark.parametrize("path", ["/api/nope/", "/api/positions/0/", "/api/positions/abc/",
                                  "/api/positions/9223372036854775808/"])
def test_api_404s_are_json(api, world, path):
    assert_json_4xx(api.get(path), 404)


def test_a_session_post_without_csrf_token_is_a_json_403(client, staff_user, world):
    client.force_login(staff_user)
    client.handler.enforce_csrf_checks = True
    response = client.post("/api/trading/halt/", {"reason": "x"}, content_type="application/json")
    assert assert_json_4xx(response, 403)["detail"].startswith("CSRF Failed")


@pytest.mark.parametrize("method", ["post", "put", "delete"])
def test_dashboard_pages_answer_405_to_writes(client, staff_user, world, method):
    client.force_login(staff_user)
    for path in ("/", f"/positions/{world.position}/"):
        assert getattr(client, method)(path).status_code == 405
