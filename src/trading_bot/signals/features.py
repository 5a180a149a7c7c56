"""Vectorized indicators on numpy arrays (no row loops, no pandas needed at run time).

Definitions follow TA-Lib's defaults: EMA and Wilder smoothing are seeded with the simple mean of
their first `period` inputs; Bollinger uses the population standard deviation; values before the
warm-up are NaN. Recursive filters are evaluated in closed form per block (see `_linear_filter`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
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


PAIRWISE_BLOCK = 128  # numpy's PW_BLOCKSIZE


def _pairwise_sum(term: Callable[[int], np.ndarray], count: int, offset: int = 0) -> np.ndarray:
    """Σ term(offset) … term(offset + count - 1) in the order numpy's sum uses (pairwise_sum in
    numpy/_core/src/umath/loops_utils.h.src: 8 running sums, then a tree, halves above 128 terms).

    A numpy reduction picks its order from the array's layout; elementwise additions of whole
    slices in a fixed order give each window and each series the same bits however many are
    computed at once (and the bits np.sum gives one window: tested)."""
    if count < 8:
        total = term(offset)
        for j in range(offset + 1, offset + count):
            total = total + term(j)
        return total
    if count <= PAIRWISE_BLOCK:
        r = [term(offset + j) for j in range(8)]
        whole = count - count % 8
        for i in range(offset + 8, offset + whole, 8):
            r = [r[j] + term(i + j) for j in range(8)]
        total = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]))
        for j in range(offset + whole, offset + count):
            total = total + term(j)
        return total
    half = count // 2
    half -= half % 8
    return _pairwise_sum(term, half, offset) + _pairwise_sum(term, count - half, offset + half)


def _mean_of(term: Callable[[int], np.ndarray], count: int) -> np.ndarray:
    """numpy's mean: the sum starts from the identity 0.0 (so -0.0 terms give +0.0), then ÷ count."""
    return (0.0 + _pairwise_sum(term, count)) / count


def _kept(n: int, last: int | None) -> int:
    """How many of n values a `last=` argument keeps (None: all)."""
    return n if last is None else max(0, min(last, n))


def _newest(values: np.ndarray, keep: int) -> np.ndarray:
    """The newest `keep` values, copied when that is a part: a view would keep the whole array alive."""
    n = values.shape[-1]
    return values if keep == n else values[..., n - keep :].copy()


def _nans(values: np.ndarray, keep: int) -> np.ndarray:
    return np.full((*values.shape[:-1], keep), np.nan)


