"""Vectorized indicators on numpy arrays (no row loops, no pandas needed at run time).

Definitions follow TA-Lib's defaults: EMA and Wilder smoothing are seeded with the simple mean of
their first `period` inputs; Bollinger uses the population standard deviation; values before the
warm-up are NaN. Recursive filters are evaluated in closed form per block (see `_linear_filter`).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from trading_bot.domain.candles import CLOSE, HIGH, LOW, OPEN, VOLUME


@dataclass(frozen=True)
class FeatureParams:
    rsi_period: int = 14
    ema_fast: int = 9
    ema_slow: int = 21
    macd_fast: int = 12
    macd_slow: int = 26
    macd_signal: int = 9
    bb_period: int = 20
    bb_std: float = 2.0
    atr_period: int = 14
    volume_period: int = 20

    @property
    def warmup(self) -> int:
        """Candles before every feature is defined."""
        return max(
            self.rsi_period + 1,
            self.ema_slow,
            self.macd_slow + self.macd_signal - 1,
            self.bb_period,
            self.atr_period + 1,
            self.volume_period,
        )


DEFAULT_FEATURE_PARAMS = FeatureParams()


@lru_cache(maxsize=64)
def _block_powers(decay: float, block: int) -> tuple[np.ndarray, np.ndarray]:
    steps = np.arange(1, block + 1, dtype=np.float64)
    return decay**steps, decay**-steps


def _linear_filter(values: np.ndarray, alpha: float, seed: float) -> np.ndarray:
    """y[k] = alpha*x[k] + (1-alpha)*y[k-1], y[-1] = seed, without a Python loop per row.

    Within a block y[k] = r^k * (seed + alpha * cumsum(x[j] * r^-j)), r = 1 - alpha. The factor r^-k
    grows, so blocks are short enough to stay far from overflow; the rounding error stays about
    block × eps × |x| because the growth cancels when multiplied back.
    """
    decay = 1.0 - alpha
    n = values.shape[0]
    out = np.empty(n, dtype=np.float64)
    if n == 0:
        return out
    if decay == 0.0:
        out[:] = values
        return out
    block = int(min(256, max(1, 120 * np.log(10) // -np.log(decay))))
    grow_all, shrink_all = _block_powers(decay, block)
    prev = seed
    for start in range(0, n, block):
        chunk = values[start : start + block]
        m = chunk.shape[0]
        partial = np.cumsum(chunk * shrink_all[:m]) * alpha
        partial += prev
        partial *= grow_all[:m]
        out[start : start + m] = partial
        prev = partial[-1]
    return out


def _seeded_smooth(values: np.ndarray, period: int, alpha: float, first: int = 0) -> np.ndarray:
    """Exponential smoothing seeded by the mean of values[first:first+period] (TA-Lib style)."""
    out = np.full(values.shape[0], np.nan)
    seed_end = first + period
    if values.shape[0] < seed_end:
        return out
    seed = float(values[first:seed_end].mean())
    out[seed_end - 1] = seed
    out[seed_end:] = _linear_filter(values[seed_end:], alpha, seed)
    return out


def ema(values: np.ndarray, period: int, first: int = 0) -> np.ndarray:
    return _seeded_smooth(values, period, 2.0 / (period + 1), first)


def wilder(values: np.ndarray, period: int, first: int = 0) -> np.ndarray:
    return _seeded_smooth(values, period, 1.0 / period, first)


def rsi(close: np.ndarray, period: int = 14) -> np.ndarray:
    out = np.full(close.shape[0], np.nan)
    if close.shape[0] <= period:
        return out
    delta = np.diff(close)
    gains = np.maximum(delta, 0.0)
    losses = np.maximum(-delta, 0.0)
    avg_gain = wilder(gains, period)
    avg_loss = wilder(losses, period)
    with np.errstate(divide="ignore", invalid="ignore"):
        total = avg_gain + avg_loss
        value = np.where(total > 0, 100.0 * avg_gain / total, 50.0)
    out[1:] = np.where(np.isnan(avg_gain), np.nan, value)
    return out


def true_range(high: np.ndarray, low: np.ndarray, close: np.ndarray) -> np.ndarray:
    out = np.full(close.shape[0], np.nan)
    if close.shape[0] < 2:
        return out
    prev_close = close[:-1]
    out[1:] = np.maximum(high[1:], prev_close) - np.minimum(low[1:], prev_close)
    return out


def atr(high: np.ndarray, low: np.ndarray, close: np.ndarray, period: int = 14) -> np.ndarray:
    tr = true_range(high, low, close)
    out = np.full(close.shape[0], np.nan)
    if close.shape[0] <= period:
        return out
    out[1:] = wilder(tr[1:], period)
    return out


def rolling_mean_std(values: np.ndarray, period: int) -> tuple[np.ndarray, np.ndarray]:
    """Rolling mean and population std (two-pass per window: no E[x²]−E[x]² cancellation)."""
    n = values.shape[0]
    mean = np.full(n, np.nan)
    std = np.full(n, np.nan)
    if n < period:
        return mean, std
    windows = np.lib.stride_tricks.sliding_window_view(values, period)
    mean[period - 1 :] = windows.mean(axis=1)
    centred = windows - mean[period - 1 :, None]
    std[period - 1 :] = np.sqrt((centred * centred).mean(axis=1))
    return mean, std


def macd(close: np.ndarray, fast: int, slow: int, signal: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    line = ema(close, fast) - ema(close, slow)
    signal_line = ema(line, signal, first=slow - 1)
    return line, signal_line, line - signal_line


def compute_features(candles: np.ndarray, params: FeatureParams = DEFAULT_FEATURE_PARAMS) -> dict[str, np.ndarray]:
    """All features for an array of candles (columns as in domain/candles.py)."""
    open_ = candles[:, OPEN]
    high = candles[:, HIGH]
    low = candles[:, LOW]
    close = np.ascontiguousarray(candles[:, CLOSE])
    volume = np.ascontiguousarray(candles[:, VOLUME])
    macd_line, macd_signal, macd_hist = macd(close, params.macd_fast, params.macd_slow, params.macd_signal)
    bb_mid, bb_sd = rolling_mean_std(close, params.bb_period)
    vol_mean, vol_sd = rolling_mean_std(volume, params.volume_period)
    with np.errstate(divide="ignore", invalid="ignore"):
        volume_z = np.where(vol_sd > 0, (volume - vol_mean) / vol_sd, 0.0)
    volume_z[np.isnan(vol_mean)] = np.nan
    return {
        "close": close,
        "rsi": rsi(close, params.rsi_period),
        "ema_fast": ema(close, params.ema_fast),
        "ema_slow": ema(close, params.ema_slow),
        "macd": macd_line,
        "macd_signal": macd_signal,
        "macd_hist": macd_hist,
        "bb_upper": bb_mid + params.bb_std * bb_sd,
        "bb_middle": bb_mid,
        "bb_lower": bb_mid - params.bb_std * bb_sd,
        "atr": atr(high, low, close, params.atr_period),
        "volume_z": volume_z,
        "candle_dir": np.sign(close - open_),
    }

