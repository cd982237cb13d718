import json

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from tradingsite.checks import check_live_trading_config
from tradingsite.live_config import (
    LiveConfigError,
    LiveTradingConfig,
    build,
    env_layer,
    site_config,
    strategy_config,
)

DESIGN_JSON = {
    "liveTrading": {
        "enabled": True,
        "lifecycle": {"maxHoldingTimeMinutes": 240, "warningThresholdMinutes": 180,
                      "enableAutomaticTimeout": True},
        "riskMonitoring": {"enabled": True, "checkIntervalCandles": 5,
                           "healthScoreThreshold": 30, "emergencyCloseOnCritical": True},
        "orderExecution": {"maxRetries": 3, "retryDelayMs": 1000, "orderTimeoutSeconds": 30,
                           "maxSlippagePercent": 0.5},
        "performanceAnalytics": {"enabled": True, "metricsInterval": 10},
        "shutdown": {"closePositionsOnShutdown": False, "shutdownTimeoutSeconds": 60,
                     "cancelOrdersOnShutdown": True},
    }
}


def test_defaults_are_the_original_specification():
    cfg = LiveTradingConfig()
    exported = cfg.to_json_dict()["liveTrading"]
    for section, values in DESIGN_JSON["liveTrading"].items():
        if isinstance(values, dict):
            for key, value in values.items():
                assert exported[section][key] == value, (section, key)
        else:
            assert exported[section] == values


def test_the_order_certainty_keys_default_to_three_lookups_over_30_s_and_a_15_s_lease():
    order_execution = LiveTradingConfig().to_json_dict()["liveTrading"]["orderExecution"]
    assert (order_execution["inDoubtLookups"], order_execution["inDoubtGraceSeconds"],
            order_execution["actionLeaseSeconds"]) == (3, 30, 15)


def test_the_design_json_form_is_accepted_unchanged():
    assert build([("liveTrading", DESIGN_JSON)]) == LiveTradingConfig()


def test_snake_case_and_camel_case_keys_are_the_same_setting():
    a = build([("liveTrading", {"lifecycle": {"max_holding_time_minutes": 90,
                                              "warning_threshold_minutes": 60}})])
    b = build([("liveTrading", {"lifecycle": {"maxHoldingTimeMinutes": 90,
                                              "warningThresholdMinutes": 60}})])
    assert a == b
    assert a.lifecycle.max_holding_time_minutes == 90


@pytest.mark.parametrize(("layer", "key", "fragment"), [
    ({"lifecycle": {"warningThresholdMinutes": 240}}, "liveTrading.lifecycle.warningThresholdMinutes",
     "must be less than maxHoldingTimeMinutes (240)"),
    ({"orderExecution": {"maxRetries": -1}}, "liveTrading.orderExecution.maxRetries",
     "must be between 0 and 10, got -1"),
    ({"orderExecution": {"maxSlippagePercent": 0}}, "liveTrading.orderExecution.maxSlippagePercent",
     "must be between 0.01 and 100 %, got 0"),
    ({"orderExecution": {"maxRetries": 2.5}}, "liveTrading.orderExecution.maxRetries",
     "expected a whole number"),
    ({"shutdown": {"cancelOrdersOnShutdown": "yes"}},
     "liveTrading.shutdown.cancelOrdersOnShutdown", "expected true or false"),
    ({"lifecycle": {"maxHoldingMinutes": 10}}, "liveTrading.lifecycle.maxHoldingMinutes",
     "unknown key"),
    ({"riskMonitoring": {"weights": {"drawdown": 0.5}}}, "liveTrading.riskMonitoring.weights",
     "must sum to 1"),
    ({"orderExecution": {"inDoubtLookups": 0}}, "liveTrading.orderExecution.inDoubtLookups",
     "must be between 1 and 20, got 0"),
    ({"orderExecution": {"inDoubtLookups": 21}}, "liveTrading.orderExecution.inDoubtLookups",
     "must be between 1 and 20, got 21"),
    ({"orderExecution": {"inDoubtGraceSeconds": 0.5}},
     "liveTrading.orderExecution.inDoubtGraceSeconds", "must be between 1 and 3600 s, got 0.5"),
    ({"orderExecution": {"inDoubtGraceSeconds": 3601}},
     "liveTrading.orderExecution.inDoubtGraceSeconds", "must be between 1 and 3600 s, got 3601"),
    ({"orderExecution": {"actionLeaseSeconds": 0}},
     "liveTrading.orderExecution.actionLeaseSeconds", "must be between 1 and 3600 s, got 0"),
])
def test_an_invalid_value_is_refused_with_its_key_named(layer, key, fragment):
    with pytest.raises(LiveConfigError) as info:
        build([("liveTrading", layer)])
    assert any(k == key and fragment in msg for k, msg in info.value.errors), info.value.errors


