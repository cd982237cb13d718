"""The health score maths, with hand-computed expectations (risk/scoring.py)."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from risk import scoring
from risk.scoring import (
    DRAWDOWN,
    PROFITABILITY,
    TIME,
    VOLATILITY,
    VOLUME,
    MarketMatrix,
    MarketWindows,
    PositionArrays,
    ScoringParams,
)

TF = 300.0
# volume: 3 recent vs the 20 before; volatility: the last 2 returns vs the last 8
WINDOWS = MarketWindows.of([(3, 20, 2, 8)])


def market(closes, volumes, windows=WINDOWS):
    """A one-row matrix whose latest candle is the last value (right-aligned, NaN-padded)."""
    width = windows.width()
    c = np.full((1, width), np.nan)
    v = np.full((1, width), np.nan)
    c[0, width - len(closes):] = closes
    v[0, width - len(volumes):] = volumes
    return MarketMatrix(c, v, windows, np.array([0.0]))


# Six flat returns, then +2 % and −2 %: σ of the last 2 = 0.02, σ of the last 8 = 0.01.
SPIKE_CLOSES = [100.0] * 7 + [102.0, 99.96]
# The 3 latest volumes average 60 against 100 before them.
THIN_VOLUMES = [100.0] * 20 + [50.0, 60.0, 70.0]


def positions(n=1, side=1.0, entry=100.0, peak=None, trough=None, price=98.0, minutes=60.0,
              max_minutes=240.0, row=0):
    full = lambda x: np.full(n, x, dtype=float)  # noqa: E731
    return PositionArrays(side=full(side), entry_price=full(entry),
                          peak_price=full(entry if peak is None else peak),
                          trough_price=full(entry if trough is None else trough),
                          price=full(price), minutes_open=full(minutes),
                          max_holding_minutes=full(max_minutes),
                          market_row=np.full(n, row, dtype=np.int64))


PARAMS = ScoringParams(fee_rate_percent=0.05)


def score_one(**kwargs):
    m = kwargs.pop("market", None) or market(SPIKE_CLOSES, THIN_VOLUMES)
    params = kwargs.pop("params", PARAMS)
    return scoring.score_positions(positions(**kwargs), m, params)


def test_the_documented_example_scores_each_component_and_the_weighted_sum():
    result = score_one()
    # time 100·(1 − 60/240) = 75; drawdown 2 % of 5 % → 60; volume 60/100 → 60;
    # volatility ratio 2 with spike 3 → 50; pnl −2 % − 0.1 % fees → (−2.1 + 3)/6 → 15
    assert result.components.tolist() == [[75.0, 60.0, 60.0, 50.0, 15.0]]
    # 0.2·75 + 0.3·60 + 0.2·60 + 0.15·50 + 0.15·15
    assert result.score.tolist() == [54.75]
    assert result.level_names().tolist() == ["WARNING"]
    assert result.data_complete.tolist() == [True]
    assert result.confidence.tolist() == [1.0]
    assert result.pnl_percent.round(10).tolist() == [-2.1]


@pytest.mark.parametrize(("minutes", "expected"), [
    (0, 100.0), (60, 75.0), (120, 50.0), (180, 25.0), (240, 0.0), (600, 0.0), (-5, 100.0)])
def test_time_at_risk_falls_linearly_to_zero_at_the_max_holding_time(minutes, expected):
    assert score_one(minutes=minutes).components[0, TIME] == expected


@pytest.mark.parametrize(("side", "peak", "trough", "price", "expected"), [
    (1.0, 100.0, 100.0, 100.0, 100.0),   # at the best price
    (1.0, 110.0, 100.0, 107.8, 60.0),    # long: 2 % below the 110 peak
    (1.0, 110.0, 100.0, 104.5, 0.0),     # long: 5 % below the peak → the limit
    (1.0, 110.0, 100.0, 99.0, 0.0),      # beyond the limit stays 0
    (1.0, 100.0, 100.0, 120.0, 100.0),   # a new high is its own peak
    (-1.0, 100.0, 90.0, 91.8, 60.0),     # short: 2 % above the 90 trough
    (-1.0, 100.0, 90.0, 85.0, 100.0),    # short: a new low is its own trough
    (-1.0, 100.0, 80.0, 82.0, 50.0),     # short: 2.5 % above the trough
])
def test_drawdown_measures_the_adverse_move_from_the_best_price(side, peak, trough, price,
                                                                 expected):
    result = score_one(side=side, peak=peak, trough=trough, price=price)
    assert result.components[0, DRAWDOWN] == expected


@pytest.mark.parametrize(("recent", "expected"), [
    ([100.0, 100.0, 100.0], 100.0), ([200.0, 300.0, 400.0], 100.0), ([25.0, 25.0, 25.0], 25.0),
    ([0.0, 0.0, 0.0], 0.0), ([10.0, 20.0, 30.0], 20.0)])
def test_volume_scores_the_recent_average_against_the_rolling_baseline(recent, expected):
    m = market(SPIKE_CLOSES, [100.0] * 20 + recent)
    assert score_one(market=m).components[0, VOLUME] == expected


def test_volume_against_a_dead_baseline_is_full_if_trading_resumed_and_zero_otherwise():
    assert score_one(market=market(SPIKE_CLOSES, [0.0] * 20 + [5.0] * 3)).components[0, VOLUME] == 100
    assert score_one(market=market(SPIKE_CLOSES, [0.0] * 23)).components[0, VOLUME] == 0


@pytest.mark.parametrize(("closes", "expected"), [
    (SPIKE_CLOSES, 50.0),                                  # ratio 2
    ([100.0] * 9, 100.0),                                  # flat: both σ 0, ratio 1
    ([100.0, 101.0, 100.0, 101.0, 100.0, 101.0, 100.0, 101.0, 100.0], 100.0),  # usual swings
    # returns 0,0,0,0,0,0,0 then +10 %: σ_2 = 0.05, σ_8 = √(0.01·7)/8 = 0.0330719 → ratio 1.511858
    ([100.0] * 8 + [110.0], 74.41),
])
def test_volatility_scores_the_recent_realised_volatility_against_its_baseline(closes, expected):
    assert score_one(market=market(closes, THIN_VOLUMES)).components[0, VOLATILITY] == expected


@pytest.mark.parametrize(("side", "price", "expected"), [
    (1.0, 100.0, 48.33),   # −0.1 % fees: (2.9)/6
    (1.0, 103.1, 100.0),   # +3 % after fees → the target
    (1.0, 97.1, 0.0),      # −3 % after fees → the loss limit
    (1.0, 101.0, 65.0),    # +0.9 % → 3.9/6
    (-1.0, 99.0, 65.0),    # short gains when the price falls
    (-1.0, 110.0, 0.0),
])
def test_profitability_maps_pnl_after_fees_between_the_loss_limit_and_the_target(side, price,
                                                                                  expected):
    result = score_one(side=side, price=price, peak=200.0, trough=1.0)
    assert result.components[0, PROFITABILITY] == expected


@pytest.mark.parametrize(("score", "level"), [
    (0.0, "CRITICAL"), (29.99, "CRITICAL"), (30.0, "WARNING"), (59.99, "WARNING"),
    (60.0, "SAFE"), (100.0, "SAFE")])
def test_danger_level_boundaries(score, level):
    assert scoring.danger_level(score) == level
    assert scoring.LEVEL_NAMES[scoring.danger_levels([score], 30, 60)].tolist() == [level]


def test_danger_levels_follow_configured_thresholds():
    levels = scoring.danger_levels([19.99, 20.0, 49.99, 50.0], 20, 50)
    assert scoring.LEVEL_NAMES[levels].tolist() == ["CRITICAL", "WARNING", "WARNING", "SAFE"]


def test_the_level_is_taken_from_the_rounded_score():
    # time 100·(1 − 96.0012/240) = 59.9995, drawdown, volume and profitability 60, volatility
    # unweighted: 0.25·(59.9995 + 60 + 60 + 60) = 59.999875 → 60.00 → SAFE, not WARNING
    m = market([100.0] * 9, [100.0] * 20 + [60.0] * 3)
    params = ScoringParams(weights=(0.25, 0.25, 0.25, 0.0, 0.25), fee_rate_percent=0.0,
                           loss_limit_percent=6.0, profit_target_percent=4.0)
    result = score_one(market=m, params=params, entry=107.8, price=107.8, peak=110.0,
                       minutes=96.0012)
    assert result.components[0].tolist() == [60.0, 60.0, 60.0, 100.0, 60.0]
    assert result.score.tolist() == [60.0]
    assert result.level_names().tolist() == ["SAFE"]


def test_missing_market_data_scores_neutral_and_is_flagged():
    result = score_one(row=-1)
    assert result.components[0, VOLUME] == 50.0
    assert result.components[0, VOLATILITY] == 50.0
    assert result.missing_names(0) == ["volume", "volatility"]
    assert result.data_complete.tolist() == [False]
    assert result.confidence.tolist() == [0.65]
    # 0.2·75 + 0.3·60 + 0.2·50 + 0.15·50 + 0.15·15
    assert result.score.tolist() == [52.75]


def test_a_missing_price_neutralises_drawdown_and_profitability():
    result = score_one(price=np.nan)
    assert result.missing_names(0) == ["drawdown", "profitability"]
    assert result.components[0].tolist() == [75.0, 50.0, 60.0, 50.0, 50.0]
    assert np.isnan(result.pnl_percent[0])


def test_fewer_than_half_the_candles_of_a_window_count_as_missing():
    # 9 volumes: the 3 recent and only 6 of the 20 baseline candles
    result = score_one(market=market([100.0, 101.0], [100.0] * 6 + [50.0, 60.0, 70.0]))
    assert result.missing_names(0) == ["volume", "volatility"]
    # exactly half of the baseline (10 of 20) is enough
    result = score_one(market=market(SPIKE_CLOSES, [100.0] * 10 + [50.0, 60.0, 70.0]))
    assert result.components[0, VOLUME] == 60.0


def test_nan_and_inf_inputs_never_raise_and_are_flagged():
    m = market([np.nan, np.inf, -5.0, 0.0, 100.0, np.inf, 100.0, np.nan, 100.0],
               [np.inf] * 20 + [np.nan, -1.0, np.inf])
    p = PositionArrays(side=np.array([1.0, -1.0, np.nan]),
                       entry_price=np.array([np.inf, 0.0, -3.0]),
                       peak_price=np.array([np.nan, np.inf, 1.0]),
                       trough_price=np.array([np.nan, -np.inf, 1.0]),
                       price=np.array([np.inf, 100.0, np.nan]),
                       minutes_open=np.array([np.nan, np.inf, 10.0]),
                       max_holding_minutes=np.array([240.0, 0.0, np.nan]),
                       market_row=np.array([0, 5, -1]))
    result = scoring.score_positions(p, m, PARAMS)
    assert np.all((result.components >= 0) & (result.components <= 100))
    assert np.all((result.score >= 0) & (result.score <= 100))
    # 0: nothing usable; 1: only the drawdown (a short at 100 with no valid trough is at its
    # best price); 2: a NaN side counts as short, but nothing else is usable
    assert result.missing.tolist() == [[True] * 5, [True, False, True, True, True], [True] * 5]
    assert result.components[1, DRAWDOWN] == 100.0
    assert result.data_complete.tolist() == [False, False, False]


def test_parameters_may_differ_per_position():
    params = ScoringParams.stack(
        [ScoringParams(fee_rate_percent=0.05),
         ScoringParams(fee_rate_percent=0.05, drawdown_limit_percent=4.0,
                       weights=(0.2, 0.2, 0.2, 0.2, 0.2))],
        [0, 1, 0])
    result = scoring.score_positions(positions(n=3), market(SPIKE_CLOSES, THIN_VOLUMES), params)
    assert result.components[:, DRAWDOWN].tolist() == [60.0, 50.0, 60.0]
    # second: (75 + 50 + 60 + 50 + 15) / 5
    assert result.score.tolist() == [54.75, 50.0, 54.75]


def test_weights_must_sum_to_one():
    with pytest.raises(ValueError, match="sum to 1"):
        score_one(params=ScoringParams(weights=(0.2, 0.2, 0.2, 0.2, 0.3)))


def test_no_positions_is_an_empty_result():
    result = scoring.score_positions(positions(n=0), market(SPIKE_CLOSES, THIN_VOLUMES), PARAMS)
    assert result.score.shape == (0,)
    assert result.components.shape == (0, 5)


def test_the_candle_matrix_places_candles_by_time_and_keeps_gaps():
    windows = MarketWindows.of([(1, 2, 2, 3), (1, 2, 2, 3)])
    # row 0: candles at 0, 300, 900 (600 missing); row 1: a single candle
    m = scoring.build_market_matrix(
        row=[0, 0, 0, 1], open_time=[0.0, 300.0, 900.0, 600.0], close=[1.0, 2.0, 4.0, 9.0],
        volume=[10.0, 20.0, 40.0, 90.0], timeframe_seconds=[300.0, 300.0], windows=windows)
    assert m.closes.shape == (2, 4)
    assert np.array_equal(m.closes, [[1.0, 2.0, np.nan, 4.0], [np.nan, np.nan, np.nan, 9.0]],
                          equal_nan=True)
    assert m.latest_open.tolist() == [900.0, 600.0]


def test_price_extremes_cover_the_candles_closed_since_open():
    m = market([5.0, 9.0, 7.0, 3.0, 6.0], [1.0] * 5)
    highest, lowest = scoring.price_extremes(m, np.array([0, 0, 0, -1]), np.array([2, 4, 0, 3]))
    assert np.array_equal(highest, [6.0, 9.0, np.nan, np.nan], equal_nan=True)
    assert np.array_equal(lowest, [3.0, 3.0, np.nan, np.nan], equal_nan=True)


def test_candles_closed_since_counts_whole_candles_from_the_latest_close():
    # latest candle opened at 1000 and closed at 1300
    counts = scoring.candles_closed_since([1300.0, 1299.0, 1000.0, 700.0, 2000.0, np.nan],
                                          1000.0, 300.0)
    assert counts.tolist() == [1, 1, 2, 3, 0, 0]


finite = st.floats(min_value=-1e12, max_value=1e12, allow_nan=False, allow_infinity=False)
any_finite = st.floats(allow_nan=False, allow_infinity=False)


@settings(max_examples=300, deadline=None)
@given(n=st.integers(1, 6), data=st.data())
def test_every_score_stays_within_0_and_100_for_any_finite_input(n, data):
    vector = lambda elements=any_finite: data.draw(  # noqa: E731
        hnp.arrays(np.float64, n, elements=elements))
    windows = MarketWindows.of([(data.draw(st.integers(1, 4)), data.draw(st.integers(2, 6)),
                                 data.draw(st.integers(2, 4)), data.draw(st.integers(5, 9)))
                                for _ in range(2)])
    width = windows.width()
    m = MarketMatrix(data.draw(hnp.arrays(np.float64, (2, width), elements=any_finite)),
                     data.draw(hnp.arrays(np.float64, (2, width), elements=any_finite)),
                     windows, np.zeros(2))
    p = PositionArrays(side=vector(), entry_price=vector(), peak_price=vector(),
                       trough_price=vector(), price=vector(), minutes_open=vector(),
                       max_holding_minutes=vector(),
                       market_row=data.draw(hnp.arrays(np.int64, n, elements=st.integers(-1, 2))))
    params = ScoringParams(
        drawdown_limit_percent=data.draw(st.floats(0.01, 100)),
        loss_limit_percent=data.draw(st.floats(0.01, 100)),
        profit_target_percent=data.draw(st.floats(0.01, 100)),
        fee_rate_percent=data.draw(st.floats(0, 4.99)),
        volatility_spike_ratio=data.draw(st.floats(1.01, 100)))
    with np.errstate(all="raise"):
        result = scoring.score_positions(p, m, params)
    assert np.all((result.components >= 0) & (result.components <= 100))
    assert np.all((result.score >= 0) & (result.score <= 100))
    assert set(np.unique(result.level)) <= {scoring.SAFE, scoring.WARNING, scoring.CRITICAL}
