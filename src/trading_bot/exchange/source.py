"""ExchangeSource: the daemon's candles from the exchange's public klines, through the shared client."""

from __future__ import annotations

from contextlib import aclosing

import numpy as np

from trading_bot.domain.candles import COLUMNS, EMPTY, OPEN, TS
from trading_bot.domain.timeframes import last_closed_open_ms
from trading_bot.exchange.client import ExchangeClient
from trading_bot.exchange.klines import kline_pages
from trading_bot.marketdata.sources import FetchResult


class ExchangeSource:
    """Candles from the exchange's public klines through the shared client (paginated: klines.py)."""

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
        start = first_wanted if since_ms is None else max(since_ms, first_wanted)
        rows: list[list[float]] = []
        # Up to the forming candle: its open is the paper fill price.
        async with aclosing(kline_pages(self.pool, symbol, timeframe, tf_ms, start, last_open + tf_ms)) as pages:
            async for page in pages:
                rows.extend(page.rows)
        candles = np.array(rows, dtype=np.float64).reshape(-1, COLUMNS) if rows else EMPTY.copy()
        closed = candles[candles[:, TS] <= last_open]
        forming = candles[candles[:, TS] == last_open + tf_ms]
        if forming.shape[0]:
            return FetchResult(closed, float(forming[0, OPEN]), int(forming[0, TS]))
        return FetchResult(closed)

    async def close(self) -> None:
        if self.owns_pool:
            await self.pool.close()
