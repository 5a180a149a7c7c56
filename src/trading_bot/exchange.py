"""Public market data through ccxt (no API key needed), and the network probe the paper mode uses
to decide between the exchange and the synthetic market.

ccxt is imported only when a client is first needed: it costs about a second and most of the
memory budget, and a paper run on a warm cache must be ready before that.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any
from urllib.parse import urlparse

import numpy as np

from trading_bot.candle_cache import EMPTY, TS
from trading_bot.sources import FetchResult
from trading_bot.timeframes import last_closed_open_ms

log = logging.getLogger(__name__)

# Hosts to probe without importing ccxt; other exchange ids ask ccxt for theirs.
KNOWN_HOSTS = {
    "binanceusdm": "fapi.binance.com",
    "binance": "api.binance.com",
    "binancecoinm": "dapi.binance.com",
    "bybit": "api.bybit.com",
    "okx": "www.okx.com",
}
MAX_KLINES_PER_REQUEST = 1000  # ccxt's cap for binance klines


def exchange_host(exchange_id: str, exchange_url: str = "") -> tuple[str, int]:
    if exchange_url:
        parsed = urlparse(exchange_url)
        return parsed.hostname or "", parsed.port or (443 if parsed.scheme == "https" else 80)
    if exchange_id in KNOWN_HOSTS:
        return KNOWN_HOSTS[exchange_id], 443
    import ccxt  # only for an exchange we have no host for

    api = getattr(ccxt, exchange_id)().urls.get("api")
    url = next(iter(api.values())) if isinstance(api, dict) else str(api)
    return urlparse(url).hostname or "", 443


async def network_reachable(host: str, port: int, timeout: float = 3.0) -> tuple[bool, str]:
    """Can we open a TCP connection to the exchange? (DNS failure answers at once offline.)"""
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    except (TimeoutError, OSError) as exc:
        return False, f"{host}:{port} unreachable ({type(exc).__name__}: {exc or 'timed out'})"
    writer.close()
    try:
        await writer.wait_closed()
    except OSError:
        pass
    return True, f"{host}:{port} reachable"


def _point_at(client: Any, base_url: str) -> None:
    """Send every REST endpoint family to base_url (a demo endpoint or our fake exchange)."""
    api = client.urls.get("api", {})
    if isinstance(api, dict):
        for name, url in api.items():
            if isinstance(url, str):
                path = urlparse(url).path
                api[name] = base_url.rstrip("/") + path


class ExchangeSource:
    """Candles from a ccxt exchange's public endpoints. The client is created inside the running
    event loop on first use and closed by close()."""

    name = "exchange"

    def __init__(self, exchange_id: str, exchange_url: str = "") -> None:
        self.exchange_id = exchange_id
        self.exchange_url = exchange_url
        self._client: Any = None

    async def client(self) -> Any:
        if self._client is None:
            import ccxt.async_support as ccxt_async

            klass = getattr(ccxt_async, self.exchange_id, None)
            if klass is None:
                raise ValueError(f"unknown ccxt exchange id {self.exchange_id!r}")
            client = klass({"enableRateLimit": True, "options": {"fetchCurrencies": False}})
            if self.exchange_url:
                _point_at(client, self.exchange_url)
            self._client = client
        return self._client

    async def fetch(self, symbol: str, timeframe: str, tf_ms: int, since_ms: int | None, now_ms: int,
                    limit: int, last_close: float | None) -> FetchResult:
        """Closed candles from since_ms (default: the newest `limit`), paginated, plus the forming
        candle's open when the exchange returned it."""
        client = await self.client()
        last_open = last_closed_open_ms(now_ms, tf_ms)
        cursor = last_open - (limit - 1) * tf_ms if since_ms is None else max(since_ms, last_open - (limit - 1) * tf_ms)
        rows: list[list[float]] = []
        while cursor <= last_open + tf_ms:
            batch = await client.fetch_ohlcv(symbol, timeframe, since=cursor, limit=MAX_KLINES_PER_REQUEST)
            if not batch:
                break
            rows.extend(batch)
            next_cursor = int(batch[-1][0]) + tf_ms
            if next_cursor <= cursor or len(batch) < MAX_KLINES_PER_REQUEST:
                break
            cursor = next_cursor
        candles = np.array(rows, dtype=np.float64).reshape(-1, 6) if rows else EMPTY.copy()
        closed = candles[candles[:, TS] <= last_open]
        forming = candles[candles[:, TS] == last_open + tf_ms]
        if forming.shape[0]:
            return FetchResult(closed, float(forming[0, 1]), int(forming[0, TS]))
        return FetchResult(closed)

    async def close(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            await client.close()
