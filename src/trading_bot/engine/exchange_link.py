"""The process's one exchange client, made on first need, and (live) the account's user data stream.

Candles and (live) orders share one ExchangeClient: one weight budget, one connection pool. It is made
only when something needs the exchange, because importing ccxt costs about a second: a paper run on
the synthetic market or a warm cache must be ready before that, and a replay never needs it. The user
data stream's listen key requests go through the same client; the link closes the stream first.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from trading_bot.marketdata.sources import CandleSource
from trading_bot.settings import Settings

if TYPE_CHECKING:
    from trading_bot.exchange.client import ExchangeClient
    from trading_bot.exchange.user_stream import UserStream

log = logging.getLogger("trading_bot")


USER_STREAM_EXCHANGES = ("binanceusdm",)  # the user data stream client speaks Binance USDⓈ-M's


class ExchangeLink:
    def __init__(self, settings: Settings, *, with_keys: bool, now_ms: Callable[[], int],
                 on_activity: Callable[[], None]) -> None:
        self.settings = settings
        self.with_keys = with_keys  # live: the account's API keys; otherwise public endpoints only
        self.now_ms = now_ms
        self.on_activity = on_activity
        self._client: ExchangeClient | None = None  # None until something needs the exchange
        self._stream: UserStream | None = None

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

    def made(self) -> ExchangeClient | None:
        """The client if one was needed so far (asking never makes one)."""
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

    def user_stream(self) -> UserStream | None:
        """The account's user data stream on the client (made once); None for an exchange it does not speak."""
        if self._stream is None:
            from trading_bot.exchange.client import stream_url_for
            from trading_bot.exchange.user_stream import UserStream, user_stream_url

            s = self.settings
            if s.exchange_id not in USER_STREAM_EXCHANGES:
                log.warning("USER_STREAM: no user data stream for %s: positions are checked over REST every heartbeat",
                            s.exchange_id)
                return None
            url = user_stream_url(s.exchange_ws_url or stream_url_for(s.exchange_url), s.exchange_demo)
            self._stream = UserStream(self.get(), url, self.now_ms)
        return self._stream

    async def close(self) -> None:
        if self._stream is not None:
            await self._stream.close()
        if self._client is not None:
            await self._client.close()
