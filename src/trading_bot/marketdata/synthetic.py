"""A deterministic synthetic market, for the offline demo and for tests.

Each candle's randomness depends only on (seed, symbol, timeframe, candle open time), so the same
clock gives the same candles however the fetches are split. Prices follow a fat-tailed random walk
whose volatility and drift vary slowly over time (clustering and trends, so the indicators have
something to see), at roughly crypto-like volatility (about 70 %/year).
"""

from __future__ import annotations

import zlib

import numpy as np

from trading_bot.domain.candles import CLOSE, COLUMNS, HIGH, LOW, OPEN, TS, VOLUME

BLOCK = 256  # candles per random block


ANNUAL_VOL = 0.7


MINUTES_PER_YEAR = 525_600.0


BASE_PRICES = {"BTC": 60_000.0, "ETH": 3_000.0, "SOL": 150.0, "BNB": 600.0, "XRP": 0.6}


# The synthetic market's own listing, what TRADING_SYMBOLS=top:N or all trade on it: the five named
# above, then S001 … S395 (400 perpetuals, about Binance USDⓈ-M's count). It has no real volume, so
# its ranking is this order: top:3 is BTC, ETH, SOL, the default symbols.
SYNTHETIC_SYMBOLS = (*(f"{base}/USDT:USDT" for base in BASE_PRICES), *(f"S{i:03d}/USDT:USDT" for i in range(1, 396)))


def _symbol_hash(symbol: str) -> int:
    return zlib.crc32(symbol.encode())


def base_price(symbol: str) -> float:
    base = symbol.split("/")[0]
    if base in BASE_PRICES:
        return BASE_PRICES[base]
    return float(10 ** (_symbol_hash(symbol) % 5 - 1) * (1 + _symbol_hash(symbol) % 9))


def _block_draws(seed: int, symbol: str, tf_ms: int, block: int) -> np.ndarray:
    rng = np.random.Generator(np.random.PCG64([seed & 0xFFFFFFFF, _symbol_hash(symbol), tf_ms, block]))
    return rng.standard_normal((BLOCK, 5))


def _draws(seed: int, symbol: str, tf_ms: int, start_ts: int, count: int) -> np.ndarray:
    index = start_ts // tf_ms + np.arange(count)
    blocks = index // BLOCK
    out = np.empty((count, 5))
    for block in np.unique(blocks):
        mask = blocks == block
        out[mask] = _block_draws(seed, symbol, tf_ms, int(block))[index[mask] % BLOCK]
    return out


def synthetic_candles(symbol: str, tf_ms: int, start_ts: int, count: int, prev_close: float | None,
                      seed: int) -> np.ndarray:
    """`count` consecutive candles opening at start_ts, continuing from prev_close."""
    out = np.empty((count, COLUMNS))
    if count <= 0:
        return out[:0]
    ts = start_ts + tf_ms * np.arange(count, dtype=np.int64)
    z = _draws(seed, symbol, tf_ms, start_ts, count)
    phase = (_symbol_hash(symbol) % 1000) / 1000.0 * 2 * np.pi
    days = ts / 86_400_000.0
    # Slow regimes: volatility clustering over ~2 weeks, drift swings over ~3 days.
    vol_mult = np.exp(0.4 * np.sin(2 * np.pi * days / 13.0 + phase) + 0.2 * np.sin(2 * np.pi * days / 2.3))
    sigma = ANNUAL_VOL * np.sqrt(tf_ms / 60_000.0 / MINUTES_PER_YEAR) * vol_mult
    drift = 0.03 * sigma * np.sin(2 * np.pi * days / 3.1 + 2 * phase)
    shocks = z[:, 0] * np.where(np.abs(z[:, 1]) > 2.2, 2.5, 1.0)  # occasional fat-tail candles
    log_returns = drift + sigma * shocks
    start_price = base_price(symbol) if prev_close is None else prev_close
    closes = start_price * np.exp(np.cumsum(log_returns))
    opens = np.empty(count)
    opens[0] = start_price
    opens[1:] = closes[:-1]
    wick = 0.5 * sigma
    out[:, TS] = ts
    out[:, OPEN] = opens
    out[:, HIGH] = np.maximum(opens, closes) * np.exp(np.abs(z[:, 2]) * wick)
    out[:, LOW] = np.minimum(opens, closes) * np.exp(-np.abs(z[:, 3]) * wick)
    base_volume = 1_000_000.0 / start_price * np.sqrt(tf_ms / 60_000.0)
    out[:, VOLUME] = base_volume * np.exp(0.4 * z[:, 4]) * (1.0 + 1.5 * np.abs(shocks))
    out[:, CLOSE] = closes
    return out

