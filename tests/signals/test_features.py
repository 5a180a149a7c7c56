"""Features against references computed here, independently, with plain loops from the textbook
(TA-Lib's) definitions."""

from __future__ import annotations

import math

import numpy as np
import pytest

from trading_bot.marketdata.synthetic import synthetic_candles
from trading_bot.signals.features import _linear_filter, compute_features, ema, rolling_mean_std

RTOL = 1e-9
WARMUP = 300  # beyond this every seed difference has decayed far below RTOL


def ref_sma_seeded_smoothing(values: list[float], period: int, alpha: float, first: int = 0) -> list[float]:
    out = [math.nan] * len(values)
    if len(values) < first + period:
        return out
    prev = sum(values[first:first + period]) / period
    out[first + period - 1] = prev
    for i in range(first + period, len(values)):
        prev = alpha * values[i] + (1 - alpha) * prev
        out[i] = prev
    return out


def ref_ema(values, period, first=0):
    return ref_sma_seeded_smoothing(values, period, 2 / (period + 1), first)


def ref_rsi(close: list[float], period: int = 14) -> list[float]:
    out = [math.nan] * len(close)
    gains = [max(close[i] - close[i - 1], 0.0) for i in range(1, len(close))]
    losses = [max(close[i - 1] - close[i], 0.0) for i in range(1, len(close))]
    avg_gain = sum(gains[:period]) / period
    avg_loss = sum(losses[:period]) / period
    out[period] = 100 * avg_gain / (avg_gain + avg_loss)
    for i in range(period, len(gains)):
        avg_gain = (avg_gain * (period - 1) + gains[i]) / period
        avg_loss = (avg_loss * (period - 1) + losses[i]) / period
        out[i + 1] = 100 * avg_gain / (avg_gain + avg_loss)
    return out


def ref_atr(high, low, close, period=14):
    out = [math.nan] * len(close)
    tr = [max(high[i], close[i - 1]) - min(low[i], close[i - 1]) for i in range(1, len(close))]
    value = sum(tr[:period]) / period
    out[period] = value
    for i in range(period, len(tr)):
        value = (value * (period - 1) + tr[i]) / period
        out[i + 1] = value
    return out


def ref_mean_pstd(values, period):
    means, stds = [math.nan] * len(values), [math.nan] * len(values)
    for i in range(period - 1, len(values)):
        window = values[i - period + 1:i + 1]
        mean = sum(window) / period
        means[i] = mean
        stds[i] = math.sqrt(sum((x - mean) ** 2 for x in window) / period)
    return means, stds


@pytest.fixture(scope="module")
def candles() -> np.ndarray:
    return synthetic_candles("BTC/USDT:USDT", 300_000, 1_700_000_000_000, 1500, None, seed=3)


@pytest.fixture(scope="module")
def features(candles):
    return compute_features(candles)


def assert_close_after_warmup(actual: np.ndarray, expected: list[float], scale: float) -> None:
    expected_arr = np.array(expected)
    np.testing.assert_allclose(actual[WARMUP:], expected_arr[WARMUP:], rtol=RTOL, atol=scale * 1e-12)


def test_ema_matches_reference(candles, features):
    close = candles[:, 4].tolist()
    assert_close_after_warmup(features["ema_fast"], ref_ema(close, 9), close[0])
    assert_close_after_warmup(features["ema_slow"], ref_ema(close, 21), close[0])
    # and exactly the TA-Lib seeding from the first value on, not just after the warm-up
    np.testing.assert_allclose(features["ema_slow"][20:], np.array(ref_ema(close, 21))[20:], rtol=1e-12)
    assert np.isnan(features["ema_slow"][:20]).all()


def test_rsi_matches_wilder_reference(candles, features):
    expected = ref_rsi(candles[:, 4].tolist())
    assert np.isnan(features["rsi"][:14]).all()
    np.testing.assert_allclose(features["rsi"][14:], np.array(expected)[14:], rtol=1e-11)


def test_macd_matches_reference(candles, features):
    close = candles[:, 4].tolist()
    line = [a - b for a, b in zip(ref_ema(close, 12), ref_ema(close, 26))]
    signal = ref_ema(line, 9, first=25)
    hist = [a - b for a, b in zip(line, signal)]
    scale = close[0]
    assert_close_after_warmup(features["macd"], line, scale)
    assert_close_after_warmup(features["macd_signal"], signal, scale)
    assert_close_after_warmup(features["macd_hist"], hist, scale)
    assert np.isnan(features["macd_signal"][:33]).all() and not np.isnan(features["macd_signal"][33])


def test_bollinger_uses_population_std(candles, features):
    close = candles[:, 4].tolist()
    mean, std = ref_mean_pstd(close, 20)
    upper = [m + 2 * s for m, s in zip(mean, std)]
    lower = [m - 2 * s for m, s in zip(mean, std)]
    np.testing.assert_allclose(features["bb_middle"][19:], np.array(mean)[19:], rtol=RTOL)
    np.testing.assert_allclose(features["bb_upper"][19:], np.array(upper)[19:], rtol=RTOL)
    np.testing.assert_allclose(features["bb_lower"][19:], np.array(lower)[19:], rtol=RTOL)


def test_atr_matches_wilder_reference(candles, features):
    expected = ref_atr(candles[:, 2].tolist(), candles[:, 3].tolist(), candles[:, 4].tolist())
    assert np.isnan(features["atr"][:14]).all()
    np.testing.assert_allclose(features["atr"][14:], np.array(expected)[14:], rtol=1e-11)


def test_volume_zscore(candles, features):
    volume = candles[:, 5].tolist()
    mean, std = ref_mean_pstd(volume, 20)
    expected = [(v - m) / s for v, m, s in zip(volume, mean, std)]
    np.testing.assert_allclose(features["volume_z"][19:], np.array(expected)[19:], rtol=RTOL)


def test_linear_filter_stays_exact_over_long_series():
    rng = np.random.default_rng(1)
    values = 100 + np.cumsum(rng.standard_normal(100_000))
    for alpha in (2 / 10, 2 / 27, 1 / 14, 0.9):
        out = _linear_filter(values, alpha, values[0])
        prev = values[0]
        expected = np.empty_like(values)
        for i, v in enumerate(values.tolist()):
            prev = alpha * v + (1 - alpha) * prev
            expected[i] = prev
        np.testing.assert_allclose(out, expected, rtol=1e-11)


def test_short_input_gives_nan_not_errors():
    tiny = synthetic_candles("ETH/USDT:USDT", 60_000, 0, 5, None, seed=1)
    feats = compute_features(tiny)
    assert all(len(v) == 5 for v in feats.values())
    assert np.isnan(feats["macd_signal"]).all()
    assert np.isnan(ema(tiny[:, 4], 9)).all()
    mean, std = rolling_mean_std(tiny[:, 4], 20)
    assert np.isnan(mean).all() and np.isnan(std).all()


def test_features_of_a_prefix_equal_the_prefix_of_features(candles):
    """The daemon computes on the candles it has so far; the backtest on all of history. The
    value at candle t must not depend on later candles (no look-ahead), bit for bit."""
    full = compute_features(candles)
    part = compute_features(candles[:700])
    for name, values in part.items():
        np.testing.assert_array_equal(values, full[name][:700], err_msg=name)
