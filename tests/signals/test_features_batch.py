"""Features of many series at once (the daemon's top of the hour) equal each series' own, bit for bit."""

from __future__ import annotations

import numpy as np
import pytest

from trading_bot.marketdata.synthetic import synthetic_candles
from trading_bot.signals.features import DEFAULT_FEATURE_PARAMS, _mean_of, compute_features, compute_features_many


def random_walk(rng: np.random.Generator, n: int, *, flat: bool = False, gaps: bool = False) -> np.ndarray:
    """Candles from a random walk; flat: a stretch with no move and no volume (zero deviations,
    RSI's 0/0); gaps: rows missing, as when the exchange skipped candles."""
    close = 50 * np.exp(np.cumsum(rng.normal(0, 0.01, n + 40)))
    volume = rng.lognormal(3, 1, n + 40)
    if flat:
        close[15:60] = close[15]
        volume[15:60] = 0.0
    open_ = np.r_[close[0], close[:-1]]
    high = np.maximum(open_, close) * (1 + rng.uniform(0, 0.003, n + 40))
    low = np.minimum(open_, close) * (1 - rng.uniform(0, 0.003, n + 40))
    ts = np.arange(n + 40) * 60_000.0
    candles = np.column_stack([ts, open_, high, low, close, volume])
    keep = np.sort(rng.choice(n + 40, n, replace=False)) if gaps else np.arange(n)
    return candles[keep]


def assert_same_bits(actual: np.ndarray, expected: np.ndarray, what: str) -> None:
    assert actual.shape == expected.shape, what
    assert np.array_equal(actual, expected, equal_nan=True), what
    assert np.array_equal(np.signbit(actual), np.signbit(expected)), what  # -0.0 is not 0.0 here


def batch_of(n: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    synthetic = [synthetic_candles(f"S{i}/USDT:USDT", tf, 0, n, None, seed) for i, tf in enumerate((60_000, 3_600_000))]
    walks = [random_walk(rng, n, flat=i % 2 == 0, gaps=i % 3 == 0) for i in range(5)]
    return synthetic + walks


@pytest.mark.parametrize("n", [5, 20, 34, 35, 300, 600])
@pytest.mark.parametrize("last", [None, 1, 3, 30])
def test_a_batch_equals_each_series_alone(n, last):
    series = batch_of(n, seed=n)
    batch = compute_features_many(series, DEFAULT_FEATURE_PARAMS, last)
    for i, candles in enumerate(series):
        alone = compute_features(candles)
        for name, values in alone.items():
            expected = values if last is None else values[-last:]
            assert_same_bits(batch[name][i], expected, f"{name} of series {i}, n={n}, last={last}")


def test_a_batch_in_several_stacks_equals_one(monkeypatch):
    series = batch_of(300, seed=7) * 3
    whole = compute_features_many(series, last=2)
    monkeypatch.setattr("trading_bot.signals.features.BATCH_VALUES", 600)  # two series per stack
    for name, values in compute_features_many(series, last=2).items():
        assert_same_bits(values, whole[name], name)


def test_series_of_different_lengths_are_refused():
    with pytest.raises(ValueError, match="same length"):
        compute_features_many(batch_of(40, 1)[:1] + batch_of(41, 1)[:1])


@pytest.mark.parametrize("period", [3, 8, 9, 20, 129, 300])
def test_window_sums_in_numpy_order(period):
    """np.mean of each window (what the features were computed with before the batch) bit for bit."""
    rng = np.random.default_rng(period)
    values = rng.normal(0, 1, 700) * 10.0 ** rng.integers(-8, 9, 700)
    values[100:130] = -0.0
    windows = np.lib.stride_tricks.sliding_window_view(values, period)
    count = values.shape[0] - period + 1
    ours = _mean_of(lambda j: values[j : j + count], period)
    assert_same_bits(ours, windows.mean(axis=1), f"period {period}")
