"""Scoring: components in [-1, 1], their directions, the weighted sum, and lazy parameters."""

from __future__ import annotations

import numpy as np
import pytest

from trading_bot.domain.params import COMPONENTS, StrategyConfig, default_config
from trading_bot.marketdata.synthetic import synthetic_candles
from trading_bot.signals.features import compute_features
from trading_bot.signals.scoring import WeightedScoringStrategy, score_components, signal_sides, weighted_score


def features_of(close: np.ndarray, volume: np.ndarray | None = None) -> dict[str, np.ndarray]:
    n = close.shape[0]
    candles = np.column_stack([np.arange(n) * 60_000.0, np.r_[close[0], close[:-1]], close * 1.001, close * 0.999,
                               close, np.ones(n) if volume is None else volume])
    return compute_features(candles)


def test_components_are_bounded_and_nan_only_in_warmup():
    feats = compute_features(synthetic_candles("BTC/USDT:USDT", 60_000, 0, 2000, None, 9))
    comps = score_components(feats)
    assert comps.shape == (2000, len(COMPONENTS))
    assert np.isnan(comps[:33]).any() and not np.isnan(comps[40:]).any()
    assert np.nanmax(np.abs(comps)) <= 1.0


def test_directions_in_a_steady_uptrend():
    feats = features_of(100 * np.exp(np.linspace(0, 0.3, 300)) * (1 + 0.001 * np.sin(np.arange(300))))
    comps = dict(zip(COMPONENTS, score_components(feats)[-1]))
    assert comps["ema"] > 0 and comps["rsi"] < 0  # trend says long, RSI says overbought


def test_volume_confirms_the_candle_direction():
    close = 100 + np.sin(np.arange(100) / 3.0)
    volume = np.ones(100)
    volume[-1] = 50.0
    comps = dict(zip(COMPONENTS, score_components(features_of(close, volume))[-1]))
    assert comps["volume"] == pytest.approx(np.sign(close[-1] - close[-2]) * 1.0)


def test_weighted_score_and_sides():
    comps = np.array([[1, 0, 0, 0, 0], [0, -1, 0, 0, 0], [0.5, 0.5, 0, 0, 0], [np.nan, 0, 0, 0, 0]], dtype=float)
    scores = weighted_score(comps, (0.4, 0.6, 0, 0, 0))
    np.testing.assert_allclose(scores[:3], [0.4, -0.6, 0.5])
    assert signal_sides(scores, 0.45).tolist() == [0, -1, 1, 0]


def test_strategy_slice_equals_whole_frame_rows():
    feats = compute_features(synthetic_candles("ETH/USDT:USDT", 300_000, 0, 600, None, 2))
    strategy = WeightedScoringStrategy("ETH/USDT:USDT", "5m", default_config)
    np.testing.assert_array_equal(strategy.scores(feats, slice(590, 600)), strategy.scores(feats)[590:])


def test_params_follow_a_config_swap():
    configs = [default_config()]
    strategy = WeightedScoringStrategy("BTC/USDT:USDT", "1m", lambda: configs[0])
    assert strategy.params.threshold == 0.15
    configs[0] = StrategyConfig({"version": 1, "defaults": {"threshold": 0.9}})
    assert strategy.params.threshold == 0.9