def _linear_filter(values: np.ndarray, alpha: float, seed: float | np.ndarray, last: int | None = None) -> np.ndarray:
    """y[k] = alpha*x[k] + (1-alpha)*y[k-1], y[-1] = seed, along the last axis, without a Python loop
    per row (a seed per series when values holds several); last: only the newest `last` y.

    Within a block y[k] = r^k * (seed + alpha * cumsum(x[j] * r^-j)), r = 1 - alpha. The factor r^-k
    grows, so blocks are short enough to stay far from overflow; the rounding error stays about
    block × eps × |x| because the growth cancels when multiplied back. A block before the newest
    values only hands its last y on, computed by the same operations as when all are kept.
    """
    decay = 1.0 - alpha
    n = values.shape[-1]
    keep = _kept(n, last)
    out = np.empty((*values.shape[:-1], keep), dtype=np.float64)
    if keep == 0:
        return out
    if decay == 0.0:
        out[...] = values[..., n - keep :]
        return out
    block = int(min(256, max(1, 120 * np.log(10) // -np.log(decay))))
    grow_all, shrink_all = _block_powers(decay, block)
    prev = np.asarray(seed, dtype=np.float64)[..., None]
    first_kept = n - keep
    for start in range(0, n, block):
        chunk = values[..., start : start + block]
        m = chunk.shape[-1]
        sums = np.cumsum(chunk * shrink_all[:m], axis=-1)
        if start + m <= first_kept:
            prev = (sums[..., -1:] * alpha + prev) * grow_all[m - 1]
            continue
        partial = sums * alpha
        partial += prev
        partial *= grow_all[:m]
        skip = max(first_kept - start, 0)
        out[..., start + skip - first_kept : start + m - first_kept] = partial[..., skip:]
        prev = partial[..., -1:]
    return out


def _seeded_smooth(values: np.ndarray, period: int, alpha: float, first: int = 0,
                   last: int | None = None) -> np.ndarray:
    """Exponential smoothing seeded by the mean of values[first:first+period] (TA-Lib style)."""
    n = values.shape[-1]
    keep = _kept(n, last)
    out = _nans(values, keep)
    seed_end = first + period
    if n < seed_end:
        return out
    seed = _mean_of(lambda j: values[..., first + j], period)
    smoothed = n - seed_end  # the values after the seed's
    kept_smoothed = min(keep, smoothed)
    if kept_smoothed:
        out[..., keep - kept_smoothed :] = _linear_filter(values[..., seed_end:], alpha, seed, kept_smoothed)
    if keep > smoothed:
        out[..., keep - smoothed - 1] = seed
    return out


def ema(values: np.ndarray, period: int, first: int = 0, last: int | None = None) -> np.ndarray:
    return _seeded_smooth(values, period, 2.0 / (period + 1), first, last)


def wilder(values: np.ndarray, period: int, first: int = 0, last: int | None = None) -> np.ndarray:
    return _seeded_smooth(values, period, 1.0 / period, first, last)


def rsi(close: np.ndarray, period: int = 14, last: int | None = None) -> np.ndarray:
    n = close.shape[-1]
    keep = _kept(n, last)
    out = _nans(close, keep)
    if n <= period:
        return out
    delta = np.diff(close, axis=-1)
    moves = min(keep, n - 1)  # value t comes from the move into candle t (none into the first)
    avg_gain = wilder(np.maximum(delta, 0.0), period, last=moves)
    avg_loss = wilder(np.maximum(-delta, 0.0), period, last=moves)
    with np.errstate(divide="ignore", invalid="ignore"):
        total = avg_gain + avg_loss
        value = np.where(total > 0, 100.0 * avg_gain / total, 50.0)
    out[..., keep - moves :] = np.where(np.isnan(avg_gain), np.nan, value)
    return out


def true_range(high: np.ndarray, low: np.ndarray, close: np.ndarray) -> np.ndarray:
    out = np.full(close.shape, np.nan)
    if close.shape[-1] < 2:
        return out
    prev_close = close[..., :-1]
    out[..., 1:] = np.maximum(high[..., 1:], prev_close) - np.minimum(low[..., 1:], prev_close)
    return out


def atr(high: np.ndarray, low: np.ndarray, close: np.ndarray, period: int = 14, last: int | None = None) -> np.ndarray:
    n = close.shape[-1]
    keep = _kept(n, last)
    out = _nans(close, keep)
    if n <= period:
        return out
    moves = min(keep, n - 1)
    out[..., keep - moves :] = wilder(true_range(high, low, close)[..., 1:], period, last=moves)
    return out


def rolling_mean_std(values: np.ndarray, period: int, last: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Rolling mean and population std along the last axis (two-pass per window: no E[x²]−E[x]²
    cancellation), each window summed as np.mean sums it; last: only the windows that end there."""
    n = values.shape[-1]
    keep = _kept(n, last)
    start = max(0, n - keep - period + 1)
    values = values[..., start:]
    mean = _nans(values, keep)
    std = _nans(values, keep)
    windows = min(keep, values.shape[-1] - period + 1)
    if windows <= 0:
        return mean, std
    offset = values.shape[-1] - period + 1 - windows  # of the first kept window

    def shifted(j: int) -> np.ndarray:  # the j-th value of every kept window
        return values[..., offset + j : offset + j + windows]

    mu = _mean_of(shifted, period)

    def squared(j: int) -> np.ndarray:
        centred = shifted(j) - mu
        return centred * centred

    mean[..., keep - windows :] = mu
    std[..., keep - windows :] = np.sqrt(_mean_of(squared, period))
    return mean, std


def macd(close: np.ndarray, fast: int, slow: int, signal: int,
         last: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    line = ema(close, fast) - ema(close, slow)  # all of it: the signal line smooths it from the start
    keep = _kept(close.shape[-1], last)
    signal_line = ema(line, signal, first=slow - 1, last=keep)
    line = _newest(line, keep)
    return line, signal_line, line - signal_line


def compute_features(candles: np.ndarray, params: FeatureParams = DEFAULT_FEATURE_PARAMS,
                     last: int | None = None) -> dict[str, np.ndarray]:
    """All features for an array of candles (columns as in domain/candles.py): shape (n, 6) gives
    arrays of n values; (S, n, 6), S series of one length, gives (S, n) arrays whose row i equals
    the features of candles[i] alone bit for bit (every operation is elementwise along the series
    or a sum in a fixed order). last: only the newest `last` values of each feature (the windowed
    ones are then summed only there; the recursive ones still run from the first candle)."""
    n = candles.shape[-2]
    keep = _kept(n, last)
    high = candles[..., HIGH]
    low = candles[..., LOW]
    close = np.ascontiguousarray(candles[..., CLOSE])
    volume = np.ascontiguousarray(candles[..., VOLUME])
    macd_line, macd_signal, macd_hist = macd(close, params.macd_fast, params.macd_slow, params.macd_signal, keep)
    bb_mid, bb_sd = rolling_mean_std(close, params.bb_period, keep)
    vol_mean, vol_sd = rolling_mean_std(volume, params.volume_period, keep)
    close_kept = _newest(close, keep)
    with np.errstate(divide="ignore", invalid="ignore"):
        volume_z = np.where(vol_sd > 0, (volume[..., n - keep :] - vol_mean) / vol_sd, 0.0)
    volume_z[np.isnan(vol_mean)] = np.nan
    return {
        "close": close_kept,
        "rsi": rsi(close, params.rsi_period, keep),
        "ema_fast": ema(close, params.ema_fast, last=keep),
        "ema_slow": ema(close, params.ema_slow, last=keep),
        "macd": macd_line,
        "macd_signal": macd_signal,
        "macd_hist": macd_hist,
        "bb_upper": bb_mid + params.bb_std * bb_sd,
        "bb_middle": bb_mid,
        "bb_lower": bb_mid - params.bb_std * bb_sd,
        "atr": atr(high, low, close, params.atr_period, keep),
        "volume_z": volume_z,
        "candle_dir": np.sign(close_kept - candles[..., n - keep :, OPEN]),
    }


BATCH_VALUES = 1 << 17  # values per column in one batch: 1 MiB per temporary, so they stay in cache


def compute_features_many(series: Sequence[np.ndarray], params: FeatureParams = DEFAULT_FEATURE_PARAMS,
                          last: int | None = None) -> dict[str, np.ndarray]:
    """compute_features of many series of one length at once: (len(series), last) per feature, row
    i equal to compute_features(series[i], params, last) bit for bit. Stacked a few at a time, so
    the per-call numpy overhead is paid per batch and the temporaries stay small."""
    if not series:
        raise ValueError("compute_features_many needs at least one series")
    n = series[0].shape[0]
    if any(s.shape[0] != n for s in series):
        raise ValueError("compute_features_many: the series must all have the same length")
    step = max(1, BATCH_VALUES // max(n, 1))
    parts = [compute_features(np.stack(series[i : i + step]), params, last) for i in range(0, len(series), step)]
    if len(parts) == 1:
        return parts[0]
    return {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}
