"""Bounded live-trading configuration: one validator for every layer, one line per mistake.

The repro of issue 14: ``{"liveTrading": {"lifecycle": {"maxHoldingTimeMinutes":
99999999999999999999999}}}`` was accepted by ``live_config --import`` and ``check``;
afterwards ``timeout_pass_run`` raised OverflowError (no timeouts at all) and ``/``
answered 500.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
import time_machine
from django.conf import settings as django_settings
from django.core.management import call_command
from django.core.management.base import CommandError

from execution.models import Action
from lifecycle.models import Position, PositionState, Strategy
from lifecycle.services import timeout_pass_run
from lifecycle.tests.conftest import T0
from tradingsite.checks import check_live_trading_config
from tradingsite.live_config import (
    LiveConfigError,
    LiveTradingConfig,
    bounds_markdown,
    bounds_table,
    build,
    env_layer,
    site_config,
    strategy_config,
)
from tradingsite.testing.factories import PositionFactory

HUGE = 99999999999999999999999
REPRO = {"liveTrading": {"lifecycle": {"maxHoldingTimeMinutes": HUGE}}}
HUGE_MESSAGE = ("liveTrading.lifecycle.maxHoldingTimeMinutes: must be between 1 and 525600 "
                "minutes, got 99999999999999999999999")
ROOT = Path(django_settings.BASE_DIR)


def _errors(layer) -> list[tuple[str, str]]:
    with pytest.raises(LiveConfigError) as info:
        build([("x.json", layer)])
    return info.value.errors


def _numeric_keys() -> list[tuple[str, float, float]]:
    """(dotted key without the root, min, max) of every numeric key (limits that may be off too)."""
    rows = []

    def walk(obj, path):
        for f in dataclasses.fields(obj):
            value = getattr(obj, f.name)
            key = f"{path}.{f.name}" if path else f.name
            if dataclasses.is_dataclass(value):
                walk(value, key)
            elif not isinstance(value, bool) and "choices" not in f.metadata:
                rows.append((key, f.metadata["min"], f.metadata["max"]))

    walk(LiveTradingConfig(), "")
    return rows


def _nested(dotted: str, value) -> dict:
    node = value
    for part in reversed(dotted.split(".")):
        node = {part: node}
    return node


# --- the validator ----------------------------------------------------------------------


def test_the_repro_value_is_refused_naming_the_key_and_the_layer():
    assert _errors(REPRO) == [("liveTrading.lifecycle.maxHoldingTimeMinutes",
                               "must be between 1 and 525600 minutes, got "
                               "99999999999999999999999 (in x.json)")]


def test_every_numeric_key_has_both_bounds_and_they_hold_at_the_edges():
    keys = _numeric_keys()
    assert len(keys) == 49 + 8 + 2  # + the portfolio limits, off (null) by default
    for key, low, high in keys:
        base = LiveTradingConfig()
        default = _get(base, key)
        if default is None:  # a limit that is off unless set
            assert key.startswith("portfolio."), key
            whole = isinstance(_get(base.with_overrides(_nested(key, low)), key), int)
            assert _get(base.with_overrides(_nested(key, high)).with_overrides(
                _nested(key, None)), key) is None
        else:
            assert low <= default <= high, key  # the defaults lie inside
            whole = isinstance(default, int)
        for inside in (low, high):
            assert _get(base.with_overrides(_nested(key, inside)), key) == inside
        step = 1 if whole else 0.001
        for outside in (low - step, high + step, HUGE, -HUGE):
            with pytest.raises(LiveConfigError) as info:
                base.with_overrides(_nested(key, outside))
            [(named, message)] = info.value.errors
            assert named == "liveTrading." + ".".join(
                _camel(part) for part in key.split(".")), key
            assert message.startswith("must be between "), message


def _get(cfg, dotted):
    for part in dotted.split("."):
        cfg = getattr(cfg, part)
    return cfg


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(p.capitalize() for p in rest)


@pytest.mark.parametrize(("layer", "expected"), [
    # zero would switch supervision off: refused
    ({"lifecycle": {"maxHoldingTimeMinutes": 0}},
     ("liveTrading.lifecycle.maxHoldingTimeMinutes",
      "must be between 1 and 525600 minutes, got 0 (in x.json)")),
    ({"riskMonitoring": {"checkIntervalCandles": 0}},
     ("liveTrading.riskMonitoring.checkIntervalCandles",
      "must be between 1 and 100 candles, got 0 (in x.json)")),
    ({"riskMonitoring": {"healthScoreThreshold": 0, "warningScoreThreshold": 1}},
     ("liveTrading.riskMonitoring.healthScoreThreshold",
      "must be between 1 and 100, got 0 (in x.json)")),
    ({"orderExecution": {"orderTimeoutSeconds": 0}},
     ("liveTrading.orderExecution.orderTimeoutSeconds",
      "must be between 1 and 3600 s, got 0 (in x.json)")),
    # delays at most an hour
    ({"orderExecution": {"retryDelayMs": 3600001}},
     ("liveTrading.orderExecution.retryDelayMs",
      "must be between 0 and 3600000 ms, got 3600001 (in x.json)")),
    ({"orderExecution": {"maxRetries": 11}},
     ("liveTrading.orderExecution.maxRetries", "must be between 0 and 10, got 11 (in x.json)")),
    ({"orderExecution": {"maxSlippagePercent": 100.5}},
     ("liveTrading.orderExecution.maxSlippagePercent",
      "must be between 0.01 and 100 %, got 100.5 (in x.json)")),
    ({"shutdown": {"shutdownTimeoutSeconds": 1e300}},
     ("liveTrading.shutdown.shutdownTimeoutSeconds",
      "must be between 1 and 3600 s, got 1e+300 (in x.json)")),
    # a bot's close is confirmed or escalated within an hour; its trades read at least daily
    ({"bots": {"botCloseTimeoutSeconds": 0}},
     ("liveTrading.bots.botCloseTimeoutSeconds",
      "must be between 1 and 3600 s, got 0 (in x.json)")),
    ({"bots": {"botSyncSeconds": 86401}},
     ("liveTrading.bots.botSyncSeconds", "must be between 5 and 86400 s, got 86401 (in x.json)")),
    ({"bots": {"fallbackDirectClose": "yes"}},
     ("liveTrading.bots.fallbackDirectClose", 'expected true or false, got "yes" (in x.json)')),
    # wrong types
    ({"lifecycle": {"maxHoldingTimeMinutes": "90"}},
     ("liveTrading.lifecycle.maxHoldingTimeMinutes",
      'expected a whole number, got "90" (in x.json)')),
    ({"lifecycle": {"maxHoldingTimeMinutes": 90.5}},
     ("liveTrading.lifecycle.maxHoldingTimeMinutes",
      "expected a whole number, got 90.5 (in x.json)")),
    ({"lifecycle": {"maxHoldingTimeMinutes": True}},
     ("liveTrading.lifecycle.maxHoldingTimeMinutes",
      "expected a whole number, got true (in x.json)")),
    ({"lifecycle": {"enableAutomaticTimeout": 0}},
     ("liveTrading.lifecycle.enableAutomaticTimeout", "expected true or false, got 0 (in x.json)")),
    ({"orderExecution": {"maxSlippagePercent": [1]}},
     ("liveTrading.orderExecution.maxSlippagePercent",
      "expected a finite number, got [1] (in x.json)")),
    # null sections
    ({"liveTrading": None}, ("liveTrading", "expected an object, got null (in x.json)")),
    ({"lifecycle": None}, ("liveTrading.lifecycle", "expected an object, got null (in x.json)")),
    ({"riskMonitoring": {"weights": None}},
     ("liveTrading.riskMonitoring.weights", "expected an object, got null (in x.json)")),
    ({"lifecycle": []}, ("liveTrading.lifecycle", "expected an object, got an array (in x.json)")),
    # a key given twice, in two spellings
    ({"lifecycle": {"maxHoldingTimeMinutes": 90, "max_holding_time_minutes": 60}},
     ("liveTrading.lifecycle.maxHoldingTimeMinutes",
      "given twice (as maxHoldingTimeMinutes and max_holding_time_minutes) (in x.json)")),
])
def test_a_wrong_value_gets_one_line_naming_its_key(layer, expected):
    assert _errors(layer) == [expected]


def test_a_5000_digit_number_is_named_in_a_short_line():
    errors = _errors({"lifecycle": {"maxHoldingTimeMinutes": 10 ** 4000}})
    [(key, message)] = errors
    assert key == "liveTrading.lifecycle.maxHoldingTimeMinutes"
    assert message == ("must be between 1 and 525600 minutes, got 100000000000000000000000… "
                       "(4001 characters) (in x.json)")


def test_huge_values_cannot_disable_supervision_only_the_switch_does():
    limits = LiveTradingConfig().with_overrides(
        {"lifecycle": {"maxHoldingTimeMinutes": 525600, "warningThresholdMinutes": 525599}})
    assert timedelta(minutes=limits.lifecycle.max_holding_time_minutes) == timedelta(days=365)
    off = LiveTradingConfig().with_overrides({"lifecycle": {"enableAutomaticTimeout": False}})
    assert off.lifecycle.enable_automatic_timeout is False


def test_the_readme_documents_every_bound():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert bounds_markdown() in readme
    assert ("| `lifecycle.maxHoldingTimeMinutes` | 240 | 1 … 525,600 minutes | "
            in bounds_markdown())
    assert len(bounds_table()) == 59 + 11 + 1  # numeric keys + switches + onTrip


# --- every layer goes through the same validator ------------------------------------------


def test_the_config_file_layer_is_bounded(tmp_path, settings):
    settings.LIVE_TRADING_FILE = tmp_path / "live.json"
    settings.LIVE_TRADING_FILE.write_text(json.dumps(REPRO))
    [error] = check_live_trading_config()
    assert error.id == "live_trading.E001"
    assert error.msg == f"{HUGE_MESSAGE} (in {settings.LIVE_TRADING_FILE})"


def test_the_live_trading_config_variable_is_bounded(settings):
    settings.LIVE_TRADING = json.dumps(REPRO)
    [error] = check_live_trading_config()
    assert error.msg == f"{HUGE_MESSAGE} (in LIVE_TRADING_CONFIG)"


def test_a_live_trading_variable_is_bounded_and_named(monkeypatch):
    monkeypatch.setenv("LIVE_TRADING__LIFECYCLE__MAX_HOLDING_TIME_MINUTES", str(HUGE))
    [error] = check_live_trading_config()
    assert error.msg == f"{HUGE_MESSAGE} (in LIVE_TRADING__LIFECYCLE__MAX_HOLDING_TIME_MINUTES)"


def test_a_live_trading_variable_with_a_word_is_named(monkeypatch):
    monkeypatch.setenv("LIVE_TRADING__ORDER_EXECUTION__MAX_RETRIES", "three")
    [error] = check_live_trading_config()
    assert error.msg == ('liveTrading.orderExecution.maxRetries: expected a whole number, got '
                         '"three" (in LIVE_TRADING__ORDER_EXECUTION__MAX_RETRIES)')


def test_a_section_variable_clashing_with_a_key_variable_is_named(monkeypatch):
    monkeypatch.setenv("LIVE_TRADING__LIFECYCLE", "5")
    monkeypatch.setenv("LIVE_TRADING__LIFECYCLE__MAX_HOLDING_TIME_MINUTES", "90")
    [error] = check_live_trading_config()
    assert error.msg == ("liveTrading.lifecycle: expected an object, got a number "
                         "(in LIVE_TRADING__LIFECYCLE)")
    assert env_layer() == {"lifecycle": {"max_holding_time_minutes": 90}}


def test_a_live_trading_variable_with_an_empty_part_is_named(monkeypatch):
    monkeypatch.setenv("LIVE_TRADING__LIFECYCLE____X", "1")
    [error] = check_live_trading_config()
    assert error.msg == ("LIVE_TRADING__LIFECYCLE____X: expected LIVE_TRADING__SECTION__KEY, "
                         "got an empty part")


@pytest.mark.django_db
def test_a_strategy_override_is_bounded_in_the_model_and_the_check(strategy):
    strategy.live_trading = REPRO
    with pytest.raises(Exception) as info:
        strategy.full_clean()
    assert info.value.message_dict == {"live_trading": [HUGE_MESSAGE]}
    Strategy.objects.filter(pk=strategy.pk).update(live_trading=REPRO)  # behind the back
    [error] = check_live_trading_config()
    assert (error.id, error.msg) == ("live_trading.E002", f"strategy {strategy.name!r}: "
                                                          f"{HUGE_MESSAGE}")


@pytest.mark.django_db
def test_a_null_strategy_override_is_refused(strategy):
    with pytest.raises(LiveConfigError) as info:
        strategy_config({"liveTrading": None})
    assert info.value.errors == [("liveTrading", "expected an object, got null")]


@pytest.mark.django_db
def test_import_refuses_the_repro_and_stores_nothing(tmp_path, settings):
    settings.LIVE_TRADING_FILE = tmp_path / "site.json"
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(REPRO))
    with pytest.raises(CommandError) as info:
        call_command("live_config", import_file=str(bad))
    assert str(info.value) == f"{bad}: nothing imported: {HUGE_MESSAGE} (in {bad})"
    assert not settings.LIVE_TRADING_FILE.exists()


@pytest.mark.django_db
@pytest.mark.parametrize(("content", "message"), [
    (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "not UTF-8 text (byte 0x89 at offset 0): "
                                             "not a JSON config file"),
    (b'{"liveTrading": null}', "liveTrading: expected an object, got null (in {path})"),
    (b"[1, 2]", "{path}: expected a JSON object, got an array"),
    (b"[" * 100_000, "{path}: not valid JSON: nested too deeply"),
    (b'{"lifecycle": {"maxHoldingTimeMinutes": NaN}}',
     "{path}: not valid JSON: NaN is not a number"),
    (b'{"lifecycle": {"maxHoldingTimeMinutes": 1, "maxHoldingTimeMinutes": 2}}',
     "{path}: not valid JSON: key 'maxHoldingTimeMinutes' given twice"),
    (b"1" * 5000, "{path}: not valid JSON: Exceeds the limit (4300 digits) for integer string "
                  "conversion: value has 5000 digits; use sys.set_int_max_str_digits() to "
                  "increase the limit"),
])
def test_import_of_an_unusable_file_is_one_line(tmp_path, settings, content, message):
    settings.LIVE_TRADING_FILE = tmp_path / "site.json"
    path = tmp_path / "cfg.json"
    path.write_bytes(content)
    with pytest.raises(CommandError) as info:
        call_command("live_config", import_file=str(path))
    expected = message.format(path=path)
    if expected.startswith("not UTF-8"):
        expected = f"{path}: {expected}"
    assert str(info.value) == f"{path}: nothing imported: {expected}"
    assert not settings.LIVE_TRADING_FILE.exists()


@pytest.mark.django_db
def test_import_refuses_a_site_file_that_breaks_a_strategy(tmp_path, settings, strategy):
    settings.LIVE_TRADING_FILE = tmp_path / "site.json"
    strategy.live_trading = {"lifecycle": {"maxHoldingTimeMinutes": 200}}
    strategy.save()
    path = tmp_path / "cfg.json"
    path.write_text(json.dumps({"lifecycle": {"warningThresholdMinutes": 210,
                                              "maxHoldingTimeMinutes": 300}}))
    with pytest.raises(CommandError) as info:
        call_command("live_config", import_file=str(path))
    assert str(info.value) == (
        f"{path}: nothing imported: strategy {strategy.name!r}: "
        "liveTrading.lifecycle.warningThresholdMinutes: must be less than "
        "maxHoldingTimeMinutes (200), got 210")
    assert not settings.LIVE_TRADING_FILE.exists()


@pytest.mark.django_db
def test_import_replaces_a_broken_site_file(tmp_path, settings, capsys):
    settings.LIVE_TRADING_FILE = tmp_path / "site.json"
    settings.LIVE_TRADING_FILE.write_bytes(b"\xff\xfe garbage")
    good = tmp_path / "good.json"
    good.write_text(json.dumps({"lifecycle": {"maxHoldingTimeMinutes": 300}}))
    call_command("live_config", import_file=str(good))
    assert site_config().lifecycle.max_holding_time_minutes == 300
    assert check_live_trading_config() == []


def test_a_binary_live_trading_config_file_is_one_line(tmp_path, settings):
    path = tmp_path / "cfg.bin"
    path.write_bytes(bytes(range(128, 256)))
    settings.LIVE_TRADING = str(path)
    [error] = check_live_trading_config()
    assert error.msg == (f"LIVE_TRADING_CONFIG={path}: not UTF-8 text (byte 0x80 at offset 0): "
                         "not a JSON config file")


# --- supervision keeps going -------------------------------------------------------------


@pytest.mark.django_db
def test_a_strategy_row_edited_behind_the_back_still_times_out(strategy, admin_client):
    """The exact repro stored straight into the database: the site limits apply."""
    position = PositionFactory(strategy=strategy, opened_at=T0)
    Strategy.objects.filter(pk=strategy.pk).update(live_trading=REPRO)
    with time_machine.travel(T0 + timedelta(minutes=240), tick=False):
        result = timeout_pass_run()
        assert admin_client.get("/").status_code == 200
    assert (result.warned, result.timed_out, result.close_actions) == (1, 1, 1)
    assert Position.objects.get(pk=position.pk).state == PositionState.CRITICAL
    assert Action.objects.filter(position=position).count() == 1


@pytest.mark.django_db
def test_an_invalid_site_config_at_run_time_falls_back_to_the_default_limits(strategy, settings):
    position = PositionFactory(strategy=strategy, opened_at=T0)
    settings.LIVE_TRADING = json.dumps(REPRO)  # appeared after start-up
    with time_machine.travel(T0 + timedelta(minutes=240), tick=False):
        result = timeout_pass_run()
    assert (result.warned, result.timed_out, result.close_actions) == (1, 1, 1)
    assert Position.objects.get(pk=position.pk).state == PositionState.CRITICAL


# --- manage.py check, as an operator runs it ------------------------------------------------


def _manage(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items()
               if not k.startswith("LIVE_TRADING") and k not in ("DATABASE_URL", "REDIS_URL")}
    environ.update(DJANGO_SETTINGS_MODULE="tradingsite.settings", VAR_DIR=str(tmp_path),
                   LIVE_TRADING_FILE=str(tmp_path / "none.json"), **env)
    return subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=environ,
                          capture_output=True, text=True, timeout=120)


def test_manage_py_check_refuses_the_repro_in_one_line(tmp_path):
    result = _manage(tmp_path, "check", LIVE_TRADING_CONFIG=json.dumps(REPRO))
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert (f"?: (live_trading.E001) {HUGE_MESSAGE} (in LIVE_TRADING_CONFIG)"
            in result.stderr.splitlines())


def test_manage_py_check_names_a_binary_config_file(tmp_path):
    path = tmp_path / "cfg.json"
    path.write_bytes(b"\x00\xff\x00\xff")
    result = _manage(tmp_path, "check", LIVE_TRADING_CONFIG=str(path))
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert (f"?: (live_trading.E001) LIVE_TRADING_CONFIG={path}: not UTF-8 text (byte 0xff at "
            "offset 1): not a JSON config file" in result.stderr.splitlines())


# --- accountSync: per account, through the same validator -----------------------------------


def test_an_account_overrides_only_its_account_sync_section_with_its_name_in_errors():
    from tradingsite.live_config import account_sync_config

    cfg = account_sync_config({"accountSync": {"markRefreshSeconds": 2,
                                               "adoptExternalPositions": True}},
                              account="bybit-main")
    assert (cfg.mark_refresh_seconds, cfg.adopt_external_positions,
            cfg.reconcile_interval_seconds, cfg.streams) == (2, True, 60, True)
    with pytest.raises(LiveConfigError) as info:
        account_sync_config({"accountSync": {"reconcileIntervalSeconds": 4}}, account="bybit-main")
    assert info.value.errors == [("liveTrading.accountSync.reconcileIntervalSeconds",
                                  "must be between 5 and 3600 s, got 4 (in account bybit-main)")]
    with pytest.raises(LiveConfigError) as info:
        account_sync_config({"lifecycle": {"maxHoldingTimeMinutes": 90}}, account="bybit-main")
    assert info.value.errors == [("liveTrading.lifecycle", "not a per-account setting: set it "
                                                           "on the strategy or the site config")]


def test_a_strategy_may_not_set_account_sync():
    from tradingsite.live_config import strategy_config

    with pytest.raises(LiveConfigError) as info:
        strategy_config({"account_sync": {"markRefreshSeconds": 2}})
    assert info.value.errors == [("liveTrading.accountSync",
                                  "not a strategy setting: set it on the exchange account")]


def test_the_account_model_refuses_a_bad_override_naming_the_field(db):
    from django.core.exceptions import ValidationError

    from tradingsite.testing.factories import ExchangeAccountFactory

    account = ExchangeAccountFactory(name="acct-bad", live_trading={
        "accountSync": {"markRefreshSeconds": 0}})
    with pytest.raises(ValidationError) as info:
        account.full_clean()
    assert info.value.message_dict["live_trading"] == [
        "liveTrading.accountSync.markRefreshSeconds: must be between 1 and 300 s, got 0 "
        "(in account acct-bad)"]
    assert account.sync_settings().mark_refresh_seconds == 5  # running on: the site config
