"""The process's one exchange client, made on first need.

Candles and (live) orders share one ExchangeClient: one weight budget, one connection pool. It is made
only when something needs the exchange, because importing ccxt costs about a second: a paper run on
the synthetic market or a warm cache must be ready before that, and a replay never needs it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from trading_bot.marketdata.sources import CandleSource
from trading_bot.settings import Settings

if TYPE_CHECKING:
    from trading_bot.exchange.client import ExchangeClient


class ExchangeLink:
    def __init__(self, settings: Settings, *, with_keys: bool, now_ms: Callable[[], int],
                 on_activity: Callable[[], None]) -> None:
        self.settings = settings
        self.with_keys = with_keys  # live: the account's API keys; otherwise public endpoints only
        self.now_ms = now_ms
        self.on_activity = on_activity
        self._client: ExchangeClient | None = None  # None until something needs the exchange

    def get(self) -> ExchangeClient:
        """The client, made now if nothing needed it before."""
        if self._client is None:
            from trading_bot.exchange.client import ExchangeClient

            s = self.settings
            key, secret = (s.api_key.reveal(), s.api_secret.reveal()) if self.with_keys else ("", "")
            self._client = ExchangeClient(s.exchange_id, s.exchange_url, key, secret, timeout_ms=s.exchange_timeout_ms,
                                          on_activity=self.on_activity, demo=s.exchange_demo, now_ms=self.now_ms,
                                          recv_window_ms=s.exchange_recv_window_ms)
        return self._client

    def candle_source(self) -> CandleSource:
        """Candles through the shared client (closing the source leaves the client open)."""
        from trading_bot.exchange.source import ExchangeSource

        return ExchangeSource(self.get(), owns_pool=False)

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
