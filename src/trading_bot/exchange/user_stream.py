"""Binance USDⓈ-M's user data stream: the account's raw events (ORDER_TRADE_UPDATE, ALGO_UPDATE,
ACCOUNT_UPDATE) over one websocket, handed to a sink as Binance sends them; the listen key created,
kept alive and renewed; the connection watched and replaced.

Why our own aiohttp websocket rather than ccxt.pro's watch_orders / watch_my_trades (aiohttp is what
ccxt connects with anyway):
- ccxt.pro keeps the listen key alive on the wall clock (loop.call_later, every 20 minutes) and
  outside our weight budget, and ignores listenKeyExpired: the watch just waits
  (tests/exchange/test_fake_websockets.py shows it);
- it notices a stalled connection only after two unanswered keepAlive pings (6 minutes);
- its unified orders and trades split what booking an exit needs (the fill's price, size,
  commission, realised profit and trade time beside the order's client id) over two caches.
Here the key's lifecycle is ours, the listen key requests go through ExchangeClient.call (ccxt's
implicit API: the weight budget, retries and the 429 pause apply), the timers run on the bot's clock
(a time-lapse or a test's clock moves them) and the events stay raw.

The lifecycle (times on the bot's clock unless said):
- start: POST /fapi/v1/listenKey, connect to the private route; then a task keeps it up;
- keep-alive: PUT every 30 minutes (a key lives 60 minutes from its last POST or PUT); a PUT that
  fails is tried again a minute later; -1125 (the key is gone), or a PUT answering another key →
  a new key and a new connection;
- listenKeyExpired on the stream (ccxt.pro ignores it) → a new key and a new connection;
- Binance cuts a connection at the 24-hour mark: at 23 hours a second one is opened and the first
  closed once it is up, so no event falls in a gap. (POST returns the account's active key, extended;
  forcing a new key would take a DELETE, which closes the live stream: the gap this avoids.) Events
  seen on both meanwhile come twice: the sink must be idempotent (fills are keyed by trade id);
- silence: no message for 30 s → a ping; nothing back within 10 s (and half a second of wall time,
  so that a pong in flight while a test's clock jumps is not taken for a stall) → replaced;
- a drop, the exchange closing it, a stall → reconnect after a backoff: 0.5–1 s, doubling to
  30–60 s while attempts fail or connections die within a minute; 15 minutes while the exchange
  refuses the API key a stream.
`on_connected` is called for every new connection (not a renewal's): events between the last one
and it were lost, so the owner reconciles.

The listen key is a secret: never logged, shown or put into an exception text (aiohttp's errors
name the URL, which holds it: they are redacted), and the log filter masks it too (ops.logs.mask_also).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import aiohttp

from trading_bot.exchange.client import ExchangeClient
from trading_bot.exchange.errors import short_error
from trading_bot.exchange.exceptions import BaseError, listen_key_refused, listen_key_unknown
from trading_bot.ops.logs import mask, mask_also

log = logging.getLogger(__name__)


MINUTE_MS = 60_000


LINEAR_WS = {False: "wss://fstream.binance.com/ws", True: "wss://fstream.binancefuture.com/ws"}  # ccxt.pro's, by demo


CLOSE_TIMEOUT_S = 1.0  # wall time for the close handshake of a connection we drop (a stalled peer never answers)


StreamState = Literal["off", "connecting", "connected", "reconnecting"]


EventSink = Callable[[dict[str, Any]], None]


def user_stream_url(ws_base: str, demo: bool) -> str:
    """Where the user data stream is, the listen key to be appended. ws_base: the linear websocket base
    the candle feed uses too (EXCHANGE_WS_URL, or EXCHANGE_URL's host + /ws; "" for Binance's own,
    production or demo). As ccxt.pro does, a base ending in /ws has the private route beside it
    (Binance split its routes in 2026: /private/ws?listenKey=); any other base takes the key in the path."""
    base = ws_base or LINEAR_WS[demo]
    if base.endswith("/ws"):
        return base.removesuffix("/ws") + "/private/ws?listenKey="
    return base.rstrip("/") + "/"


@dataclass(frozen=True)
class StreamTiming:
    """The stream's timers: bot-clock ms, except the wall-clock seconds (network time, polling)."""

    keepalive_ms: int = 30 * MINUTE_MS
    retry_ms: int = MINUTE_MS  # a keep-alive or renewal that failed is tried again after this
    renew_after_ms: int = 23 * 60 * MINUTE_MS  # before Binance's 24-hour cut
    quiet_ms: int = 30_000  # no message this long: ping
    pong_ms: int = 10_000  # a ping unanswered this long: stalled ...
    pong_wall_s: float = 0.5  # ... and this long in wall time
    backoff_ms: int = 1_000
    backoff_max_ms: int = 60_000
    refused_ms: int = 15 * MINUTE_MS  # the exchange refuses the key a stream: try again this much later
    stable_ms: int = MINUTE_MS  # a connection that lived this long resets the backoff
    poll_s: float = 0.05  # how often the timers are looked at (the bot's clock may be a jumping one)


