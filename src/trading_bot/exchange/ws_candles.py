"""PushedCandles: closed candles pushed by the exchange's kline streams (ccxt.pro), REST for the rest.

A `CandleSource` the manager uses like any other. What it adds:
- one ccxt.pro client per shard of at most STREAMS_PER_CONNECTION series (ccxt's and Binance's
  limit per connection), subscribed once; a closed candle (Binance's `x: true`) is kept in a buffer
  and wakes the daemon (`on_push`), so its bots are decided as soon as the exchange publishes it;
- `settle(due, now)`: the manager asks before each refresh, so every series closing at the same
  moment is handled in the same tick (the paper broker's order of events is the backtest's), waiting
  at most `grace_ms` after the close for the ones not pushed yet;
- `fetch` answers from the buffer when it holds every candle asked for, contiguous; otherwise (the
  first history, a gap after a reconnect, a stream that did not deliver within the grace) from REST,
  so no candle is missing and the manager drops any it already has: none is counted twice;
- a drop or a missed ping (ccxt.pro's keepAlive, set low) fails the shard's connection: it dials
  again with a back-off; a close REST had but the stream did not push within the grace is a silent
  stall: the shard's connection is replaced. After MAX_FAILURES failed dials in a row the shard
  polls REST (logged) and tries websockets again after `retry_s`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from trading_bot.domain.candles import COLUMNS, TS
from trading_bot.domain.timeframes import last_closed_open_ms, timeframe_ms
from trading_bot.exchange.client import ExchangeClient
from trading_bot.marketdata.sources import CandleSource, FetchResult

log = logging.getLogger(__name__)

SeriesKey = tuple[str, str]

STREAMS_PER_CONNECTION = 200  # ccxt.pro's subscriptionLimitByStream for Binance linear
MAX_FAILURES = 5  # failed dials in a row before a shard falls back to REST
RECONNECT_DELAYS_S = (0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0)
CONNECTION_STATES = ("connecting", "live", "rest")  # and "idle": no series left on the connection


@dataclass
class _Shard:
    number: int
    pairs: list[SeriesKey]
    state: str = "connecting"  # CONNECTION_STATES, or idle
    failures: int = 0  # failed connections in a row (none delivered a candle)
    rest_until: float = 0.0  # monotonic: polling REST until then
    lost: asyncio.Event = field(default_factory=asyncio.Event)
    client: Any = None
    redial: bool = False  # lost on purpose (its list of series changed): not a failure
    replaced_for_ms: int = -1  # the close a stall replacement was made for (once per close)
    dialled_ms: int = 2**62  # bot clock when this connection was dialled: earlier closes never come


class PushedCandles:
    name = "exchange"

    def __init__(self, pool: ExchangeClient, keys: Sequence[SeriesKey], rest: CandleSource, *, ws_url: str = "",
                 grace_ms: int = 2_000, keepalive_ms: int = 10_000, retry_s: float = 300.0,
                 per_connection: int = STREAMS_PER_CONNECTION, on_push: Callable[[], None] = lambda: None) -> None:
        self.pool = pool
        self.rest = rest
        self.ws_url = ws_url
        self.grace_ms = grace_ms
        self.keepalive_ms = keepalive_ms
        self.retry_s = retry_s
        self.on_push = on_push
        self.now_ms: Callable[[], int] = pool.now_ms or (lambda: int(time.time() * 1000))
        self.per_connection = per_connection
        self.shards: list[_Shard] = []
        self._shard_of: dict[SeriesKey, _Shard] = {}
        self._closed: dict[SeriesKey, dict[int, list[float]]] = {}
        self._forming: dict[SeriesKey, tuple[int, float]] = {}
        self._pushed = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self.track(keys, ())

    # --- the streams ---------------------------------------------------------------------------

    def start(self) -> None:
        if not self._tasks:
            self._tasks = [asyncio.create_task(self._run(shard), name=f"ws-candles-{shard.number}")
                           for shard in self.shards]

    def track(self, added: Sequence[SeriesKey], removed: Sequence[SeriesKey]) -> None:
        """The symbol universe changed. A removed series is forgotten (its stream is dropped at the
        connection's next dial); new ones fill the last connection's room, which dials again to
        subscribe them (REST fills that moment), then new connections."""
        for key in removed:
            shard = self._shard_of.pop(key, None)
            if shard is not None:
                shard.pairs.remove(key)
            self._closed.pop(key, None)
            self._forming.pop(key, None)
        new = [key for key in dict.fromkeys(added) if key not in self._shard_of]
        if not new:
            return
        last = self.shards[-1] if self.shards else None
        if last is not None and len(last.pairs) < self.per_connection:
            room, new = new[:self.per_connection - len(last.pairs)], new[self.per_connection - len(last.pairs):]
            self._register(last, room)
            last.redial = True
            last.lost.set()  # dial again with the longer list
        for i in range(0, len(new), self.per_connection):
            shard = _Shard(len(self.shards), [])
            self._register(shard, new[i:i + self.per_connection])
            self.shards.append(shard)
            if self._tasks:
                self._tasks.append(asyncio.create_task(self._run(shard), name=f"ws-candles-{shard.number}"))

    def _register(self, shard: _Shard, keys: Sequence[SeriesKey]) -> None:
        for key in keys:
            shard.pairs.append(key)
            self._shard_of[key] = shard
            self._closed[key] = {}

    def connections(self) -> dict[str, int]:
        """The connections in use by state (connecting, live, rest); idle ones (no series left) not counted."""
        counts = dict.fromkeys(CONNECTION_STATES, 0)
        for shard in self.shards:
            if shard.state != "idle":
                counts[shard.state] += 1
        return counts

    def summary(self) -> str:
        """For the status: how many connections stream, e.g. 'websocket 14/14 live'."""
        counts = self.connections()
        text = f"websocket {counts['live']}/{sum(counts.values())} live"
        return text + (f", {counts['rest']} on REST" if counts["rest"] else "")

    async def _run(self, shard: _Shard) -> None:
        while True:
            if not shard.pairs:  # every series of this connection was removed: idle until one is added
                await self._drop_client(shard)
                shard.state = "idle"
                shard.lost.clear()
                await shard.lost.wait()
                shard.state = "connecting"
            if shard.state == "rest":
                await asyncio.sleep(max(0.0, shard.rest_until - time.monotonic()))
                log.info("websocket candles (connection %d): trying the stream again", shard.number)
                shard.state, shard.failures = "connecting", 0
            try:
                await self._stream(shard)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._failed(shard, exc)
            await self._drop_client(shard)
            if shard.state != "rest":
                await asyncio.sleep(RECONNECT_DELAYS_S[min(shard.failures, len(RECONNECT_DELAYS_S) - 1)])

    async def _stream(self, shard: _Shard) -> None:
        """Dial, subscribe, and hold the connection until it is lost (ccxt's on_error / on_close, or a
        stall found by `fetch`)."""
        shard.lost.clear()
        shard.dialled_ms = self.now_ms()
        shard.client = await self._new_client(shard)
        # Returns at the first candle message; from then on our hook on the messages does the work:
        # ccxt keeps the connection without a watch pending (one per message would cost 200 lookups).
        watch = asyncio.ensure_future(shard.client.watch_ohlcv_for_symbols([list(pair) for pair in shard.pairs]))
        lost = asyncio.ensure_future(shard.lost.wait())
        try:
            await asyncio.wait({watch, lost}, return_when=asyncio.FIRST_COMPLETED)
            if watch.done():
                watch.result()  # a failed dial or subscription raises here
                await lost
        finally:
            for task in (watch, lost):
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task
        raise ConnectionError("connection lost")

    def _failed(self, shard: _Shard, exc: BaseException) -> None:
        if shard.redial:
            shard.redial, shard.state = False, "connecting"
            log.info("websocket candles (connection %d): dialling again for %d series", shard.number, len(shard.pairs))
            return
        was_live = shard.state == "live"
        shard.state = "connecting"
        shard.failures = 0 if was_live else shard.failures + 1
        why = f"{type(exc).__name__}: {str(exc)[:120]}"
        if shard.failures >= MAX_FAILURES:
            shard.state, shard.rest_until = "rest", time.monotonic() + self.retry_s
            log.warning("websocket candles (connection %d, %d series) failed %d times in a row (%s): polling REST, "
                        "trying the stream again in %.0fs", shard.number, len(shard.pairs), shard.failures, why,
                        self.retry_s)
        elif was_live:
            log.warning("websocket candles (connection %d) lost (%s): reconnecting; REST fills any gap", shard.number, why)
        else:
            log.info("websocket candles (connection %d): connect failed (%s), attempt %d", shard.number, why,
                     shard.failures)

    async def _new_client(self, shard: _Shard) -> Any:
        client = await self.pool.stream_client(self.ws_url, self.keepalive_ms)
        original = client.handle_ohlcv

        def handle_ohlcv(ws_client: Any, message: dict[str, Any]) -> None:
            original(ws_client, message)
            self._on_kline(shard, client, message)

        def lost(*_: Any) -> None:
            if shard.client is client:  # not a late callback of a connection already replaced
                shard.lost.set()

        client.handle_ohlcv = handle_ohlcv
        for name in ("on_error", "on_close"):  # ccxt reads these when it makes a connection
            original_cb = getattr(client, name)

            def hooked(ws_client: Any, error: Any, _original: Any = original_cb) -> None:
                _original(ws_client, error)
                lost()

            setattr(client, name, hooked)
        return client

    async def _drop_client(self, shard: _Shard) -> None:
        client, shard.client = shard.client, None
        if client is not None:
            with contextlib.suppress(Exception):
                await client.close()

    def _on_kline(self, shard: _Shard, client: Any, message: dict[str, Any]) -> None:
        if client is not shard.client:
            return  # a message from a connection already replaced
        kline = message.get("k") or {}
        key = self._key(client, kline)
        if key is None or key not in self._closed:
            return
        if shard.state != "live":
            shard.state, shard.failures = "live", 0
        ts = int(kline["t"])
        if kline.get("x"):
            # the same float() of the same strings as ccxt's REST klines: bit for bit the REST candle
            self._closed[key][ts] = [float(ts), float(kline["o"]), float(kline["h"]), float(kline["l"]),
                                     float(kline["c"]), float(kline["v"])]
            self._pushed.set()
            self.on_push()
        elif key not in self._forming or self._forming[key][0] != ts:
            self._forming[key] = (ts, float(kline["o"]))  # the paper fill price of the candle now forming

    @staticmethod
    def _key(client: Any, kline: dict[str, Any]) -> SeriesKey | None:
        market = client.markets_by_id.get(kline.get("s")) if client.markets_by_id else None
        if not market:
            return None
        symbols = [m["symbol"] for m in market if m.get("linear")] or [m["symbol"] for m in market]
        timeframe = client.find_timeframe(kline.get("i"))
        return (symbols[0], timeframe) if symbols and timeframe else None

    # --- CandleSource --------------------------------------------------------------------------

    def _awaited(self, due: Sequence[SeriesKey], now_ms: int) -> list[SeriesKey]:
        """Due series whose close the stream should still push: their connection is not on REST and
        was dialled before the close (a stream never replays what closed before it subscribed)."""
        waiting = []
        for key in due:
            shard = self._shard_of.get(key)
            if shard is None or shard.state == "rest":
                continue
            tf_ms = timeframe_ms(key[1])
            last_open = last_closed_open_ms(now_ms, tf_ms)
            if last_open + tf_ms >= shard.dialled_ms and last_open not in self._closed[key]:
                waiting.append(key)
        return waiting

    async def settle(self, due: Sequence[SeriesKey], now_ms: int) -> None:
        """Wait until every due series' close is pushed, at most `grace_ms` after the latest close."""
        waiting = self._awaited(due, now_ms)
        if not waiting:
            return
        deadline = max(last_closed_open_ms(now_ms, timeframe_ms(key[1])) + timeframe_ms(key[1])
                       for key in waiting) + self.grace_ms
        wall_deadline = time.monotonic() + self.grace_ms / 1000  # a clock that stands still (tests) or lags
        while waiting and self.now_ms() < deadline and time.monotonic() < wall_deadline:
            self._pushed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._pushed.wait(), 0.05)  # re-read the clock: it may be a time-lapse
            waiting = self._awaited(waiting, now_ms)

    async def fetch(self, symbol: str, timeframe: str, tf_ms: int, since_ms: int | None, now_ms: int,
                    limit: int, last_close: float | None) -> FetchResult:
        key = (symbol, timeframe)
        buffered = self._closed.get(key)
        last_open = last_closed_open_ms(now_ms, tf_ms)
        if buffered is not None and since_ms is not None:
            for ts in [ts for ts in buffered if ts < since_ms]:
                del buffered[ts]  # the manager has these
            wanted = range(since_ms, last_open + 1, tf_ms)
            if len(wanted) <= limit and all(ts in buffered for ts in wanted):
                rows = [buffered[ts] for ts in wanted]
                closed = np.array(rows, dtype=np.float64).reshape(-1, COLUMNS)
                forming = self._forming.get(key)
                if forming is not None and forming[0] == last_open + tf_ms:
                    return FetchResult(closed, forming[1], forming[0])
                return FetchResult(closed)
        result = await self.rest.fetch(symbol, timeframe, tf_ms, since_ms, now_ms, limit, last_close)
        if buffered is not None and since_ms is not None:
            await self._note_missed(key, result, last_open, tf_ms)
        return result

    async def _note_missed(self, key: SeriesKey, result: FetchResult, last_open: int, tf_ms: int) -> None:
        """REST had a close the live stream did not push within the grace: the stream is stalled."""
        shard = self._shard_of[key]
        if shard.state == "rest" or shard.dialled_ms > last_open + tf_ms:
            return  # not streaming, or dialled after this close: REST was expected to fill it
        if not result.closed.shape[0] or int(result.closed[-1, TS]) != last_open:
            return
        if self.now_ms() < last_open + tf_ms + self.grace_ms or shard.replaced_for_ms == last_open + tf_ms:
            return  # not overdue yet, or this close already replaced the connection
        shard.replaced_for_ms = last_open + tf_ms
        log.warning("websocket candles (connection %d): %s %s closed %.1fs ago but was not pushed: the stream "
                    "is stalled; replacing the connection", shard.number, key[0], key[1],
                    (self.now_ms() - last_open - tf_ms) / 1000)
        shard.lost.set()

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks = []
        await asyncio.gather(*(self._drop_client(shard) for shard in self.shards))
        await self.rest.close()