def test_a_strategy_override_merges_over_the_site_config(settings):
    settings.LIVE_TRADING = json.dumps({"orderExecution": {"maxRetries": 5}})
    cfg = strategy_config({"lifecycle": {"maxHoldingTimeMinutes": 90,
                                         "warningThresholdMinutes": 60}})
    assert cfg.order_execution.max_retries == 5  # from the site layer
    assert cfg.lifecycle.max_holding_time_minutes == 90  # from the strategy
    assert cfg.lifecycle.enable_automatic_timeout is True  # default kept
    assert site_config().lifecycle.max_holding_time_minutes == 240


def test_single_keys_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("LIVE_TRADING__ORDER_EXECUTION__MAX_RETRIES", "4")
    monkeypatch.setenv("LIVE_TRADING__SHUTDOWN__CLOSE_POSITIONS_ON_SHUTDOWN", "true")
    assert env_layer() == {"order_execution": {"max_retries": 4},
                           "shutdown": {"close_positions_on_shutdown": True}}
    cfg = site_config()
    assert cfg.order_execution.max_retries == 4
    assert cfg.shutdown.close_positions_on_shutdown is True


def test_system_check_names_the_bad_key(settings):
    settings.LIVE_TRADING = json.dumps({"lifecycle": {"warningThresholdMinutes": 300}})
    errors = check_live_trading_config()
    assert [e.id for e in errors] == ["live_trading.E001"]
    assert errors[0].msg.startswith("liveTrading.lifecycle.warningThresholdMinutes: must be less")


def test_manage_py_check_fails_on_an_invalid_config(settings):
    settings.LIVE_TRADING = json.dumps({"orderExecution": {"maxSlippagePercent": -1}})
    with pytest.raises(Exception) as info:
        call_command("check")
    assert "liveTrading.orderExecution.maxSlippagePercent" in str(info.value)


@pytest.mark.django_db
def test_system_check_validates_strategy_overrides(strategy):
    strategy.live_trading = {"lifecycle": {"maxHoldingTimeMinutes": 100}}  # warning 180 ≥ 100
    strategy.save()
    errors = check_live_trading_config()
    assert [e.id for e in errors] == ["live_trading.E002"]
    assert f"strategy '{strategy.name}'" in errors[0].msg
    assert "warningThresholdMinutes" in errors[0].msg


@pytest.mark.django_db
def test_export_then_import_round_trips_exactly(tmp_path, settings):
    settings.LIVE_TRADING_FILE = tmp_path / "site.json"
    settings.LIVE_TRADING = json.dumps({"lifecycle": {"maxHoldingTimeMinutes": 300},
                                        "orderExecution": {"maxSlippagePercent": 0.25}})
    first = tmp_path / "first.json"
    call_command("live_config", export=str(first))
    settings.LIVE_TRADING = ""
    call_command("live_config", import_file=str(first))
    second = tmp_path / "second.json"
    call_command("live_config", export=str(second))
    assert second.read_text() == first.read_text()
    data = json.loads(second.read_text())
    assert data["liveTrading"]["lifecycle"]["maxHoldingTimeMinutes"] == 300
    assert data["liveTrading"]["orderExecution"]["maxSlippagePercent"] == 0.25


@pytest.mark.django_db
def test_import_of_an_invalid_file_stores_nothing(tmp_path, settings):
    settings.LIVE_TRADING_FILE = tmp_path / "site.json"
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"liveTrading": {"orderExecution": {"maxRetries": -2}}}))
    with pytest.raises(CommandError, match=r"orderExecution\.maxRetries"):
        call_command("live_config", import_file=str(bad))
    assert not settings.LIVE_TRADING_FILE.exists()


@pytest.mark.django_db
def test_strategy_import_writes_its_overrides(tmp_path, strategy, capsys):
    override = tmp_path / "override.json"
    override.write_text(json.dumps({"lifecycle": {"maxHoldingTimeMinutes": 90,
                                                  "warningThresholdMinutes": 60}}))
    call_command("live_config", strategy=strategy.name, import_file=str(override), json=True)
    strategy.refresh_from_db()
    assert strategy.effective_config().lifecycle.max_holding_time_minutes == 90
    out = capsys.readouterr().out
    assert '"maxHoldingTimeMinutes": 90' in out
