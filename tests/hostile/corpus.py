"""The hand-written corpus of bad API input: each request alone must get a JSON 4xx.

Every write endpoint gets, field by field, values of the wrong type, outside the
field's precision or range, spelled with non-ASCII digits, separators, exponents,
NaN and Infinity; unknown fields; bodies of the wrong shape, size, depth, encoding
and content type. Every list endpoint gets bad ``limit``/``offset`` values and
unknown parameters, and each filter bad values. A request differs from a valid one
(``VALID``) in one place only, so the answer must name that place.

JSON values are written as raw JSON text, so that ``62.9``, ``NaN``, ``1e400`` or a
lone surrogate reach the server exactly as an attacker would send them. ``{strategy}``,
``{position}``, ``{order}`` and ``{alert}`` are filled with the test world's own.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

JSON = "application/json"


@dataclass(frozen=True)
class Hostile:
    """One bad request and what its answer must name (a body key or words of ``detail``)."""

    id: str
    group: str
    method: str
    path: str
    body: str | bytes | None = None
    content_type: str | None = JSON
    names: tuple[str, ...] = ()
    statuses: tuple[int, ...] = (400,)


def render(fields: dict[str, str]) -> str:
    """A JSON object from raw JSON values (kept exactly as written)."""
    return "{" + ", ".join(f"{json.dumps(name)}: {raw}" for name, raw in fields.items()) + "}"


# --- valid requests (each case breaks one thing in one of these) ------------------------

ACTIONS = "/api/actions/"
HALT = "/api/trading/halt/"
RESUME = "/api/trading/resume/"
PLACE = "/api/execution/orders/place"
CANCEL = "/api/execution/orders/{order}/cancel"
HAND_OVER = "/api/lifecycle/positions"
CLOSE = "/api/lifecycle/positions/{position}/close"
ACKNOWLEDGE = "/api/health/alerts/{alert}/acknowledge"
BOTS = "/api/bots/connections"

VALID: dict[str, dict[str, str]] = {
    ACTIONS: {"kind": '"emergency_close"', "position": "{position}", "reason": '"manual"',
              "idempotency_key": '"hostile-1"', "note": '"hostile"'},
    HALT: {"reason": '"maintenance"'},
    RESUME: {},
    PLACE: {"strategy": '"{strategy}"', "symbol": '"BTC/USDT:USDT"', "side": '"buy"',
            "quantity": '"0.5"', "order_type": '"limit"', "price": '"49000"',
            "expected_price": '"50000"', "idempotency_key": '"hostile-2"'},
    CANCEL: {},
    HAND_OVER: {"strategy": '"{strategy}"', "symbol": '"BTC/USDT:USDT"', "side": '"long"',
                "quantity": '"0.5"', "entry_price": '"50000"', "entry_fee": '"1.5"',
                "opened_at": '"2026-01-01T00:00:00Z"', "external_ref": '"hostile-3"'},
    CLOSE: {"note": '"hostile"'},
    ACKNOWLEDGE: {},
    BOTS: {"name": '"hostile-bot"', "strategy": '"{strategy}"',
           "api_url": '"http://127.0.0.1:8080"', "username_env": '"BOT_HOSTILE_USER"',
           "password_env": '"BOT_HOSTILE_PASSWORD"', "enabled": "true"},
}
WRITES = list(VALID)

# --- bad values by kind of field ------------------------------------------------------

NOT_TEXT = ["123", "1.5", "true", "false", "[]", "{}", '["x"]', '{"x": 1}']
BAD_ID = ["62.9", "62.0", "1e3", "1E2", '"62"', '"{position}"', "true", "false", "null", "-1",
          "0", "9223372036854775808", "1" + "0" * 30, "9" * 5000, "[]", "{}", '"\u0666\u0662"', "NaN",
          "-0", "[{position}]"]
BAD_CHOICE = ['"LONG"', '"Buy"', '"buy "', '" buy"', '"sideways"', '""', "1", "0", "true",
              "null", "[]", "{}", '["buy"]', '"cancel_order"', '"\u0628\u064a\u0639"']
BAD_DECIMAL = [
    "1", "0.5", "1e3", "NaN", "Infinity", "-Infinity", "1e400", "true", "[]", "{}",
    '"1_000"', '"\u0661\u0660\u0660\u0660"', '"\u06f1\u06f0\u06f0\u06f0"', '"\uff11\uff10"',
    '"\U0001d7cf"', '"\u0967"', '"NaN"', '"nan"', '"sNaN"', '"Infinity"', '"-Infinity"',
    '"inf"', '"1e3"', '"1E-7"', '"1e400"', '"0x10"', '" 1"', '"1 "', '"+1"', '"1."', '".5"',
    '"01"', '"-1"', '"-0.5"', '""', '"1,5"', '"1.5.5"', '"0.0000000000001"',
    '"99999999999999999999"', '"1/2"', '"\u0661.\u0665"', '"1\\u0000"', '"\u22121"',
]
ZEROS = ['"0"', '"0.0"', '"-0"', '"0.000"']  # bad where positive, "-0" bad where not negative
BAD_TEXT_VISIBLE = ['""', '"   "', '"\\t\\n"', '"\\u00a0"']
BAD_TEXT = [*NOT_TEXT, "null", '"a\\u0000b"', '"\\ud800"', '"x\\udfff"']
BAD_TIME = ['"0001-01-01T00:00:00Z"', '"0001-01-01T00:00:00+14:00"', '"1999-12-31T23:59:59Z"',
            '"2000-01-01T00:00:00Z"', '"9999-12-31T23:59:59Z"', '"2999-01-01T00:00:00Z"',
            '"2026-02-30T00:00:00Z"', '"2026-13-01T00:00:00Z"', '"2026-01-01T25:00:00Z"',
            '"2026-01-01T00:00:00+25:00"', '"yesterday"', '""', "1700000000", "null", "true",
            "[]", '"\u0662\u0660\u0662\u0666-01-01T00:00:00Z"']
BAD_SLUG = ['"nope"', '""', "123", "true", "null", "[]", "{}", '"{strategy} "']
UNKNOWN_FIELDS = [("limit_price", '"0.0001"'), ("type", '"limit"'), ("client_order_id", '"x"'),
                  ("__proto__", "{}"), ("Quantity", '"1"'), ("", "1"), ("note ", '"x"'),
                  ("position_id", "{position}")]


def _text(max_length: int, *, visible: bool = False) -> list[str]:
    return [*BAD_TEXT, json.dumps("x" * (max_length + 1)), *(BAD_TEXT_VISIBLE if visible else [])]


def _decimal(*, zero_ok: bool = False) -> list[str]:
    return BAD_DECIMAL + (['"-0"'] if zero_ok else ZEROS)


FIELDS: dict[str, dict[str, list[str]]] = {
    ACTIONS: {"kind": BAD_CHOICE, "position": BAD_ID, "reason": BAD_CHOICE,
              "idempotency_key": _text(128, visible=True), "note": _text(200)},
    HALT: {"reason": _text(255, visible=True)},
    PLACE: {"strategy": BAD_SLUG, "symbol": _text(64, visible=True), "side": BAD_CHOICE,
            "quantity": [*_decimal(), "null"], "order_type": BAD_CHOICE,
            "price": [*_decimal(), "null"], "expected_price": _decimal(),
            "idempotency_key": _text(128, visible=True)},
    HAND_OVER: {"strategy": BAD_SLUG, "symbol": _text(64, visible=True), "side": BAD_CHOICE,
                "quantity": [*_decimal(), "null"], "entry_price": [*_decimal(), "null"],
                "entry_fee": [*_decimal(zero_ok=True), "null"], "opened_at": BAD_TIME,
                "external_ref": _text(128)},
    CLOSE: {"note": _text(200)},
    BOTS: {"name": [*_text(40), '"Not A Slug"', '"bot/1"', '"bot\\u00e9"'],
           "strategy": BAD_SLUG,
           "api_url": [*_text(200), '"http://bot.example.com"', '"ftp://127.0.0.1"',
                       '"https://user:pw@bot.example.com"', '"http://127.0.0.2:8080"',
                       '"https://127.0.0.1:8080/a b"', '"javascript:alert(1)"'],
           "username_env": [*_text(128), '"DATABASE_URL"', '"EXCHANGE_BYBIT_KEY"', '"BOT_"',
                            '"bot_user"'],
           "password_env": [*_text(128), '"SECRET_KEY"', '"BOT_P W"'],
           "enabled": ["1", "0", '"true"', "null", "[]"]},
}

# --- whole bodies -----------------------------------------------------------------------

BAD_BODIES: list[tuple[str, str | bytes, str]] = [
    ("array", "[]", "non_field_errors"),
    ("string", '"AAA"', "non_field_errors"),
    ("number", "1", "non_field_errors"),
    ("null", "null", "non_field_errors"),
    ("true", "true", "non_field_errors"),
    ("nested-60000", "[" * 60_000, "nested"),
    ("nested-objects", '{"a": ' * 200 + "1" + "}" * 200, "nested"),
    ("nested-in-field", '{"note": ' + "[" * 20 + '"x"' + "]" * 20 + "}", "nested"),
    ("repeated-key", '{"note": "a", "note": "b"}', "given twice"),
    ("nan-literal", '{"note": NaN}', "NaN"),
    ("infinity-literal", '{"note": -Infinity}', "Infinity"),
    ("truncated", '{"note": "x"', "JSON parse error"),
    ("trailing", '{"note": "x"} {}', "JSON parse error"),
    ("bom", "\ufeff{}", "JSON parse error"),
    ("not-utf8", b'{"note": "\xff\xfe"}', "UTF-8"),
    ("utf16", '{"note": "x"}'.encode("utf-16"), "UTF-8"),
    ("lone-surrogate", '{"note": "\\ud800"}', "surrogate"),
    ("single-quotes", "{'note': 'x'}", "JSON parse error"),
    ("comment", '{"note": "x" /* hi */}', "JSON parse error"),
]
BAD_CONTENT_TYPES = ["text/plain", "multipart/form-data", "application/x-www-form-urlencoded",
                     "application/xml", "application/json-patch+json", "image/png"]

# --- lists and reads --------------------------------------------------------------------

LISTS = ["/api/positions/", "/api/strategies/", "/api/execution/orders", "/api/execution/actions",
         "/api/bots/connections",
         "/api/health/alerts", "/api/health/position-health", "/api/analytics/trades",
         "/api/lifecycle/tracked-positions", "/api/lifecycle/timeouts"]
BAD_LIMIT = ["9223372036854775808", "9223372036854775807", "18446744073709551616",
             "1" + "0" * 40, "9" * 5000, "100000000", "1001", "0", "-1", "1.5", "1e3", "abc", "",
             "\u0661\u0660", "+10", "0x10", "10%20", "NaN"]
BAD_OFFSET = ["-1", "1e3", "1000000001", "9223372036854775808", "9" * 5000, "abc", "", "1.0",
              "\u0663", "+1"]
UNKNOWN_PARAMS = ["foo=1", "format=api", "page=2", "limit_price=1", "LIMIT=5"]
FILTERS: dict[str, dict[str, list[str]]] = {
    "/api/positions/": {"active": ["yes", "1", "True", ""], "state": ["BOGUS", "open"],
                        "side": ["LONG", ""], "danger_level": ["safe", ""],
                        "opened_after": ["garbage", "0001-01-01T00:00:00%2B14:00", ""],
                        "ordering": ["password", "-", "opened_at,symbol", "id", ""]},
    "/api/strategies/": {"enabled": ["maybe", "0", ""], "ordering": ["account", "-id"]},
    "/api/execution/orders": {"active": ["yes", "1", ""], "status": ["bogus", ""],
                              "purpose": ["ENTRY"], "ordering": ["id"]},
    "/api/execution/actions": {"state": ["bogus", ""], "kind": ["explode"]},
    "/api/health/alerts": {"position": ["62.9", "-1", "0", "9223372036854775808", "9" * 5000,
                                        "abc", ""],
                           "open": ["2", "yes", ""], "acknowledged": ["no"],
                           "severity": ["loud"], "since": ["garbage", "9999-99-99"]},
    "/api/health/position-health": {"danger_level": ["DEADLY"], "state": ["CLOSED"]},
    "/api/analytics/trades": {"min_pnl": ["1_000", "NaN", "1e3", "\u0661\u0662", "Infinity",
                                          "1.00000000001", ""],
                              "max_pnl": ["-Infinity", "0x1"], "period": ["week", "YEAR"],
                              "closed_after": ["garbage"], "side": ["up"],
                              "ordering": ["pnl,fees", "strategy"]},
    "/api/lifecycle/tracked-positions": {"state": ["CLOSED", "open"], "symbol": [""]},
    "/api/health/report": {"worst": ["0", "101", "1.5", "abc", "", "1e1", "\u0665", "9" * 5000]},
    "/api/analytics/performance": {"top": ["-1", "101", "1.0", "", "1" * 5000], "period": ["week", "YEAR"],
                                   "fresh": ["yes", "1"], "start": ["garbage", ""],
                                   "strategy": ["no-such-strategy"], "exit_reason": ["boom"]},
    "/api/analytics/equity": {"points": ["9", "5001", "1e3"], "resolution": ["hour"]},
    "/api/analytics/execution": {"period": ["YEAR"], "end": ["garbage"]},
}
BAD_PATHS = ["/api/positions/9223372036854775808/", "/api/positions/0/", "/api/positions/-1/",
             "/api/positions/abc/", "/api/positions/1.5/", "/api/positions/{position}.0/",
             "/api/positions/\u0661/", "/api/strategies/99999999999999999999/",
             "/api/execution/orders/99999999999999999999", "/api/execution/orders/0",
             "/api/health/alerts/0", "/api/nope", "/api/positions/{position}/nope/",
             "/api/lifecycle/positions/9223372036854775808/close"]
BAD_METHODS = [("DELETE", "/api/positions/{position}/"), ("PUT", HALT), ("PATCH", ACTIONS),
               ("GET", PLACE), ("DELETE", "/api/execution/orders/{order}"), ("PUT", HAND_OVER),
               ("GET", RESUME), ("DELETE", CLOSE)]


def _short(raw: str) -> str:
    text = raw if len(raw) <= 24 else raw[:21] + "..."
    return text.encode("ascii", "backslashreplace").decode()


def corpus() -> list[Hostile]:
    cases: list[Hostile] = []
    for path, fields in FIELDS.items():
        for name, values in fields.items():
            for n, raw in enumerate(values):
                body = render({**VALID[path], name: raw})
                # NaN, Infinity and integers beyond 64 bits are refused as a whole,
                # while the JSON is read, before any field
                named = {"NaN": "NaN", "Infinity": "Infinity", "-Infinity": "Infinity"}.get(
                    raw, "64 bits" if raw.isdigit() and len(raw) > 19 else name)
                cases.append(Hostile(f"POST {path} {name}#{n} {_short(raw)}",
                                     f"POST {path} {name}", "POST", path, body,
                                     names=(named,)))
    for path in WRITES:
        for name, raw in UNKNOWN_FIELDS:
            cases.append(Hostile(f"POST {path} unknown {name!r}", f"POST {path} unknown fields",
                                 "POST", path,
                                 render({**VALID[path], name: raw}), names=(name,)))
        for label, body, words in BAD_BODIES:
            cases.append(Hostile(f"POST {path} body {label}", f"POST {path} bodies", "POST",
                                 path, body, names=(words,)))
        for content_type in BAD_CONTENT_TYPES:
            cases.append(Hostile(f"POST {path} as {content_type}", f"POST {path} bodies",
                                 "POST", path,
                                 render(VALID[path]), content_type=content_type,
                                 names=("Unsupported media type",), statuses=(415,)))
        cases.append(Hostile(f"POST {path} body [ x 100000", f"POST {path} bodies", "POST",
                             path, "[" * 100_000,
                             names=("too large",), statuses=(413,)))
        cases.append(Hostile(f"POST {path} body over 64 KiB", f"POST {path} bodies", "POST",
                             path,
                             render({**VALID[path], "pad": json.dumps("x" * 70_000)}),
                             names=("too large",), statuses=(413,)))
        cases.append(Hostile(f"POST {path} body over 2.5 MB", f"POST {path} bodies", "POST",
                             path,
                             render({**VALID[path], "pad": json.dumps("x" * 2_700_000)}),
                             names=("too large",), statuses=(413,)))
    for path in LISTS:
        for raw in BAD_LIMIT:
            cases.append(Hostile(f"GET {path}?limit={raw}", f"GET {path} paging", "GET",
                                 f"{path}?limit={raw}",
                                 content_type=None, names=("limit",)))
        for raw in BAD_OFFSET:
            cases.append(Hostile(f"GET {path}?offset={raw}", f"GET {path} paging", "GET",
                                 f"{path}?offset={raw}",
                                 content_type=None, names=("offset",)))
        for param in UNKNOWN_PARAMS:
            cases.append(Hostile(f"GET {path}?{param}", f"GET {path} paging", "GET",
                                 f"{path}?{param}",
                                 content_type=None, names=(param.split("=")[0],)))
    for path, filters in FILTERS.items():
        for name, values in filters.items():
            for raw in values:
                cases.append(Hostile(f"GET {path}?{name}={raw}", f"GET {path} filters", "GET",
                                     f"{path}?{name}={raw}",
                                     content_type=None, names=(name,)))
    for path in BAD_PATHS:
        cases.append(Hostile(f"GET {path}", "GET paths", "GET", path, content_type=None,
                             statuses=(404,)))
    for method, path in BAD_METHODS:
        cases.append(Hostile(f"{method} {path}", "methods", method, path, content_type=None,
                             names=("not allowed",), statuses=(405,)))
    return cases


CORPUS = corpus()
GROUPS: dict[str, list[Hostile]] = {}
for _case in CORPUS:
    GROUPS.setdefault(_case.group, []).append(_case)
