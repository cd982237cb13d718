"""The test bot's strategy: it never enters or exits by itself.

Entries are forced through the bot's REST API by the test; exits come from the
platform (forceexit) — so every event the test sees has a known cause.
Loaded by freqtrade in its own virtualenv (not imported by the project).
"""

from freqtrade.strategy import IStrategy
from pandas import DataFrame


class PlatformTestStrategy(IStrategy):
    INTERFACE_VERSION = 3
    timeframe = "5m"
    minimal_roi = {"0": 100}  # no ROI exit
    stoploss = -0.99  # no stop loss exit
    process_only_new_candles = True
    startup_candle_count = 0

    def populate_indicators(self, dataframe: DataFrame, metadata: dict) -> DataFrame:
        return dataframe

    def populate_entry_trend(self, dataframe: DataFrame, metadata: dict) -> DataFrame:
        dataframe["enter_long"] = 0
        return dataframe

    def populate_exit_trend(self, dataframe: DataFrame, metadata: dict) -> DataFrame:
        dataframe["exit_long"] = 0
        return dataframe
