"""Kline requests: the page size and the request weight Binance charges per page."""

from __future__ import annotations

MAX_KLINES_PER_REQUEST = 1000  # ccxt's cap for binance klines


def klines_weight(limit: int) -> int:
    if limit < 100:
        return 1
    if limit < 500:
        return 2
    return 5 if limit <= 1000 else 10
