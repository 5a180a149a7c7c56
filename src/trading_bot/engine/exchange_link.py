"""The process's one exchange client, made on first need.

Candles and (live) orders share one ExchangeClient: one weight budget, one connection pool. It is made
only when something needs the exchange, because importing ccxt costs about a second: a paper run on
the synthetic market or a warm cache must be ready before that, and a replay never needs it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
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

    def candle_source(self, keys: Sequence[tuple[str, str]] = (), on_push: Callable[[], None] = lambda: None) -> CandleSource:
        """Candles through the shared client (closing the source leaves the client open): pushed over
        the exchange's websockets unless CANDLE_FEED=rest, with REST for history and gaps."""
        from trading_bot.exchange.source import ExchangeSource

        rest = ExchangeSource(self.get(), owns_pool=False)
        s = self.settings
        if s.candle_feed != "websocket" or not keys:
            return rest
        from trading_bot.exchange.ws_candles import PushedCandles

        return PushedCandles(self.get(), keys, rest, ws_url=s.exchange_ws_url, grace_ms=s.candle_push_grace_ms,
                             keepalive_ms=int(s.ws_ping_seconds * 1000), on_push=on_push)

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
