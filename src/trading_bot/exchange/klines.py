"""Kline requests: the page size, the request weight Binance charges per page, and the one walk over
pages that both the daemon's ExchangeSource and `trading-bot fetch` make."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from dataclasses import dataclass

from trading_bot.exchange.client import ExchangeClient

MAX_KLINES_PER_REQUEST = 1000  # ccxt's cap for binance klines


def klines_weight(limit: int) -> int:
    if limit < 100:
        return 1
    if limit < 500:
        return 2
    return 5 if limit <= 1000 else 10


@dataclass(frozen=True)
class KlinePage:
    since_ms: int  # the open time this request started at
    limit: int  # candles asked for
    rows: list[list[float]]  # the exchange's answer, [ts, open, high, low, close, volume] rows (maybe none)
    next_ms: int  # where the next request starts


async def kline_pages(client: ExchangeClient, symbol: str, timeframe: str, tf_ms: int, start_ms: int, end_ms: int,
                      *, past_gaps: bool = False) -> AsyncGenerator[KlinePage, None]:
    """The candles opening in [start_ms, end_ms], one request per page. Each page asks for no more than
    is left, since Binance charges by the limit asked (a top-up of 7 candles costs 1, not a whole
    page's 5), and the next page starts after the last candle received.

    An empty or short page ends the walk: the exchange has nothing newer. With past_gaps (a long
    download, where history may have holes) the walk goes on to end_ms instead: an empty page moves
    on by the whole page, and every page moves on by at least one candle, so a gap can neither stop
    the download early nor loop it forever."""
    cursor = start_ms
    while cursor <= end_ms:
        limit = min(MAX_KLINES_PER_REQUEST, (end_ms - cursor) // tf_ms + 1)
        rows = await client.call("fetch_ohlcv", symbol, timeframe, since=cursor, limit=limit, weight=klines_weight(limit))
        next_ms = int(rows[-1][0]) + tf_ms if rows else cursor + limit * tf_ms
        done = not past_gaps and (not rows or next_ms <= cursor or len(rows) < limit)
        if past_gaps:
            next_ms = max(next_ms, cursor + tf_ms)
        yield KlinePage(cursor, limit, rows, next_ms)
        if done:
            return
        cursor = next_ms