class StreamError(Exception):
    """The stream could not be opened (its text never holds the listen key)."""


class _Connection:
    """One websocket on one listen key, and what the watch needs to know about it."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse, key: str, opened_ms: int) -> None:
        self.ws = ws
        self.key = key
        self.opened_ms = opened_ms
        self.heard = 0  # messages received, pongs included
        self.heard_ms = opened_ms
        self.ping: tuple[int, int, float] | None = None  # at our unanswered ping: (heard, bot ms, monotonic s)
        self.expired = False  # listenKeyExpired came for its key
        self.reader: asyncio.Task[None] | None = None


class UserStream:
    """The account's user data stream on one ExchangeClient (its API key)."""

    def __init__(self, pool: ExchangeClient, url: str, now_ms: Callable[[], int],
                 timing: StreamTiming | None = None, rng: random.Random | None = None) -> None:
        self.pool = pool
        self.url = url  # the listen key is appended
        self.now_ms = now_ms
        self.timing = timing or StreamTiming()
        self.rng = rng or random.Random()
        self.state: StreamState = "off"
        self.connections = 0  # connections opened (renewals not counted: no gap before them)
        self.keepalives = 0  # keep-alive PUTs answered
        self._on_event: EventSink = lambda event: None
        self._on_connected: Callable[[], None] = lambda: None
        self._session: aiohttp.ClientSession | None = None
        self._conn: _Connection | None = None
        self._keys: list[str] = []  # every key seen: redacted from error texts
        self._next_keepalive_ms = 0
        self._next_renewal_ms = 0
        self._failures = 0  # failed attempts and short-lived connections in a row
        self._task: asyncio.Task[None] | None = None

    # --- the owner's side --------------------------------------------------------------------------

    async def start(self, on_event: EventSink, on_connected: Callable[[], None]) -> bool:
        """Open the stream once now (a listen key and a connection), then keep it up in the background.
        False: the first attempt failed (logged); the background retries. Started already (the broker
        prepares again when the universe adds symbols): nothing more."""
        if self._task is not None:
            return self.state == "connected"
        self._on_event, self._on_connected = on_event, on_connected
        self._session = aiohttp.ClientSession()
        self.state = "connecting"
        retry_at = 0
        try:
            await self._open()
        except Exception as exc:
            retry_at = self._failed(exc)
        self._task = asyncio.ensure_future(self._run(retry_at))
        return self.state == "connected"

    async def close(self) -> None:
        """Stop (the key is left to expire: a DELETE would also end any other reader's stream on the account)."""
        self.state = "off"
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._conn is not None:
            conn, self._conn = self._conn, None
            await self._close(conn)
        if self._session is not None:
            await self._session.close()
            self._session = None

    # --- the background task ---------------------------------------------------------------------

    async def _run(self, retry_at: int) -> None:
        """retry_at: the bot's clock before which no new connection is tried (0: at once)."""
        while True:
            try:
                await self._sleep_until(retry_at)
                if self._conn is None:
                    try:
                        await self._open()
                    except Exception as exc:
                        retry_at = self._failed(exc)
                        continue
                conn = self._conn
                assert conn is not None
                reason, retry_at = await self._watch(conn)
                await self._drop(reason)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a bug: logged, and the stream goes on after a pause
                log.error("user data stream: unexpected %s", self._redact(short_error(exc)), exc_info=True)
                retry_at = self.now_ms() + self.timing.backoff_max_ms

    async def _open(self) -> None:
        key = await self._new_key()
        self._conn = await self._connect(key)
        self.connections += 1
        self.state = "connected"
        log.info("user data stream connected%s", "" if self.connections == 1 else
                 " again: events of the gap are lost, reconciling")
        self._on_connected()

    def _failed(self, exc: Exception) -> int:
        """An attempt to open the stream failed: logged; when to try the next (the bot's clock)."""
        self.state = "reconnecting"
        if listen_key_refused(exc):
            log.error("user data stream: the exchange refuses this API key a stream (%s); positions are checked "
                      "over REST every heartbeat; trying again in %.0f minutes", self._redact(short_error(exc)),
                      self.timing.refused_ms / MINUTE_MS)
            return self.now_ms() + self.timing.refused_ms
        delay_ms = self._next_delay(failed=True)
        log.warning("user data stream: could not connect (%s); trying again in %.1f s",
                    self._redact(short_error(exc)), delay_ms / 1000)
        return self.now_ms() + delay_ms

    async def _watch(self, conn: _Connection) -> tuple[str, int]:
        """Until the connection has to go: why, and when to try the next (the bot's clock; 0: at once)."""
        t = self.timing
        while True:
            assert conn.reader is not None
            await asyncio.wait({conn.reader}, timeout=t.poll_s)
            if conn.reader.done():
                return "the connection was closed", self._delay_after(conn)
            if conn.expired:
                return "the listen key expired (listenKeyExpired)", 0
            now = self.now_ms()
            if now >= self._next_keepalive_ms and not await self._keep_alive(now):
                return "the exchange no longer knows the listen key", 0
            if now - conn.opened_ms >= t.renew_after_ms and now >= self._next_renewal_ms:
                conn = await self._renew(conn, now)
                continue
            stalled = await self._silence(conn, now)
            if stalled:
                return stalled, self._delay_after(conn)

    async def _drop(self, reason: str) -> None:
        conn, self._conn = self._conn, None
        self.state = "reconnecting"
        log.warning("user data stream: %s; reconnecting (positions are checked over REST every heartbeat meanwhile)",
                    reason)
        if conn is not None:
            await self._close(conn)

    # --- the listen key ---------------------------------------------------------------------------

    async def _new_key(self) -> str:
        answer = await self.pool.call("fapiPrivatePostListenKey")
        key = str((answer or {}).get("listenKey") or "")
        if not key:
            raise StreamError("the exchange answered no listen key")
        if key not in self._keys:
            mask_also(key)
            self._keys = [*self._keys[-9:], key]
        self._extended(self.now_ms())
        return key

    def _extended(self, now: int) -> None:
        self._next_keepalive_ms = now + self.timing.keepalive_ms

    async def _keep_alive(self, now: int) -> bool:
        """PUT: the key lives another 60 minutes. False: the exchange no longer has it (or has another)."""
        try:
            answer = await self.pool.call("fapiPrivatePutListenKey", retry=False)
        except BaseError as exc:
            if listen_key_unknown(exc):
                return False
            log.warning("user data stream: keeping the listen key alive failed (%s); trying again in %.0f s",
                        self._redact(short_error(exc)), self.timing.retry_ms / 1000)
            self._next_keepalive_ms = now + self.timing.retry_ms
            return True
        returned = (answer or {}).get("listenKey")
        if returned and self._conn is not None and returned != self._conn.key:
            return False
        self.keepalives += 1
        self._extended(now)
        return True

    async def _renew(self, conn: _Connection, now: int) -> _Connection:
        """A second connection before the 24-hour cut, then the first one closed: no gap."""
        try:
            fresh = await self._connect(await self._new_key())
        except Exception as exc:
            log.warning("user data stream: renewing the connection failed (%s); the current one stays, trying "
                        "again in %.0f s", self._redact(short_error(exc)), self.timing.retry_ms / 1000)
            self._next_renewal_ms = now + self.timing.retry_ms
            return conn
        self._conn = fresh
        await self._close(conn)
        log.info("user data stream: connection renewed ahead of the exchange's 24-hour cut")
        return fresh

    # --- one connection --------------------------------------------------------------------------

    async def _connect(self, key: str) -> _Connection:
        assert self._session is not None
        try:
            ws = await asyncio.wait_for(
                self._session.ws_connect(self.url + key, autoping=False,  # pings and pongs are the watch's
                                         timeout=aiohttp.ClientWSTimeout(ws_close=CLOSE_TIMEOUT_S)),
                self.pool.timeout_ms / 1000)
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise StreamError(f"connecting failed: {self._redact(short_error(exc))}") from None
        conn = _Connection(ws, key, self.now_ms())
        conn.reader = asyncio.ensure_future(self._read(conn))
        return conn

    async def _read(self, conn: _Connection) -> None:
        try:
            async for message in conn.ws:
                conn.heard += 1
                conn.heard_ms = self.now_ms()
                if message.type == aiohttp.WSMsgType.TEXT:
                    self._on_text(conn, message.data)
                elif message.type == aiohttp.WSMsgType.PING:
                    await conn.ws.pong(message.data)
                elif message.type == aiohttp.WSMsgType.ERROR:
                    return
        except (aiohttp.ClientError, OSError):
            return  # dropped: the watch sees this task end

    def _on_text(self, conn: _Connection, text: str) -> None:
        try:
            event = json.loads(text)
        except ValueError:
            log.warning("user data stream: a message that is not JSON (%d characters), ignored", len(text))
            return
        if isinstance(event, dict) and "stream" in event and isinstance(event.get("data"), dict):
            event = event["data"]  # a combined stream's wrapper
        if not isinstance(event, dict):
            return
        if event.get("e") == "listenKeyExpired":
            conn.expired = conn.expired or event.get("listenKey") in (None, conn.key)
            return
        try:
            self._on_event(event)
        except Exception:  # a bug in the owner must not end the stream
            log.error("user data stream: the %s event could not be handled", event.get("e"), exc_info=True)

    async def _silence(self, conn: _Connection, now: int) -> str | None:
        """Ping a quiet connection; a ping left unanswered means it stalled (the reason, else None)."""
        t = self.timing
        if conn.ping is not None:
            heard, sent_ms, sent_wall = conn.ping
            if conn.heard > heard:
                conn.ping = None
            elif now - sent_ms >= t.pong_ms and time.monotonic() - sent_wall >= t.pong_wall_s:
                return f"nothing heard for {(now - conn.heard_ms) / 1000:.0f} s, not even an answer to a ping: stalled"
            return None
        if now - conn.heard_ms >= t.quiet_ms:
            conn.ping = (conn.heard, now, time.monotonic())
            try:
                await conn.ws.ping()
            except (aiohttp.ClientError, OSError):
                return "the connection was lost"
        return None

    async def _close(self, conn: _Connection) -> None:
        with contextlib.suppress(aiohttp.ClientError, OSError, TimeoutError):
            await asyncio.wait_for(conn.ws.close(), CLOSE_TIMEOUT_S * 2)
        if conn.reader is not None:
            conn.reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await conn.reader

    # --- helpers ---------------------------------------------------------------------------------

    def _delay_after(self, conn: _Connection) -> int:
        """When to reconnect after this connection ended (a backoff that grows while they die young)."""
        now = self.now_ms()
        return now + self._next_delay(failed=now - conn.opened_ms < self.timing.stable_ms)

    def _next_delay(self, failed: bool) -> int:
        """Full-ish jitter over a doubling base: 0.5–1 s after a connection that had lived, then 1–2 s, …"""
        t = self.timing
        self._failures = self._failures + 1 if failed else 0
        return int(min(t.backoff_max_ms, t.backoff_ms * 2 ** min(self._failures, 16)) * self.rng.uniform(0.5, 1.0))

    async def _sleep_until(self, until_ms: int) -> None:
        """Until the bot's clock reads until_ms (polled: a time-lapse or a test's clock may jump)."""
        while self.now_ms() < until_ms:
            await asyncio.sleep(self.timing.poll_s)

    def _redact(self, text: str) -> str:
        return mask(text, self._keys)
