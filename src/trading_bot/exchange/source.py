"""ExchangeSource: the daemon's candles from the exchange's public klines, through the shared client."""

from __future__ import annotations

import numpy as np

from trading_bot.domain.candles import EMPTY, TS
from trading_bot.domain.timeframes import last_closed_open_ms
from trading_bot.exchange.client import ExchangeClient
from trading_bot.exchange.klines import MAX_KLINES_PER_REQUEST, klines_weight
from trading_bot.marketdata.sources import FetchResult


class ExchangeSource:
    """Candles from the exchange's public klines through the pool (paginated)."""

    name = "exchange"

    def __init__(self, pool: ExchangeClient, owns_pool: bool = True) -> None:
        self.pool = pool
        self.owns_pool = owns_pool

    async def fetch(self, symbol: str, timeframe: str, tf_ms: int, since_ms: int | None, now_ms: int,
                    limit: int, last_close: float | None) -> FetchResult:
        """Closed candles from since_ms (default: the newest `limit`), plus the forming candle's open
        when the exchange returned it."""
        last_open = last_closed_open_ms(now_ms, tf_ms)
        first_wanted = last_open - (limit - 1) * tf_ms
        cursor = first_wanted if since_ms is None else max(since_ms, first_wanted)
        rows: list[list[float]] = []
        while cursor <= last_open + tf_ms:
            request_limit = min(MAX_KLINES_PER_REQUEST, (last_open + tf_ms - cursor) // tf_ms + 1)
            batch = await self.pool.call("fetch_ohlcv", symbol, timeframe, since=cursor, limit=request_limit,
                                         weight=klines_weight(request_limit))
            if not batch:
                break
            rows.extend(batch)
            next_cursor = int(batch[-1][0]) + tf_ms
            if next_cursor <= cursor or len(batch) < request_limit:
                break
            cursor = next_cursor
        candles = np.array(rows, dtype=np.float64).reshape(-1, 6) if rows else EMPTY.copy()
        closed = candles[candles[:, TS] <= last_open]
        forming = candles[candles[:, TS] == last_open + tf_ms]
        if forming.shape[0]:
            return FetchResult(closed, float(forming[0, 1]), int(forming[0, TS]))
        return FetchResult(closed)

    async def close(self) -> None:
        if self.owns_pool:
            await self.pool.close()
