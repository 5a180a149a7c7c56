"""Backtest one bot over history with the very rules the paper broker runs (domain/rules.py).

This is the reference: it walks the candles one by one through `on_closed_candle`, exactly as the
daemon does when candles arrive. Given the same candles and parameters, its trades are the paper
broker's trades.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from trading_bot.domain.candles import HIGH, LOW, OPEN, TS
from trading_bot.domain.params import StrategyParams
from trading_bot.domain.rules import on_closed_candle
from trading_bot.domain.sizing import RiskLimits, position_size
from trading_bot.domain.trades import BotBook, ClosedTrade, Costs
from trading_bot.signals.features import DEFAULT_FEATURE_PARAMS, FeatureParams, compute_features
from trading_bot.signals.scoring import score_components, weighted_score


@dataclass
class BacktestResult:
    trades: list[ClosedTrade] = field(default_factory=list)
    final_balance: float = 0.0
    open_position: bool = False


def series_scores(candles: np.ndarray, params: StrategyParams,
                  feature_params: FeatureParams = DEFAULT_FEATURE_PARAMS) -> np.ndarray:
    return weighted_score(score_components(compute_features(candles, feature_params)), params.weights)


def backtest_series(symbol: str, timeframe: str, candles: np.ndarray, params: StrategyParams, costs: Costs,
                    limits: RiskLimits, initial_balance: float, start_index: int = 0,
                    scores: np.ndarray | None = None) -> BacktestResult:
    """Trades from candles[start_index:] (earlier candles only warm the indicators up)."""
    if scores is None:
        scores = series_scores(candles, params)
    balance = initial_balance
    book = BotBook(symbol, timeframe)
    result = BacktestResult()

    def size(side: int, entry: float, stop: float) -> float:
        return position_size(balance, entry, stop, limits)

    for i in range(start_index, candles.shape[0]):
        outcome = on_closed_candle(
            book, int(candles[i, TS]), float(candles[i, OPEN]), float(candles[i, HIGH]), float(candles[i, LOW]),
            float(scores[i]), params.threshold, params.sl_pct, params.rr_ratio, costs, size,
        )
        if outcome.closed is not None:
            balance += outcome.closed.pnl
            result.trades.append(outcome.closed)
    result.final_balance = balance
    result.open_position = book.position is not None
    return result

