"""Timeframe names (ccxt spelling) and the candle arithmetic on millisecond timestamps."""

from __future__ import annotations

TIMEFRAME_MS: dict[str, int] = {
    "1m": 60_000,
    "3m": 180_000,
    "5m": 300_000,
    "15m": 900_000,
    "30m": 1_800_000,
    "1h": 3_600_000,
    "2h": 7_200_000,
    "4h": 14_400_000,
    "6h": 21_600_000,
    "8h": 28_800_000,
    "12h": 43_200_000,
    "1d": 86_400_000,
    "1w": 604_800_000,
}


def timeframe_ms(timeframe: str) -> int:
    try:
        return TIMEFRAME_MS[timeframe]
    except KeyError:
        raise ValueError(
            f"unknown timeframe {timeframe!r} (expected one of {', '.join(TIMEFRAME_MS)})"
        ) from None


def last_closed_open_ms(now_ms: int, tf_ms: int) -> int:
    """Open time of the most recent candle that has fully closed at ``now_ms``.

    1w candles on Binance open on Monday; the epoch was a Thursday, so weeks are offset.
    """
    offset = 345_600_000 if tf_ms == TIMEFRAME_MS["1w"] else 0
    current_open = (now_ms - offset) // tf_ms * tf_ms + offset
    return current_open - tf_ms


def next_close_ms(last_open_ms: int, tf_ms: int) -> int:
    """When the candle after ``last_open_ms`` closes (= when new data is due)."""
    return last_open_ms + 2 * tf_ms

