"""The websocket side of FakeBinance: Binance USDⓈ-M's market streams and user data stream on 127.0.0.1.

Routes (any of the prefixes "", "public/", "market/", "private/", as Binance's split hosts use them):
raw `/ws/<stream>` (events as they are), combined `/stream?streams=a/b` (events wrapped as
{"stream", "data"}), `/private/ws?listenKey=<key>` or `/ws/<listenKey>` for the user data stream, and
the live SUBSCRIBE / UNSUBSCRIBE / LIST_SUBSCRIPTIONS method messages ccxt.pro sends.

Market data: `<symbol>@kline_<interval>` only (any other stream name is accepted and stays silent).
A closed candle (x: true) is pushed, from FakeBinance's own candle rows (the REST klines' rows), for
every candle close the fake's clock has passed since the stream was subscribed; the forming candle
(x: false) only when the test asks (push_forming). User data: ORDER_TRADE_UPDATE, ALGO_UPDATE,
ACCOUNT_UPDATE and listenKeyExpired, in Binance's documented field names. A connection is closed by
the server at the 24-hour mark of the fake's clock, as Binance does.

The clock is the test's (a SharedClock that only moves when the test moves it), so a pump task polls
it every POLL_S of wall time while any websocket or listen key exists; nothing runs before that.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import secrets
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiohttp import WSMsgType, web

from trading_bot.domain.timeframes import TIMEFRAME_MS, last_closed_open_ms

if TYPE_CHECKING:
    from fakes.fake_binance import FakeBinance

LISTEN_KEY_VALID_MS = 3_600_000  # a listen key lives 60 minutes after its creation or last keep-alive
CONNECTION_LIFETIME_MS = 24 * 3_600_000  # Binance disconnects every connection at the 24-hour mark
POLL_S = 0.01  # how often the pump reads the fake's clock (wall time)
MAX_BURST = 1000  # closed candles pushed at once when the clock jumps far (Binance would have sent them one by one)
KLINE_RE = re.compile(r"^([a-z0-9]+)@kline_([0-9]+[mhdwM])$")
CLOSE = ""  # in an outbox: close the websocket once what was queued before it has gone
ROUTE = r"/{route:(?:public/|market/|private/)?(?:ws|stream)(?:/[^/]*)?}"


@dataclass(eq=False)
class Connection:
    """One accepted websocket: what it is subscribed to and what waits to be sent."""

    request: web.Request
    ws: web.WebSocketResponse
    combined: bool  # /stream: events wrapped as {"stream", "data"}
    listen_key: str | None
    opened_ms: int  # the fake's clock when it was accepted
    klines: dict[str, int] = field(default_factory=dict)  # stream -> open time of the last closed candle announced
    outbox: asyncio.Queue[str] = field(default_factory=asyncio.Queue)
    unsent: int = 0  # put in the outbox, not written yet
    cut: bool = False  # closed by the server at its 24-hour mark


class FakeBinanceWs:
    """Kept by a FakeBinance as `fake.ws`; the test's hooks are FakeBinance's ws_* methods."""

    def __init__(self, fake: FakeBinance) -> None:
        self._fake = fake
        self.connections: list[Connection] = []  # the open ones
        self.connections_accepted = 0  # every websocket ever accepted
        self.user_connections_accepted = 0  # of those, the user data stream's (a listen key given)
        self.pings_answered = 0  # client pings answered with a pong
        self.cut_at_24h = 0  # connections the server closed at their 24-hour mark
        self.subscribe_messages: list[list[str]] = []  # params of every SUBSCRIBE received, in order
        self.listen_key: str | None = None  # the account's one valid listen key
        self.issued_keys: list[str] = []  # every listen key created (a test checks none leaks into logs)
        self.listen_key_until = 0  # fake-clock ms at which it expires
        self.events_sent: list[dict] = []  # every event put on a connection (unwrapped), for the test's view
        self._flowing = asyncio.Event()  # cleared while stalled
        self._flowing.set()
        self._answer_pings_when_stalled = False
        self._release: asyncio.TimerHandle | None = None
        self._pump: asyncio.Task | None = None

    # --- routes and lifecycle --------------------------------------------------------------------

    def add_routes(self, app: web.Application) -> None:
        """Before FakeBinance's catch-all REST route, so websocket paths reach handle()."""
        app.router.add_get(ROUTE, self.handle)

    async def close(self) -> None:
        if self._pump is not None:
            self._pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pump
            self._pump = None
        if self._release is not None:
            self._release.cancel()
        self._flowing.set()
        # Close them here: the server's cleanup would otherwise wait for each open handler.
        for connection in list(self.connections):
            await connection.ws.close(code=1001, message=b"server shutdown")

    # --- the test's hooks (through FakeBinance.ws_*) ----------------------------------------------

    def drop(self) -> int:
        """Cut every websocket's TCP connection at once, no close frame (a network drop); how many."""
        dropped = 0
        for connection in list(self.connections):
            if connection.request.transport is not None:
                connection.request.transport.abort()
                dropped += 1
        return dropped

    def stall(self, seconds: float | None = None, *, answer_pings: bool = False) -> None:
        """Stop sending on every websocket, without closing: events and answers wait (as in a TCP
        buffer) until release() or `seconds` of wall time; pings go unanswered unless answer_pings."""
        self._flowing.clear()
        self._answer_pings_when_stalled = answer_pings
        if self._release is not None:
            self._release.cancel()
        self._release = asyncio.get_running_loop().call_later(seconds, self.release) if seconds is not None else None

    def release(self) -> None:
        self._flowing.set()
        self._release = None

    def expire_listen_key(self) -> None:
        """The listen key expires now: listenKeyExpired on its streams, and no more user events."""
        if self.listen_key is None:
            return
        key, self.listen_key = self.listen_key, None
        event = {"e": "listenKeyExpired", "E": str(self._fake.now_ms()), "listenKey": key}  # E a string, as documented
        for connection in self.connections:
            if connection.listen_key == key:
                self._put(connection, key, event)

    async def flush(self) -> None:
        """Until everything put on a websocket so far has been written, then a moment for the client to
        read it (events reach a real client within milliseconds; a test's clock jumps meanwhile).
        Returns at once while stalled."""
        while self._flowing.is_set() and any(c.unsent for c in self.connections):
            await asyncio.sleep(0.001)
        await asyncio.sleep(0.02)

    def subscriptions(self) -> list[str]:
        """Every market stream the open connections are subscribed to (one entry per connection)."""
        return [stream for connection in self.connections for stream in connection.klines]

    def push_forming(self, symbol_id: str, interval: str) -> None:
        """An in-progress update (x: false) of the forming candle to the stream's subscribers."""
        stream = f"{symbol_id.lower()}@kline_{interval}"
        tf = TIMEFRAME_MS[interval]
        forming = last_closed_open_ms(self._fake.now_ms(), tf) + tf
        [row] = self._fake.kline_rows(symbol_id, interval, forming, forming)
        for connection in self.connections:
            if stream in connection.klines:
                self._put(connection, stream, self._kline_event(symbol_id, interval, row, closed=False))

    # --- listen keys (the REST side is FakeBinance's /fapi/v1/listenKey) ---------------------------

    def listen_key_request(self, method: str) -> str | None:
        """POST: the valid key (extended) or a new one; PUT: extend the valid key; DELETE: close it.
        None when PUT or DELETE finds no valid key (Binance's -1125)."""
        self.check_expiry()
        now = self._fake.now_ms()
        key = self.listen_key
        if method == "POST" and key is None:
            key = secrets.token_urlsafe(48)[:64]
            self.issued_keys.append(key)
        if key is None:
            return None
        if method == "DELETE":
            self.listen_key = None
            for connection in self.connections:
                if connection.listen_key == key:
                    connection.outbox.put_nowait(CLOSE)
            return key
        self.listen_key, self.listen_key_until = key, now + LISTEN_KEY_VALID_MS
        self._start_pump()
        return key

    def check_expiry(self) -> None:
        if self.listen_key is not None and self._fake.now_ms() >= self.listen_key_until:
            self.expire_listen_key()

    # --- user data events (called by FakeBinance where its state changes) -------------------------

    def order_update(self, order: dict, execution: str, trade: dict | None = None) -> None:
        """ORDER_TRADE_UPDATE for `order` (FakeBinance's order record) after an execution of type
        `execution` (NEW, TRADE, CANCELED, EXPIRED); `trade` is the userTrades row of a TRADE."""
        now = self._fake.now_ms()
        last_qty, last_price, commission, trade_id, maker, realized = (
            (trade["qty"], trade["price"], trade["commission"], trade["id"], trade["maker"], trade["realizedPnl"])
            if trade is not None else ("0", "0", "0", 0, False, "0"))
        new = execution == "NEW"
        body = {
            "s": order["symbol"], "c": order["clientOrderId"], "S": order["side"], "o": order["type"],
            "f": order["timeInForce"], "q": order["origQty"], "p": order["price"],
            "ap": "0" if new else order["avgPrice"], "sp": order["stopPrice"], "x": execution,
            "X": "NEW" if new else order["status"], "i": order["orderId"], "l": last_qty,
            "z": "0" if new else order["executedQty"], "L": last_price, "N": "USDT", "n": commission, "T": now,
            "t": trade_id, "b": "0", "a": "0", "m": maker, "R": order["reduceOnly"], "wt": order["workingType"],
            "ot": order["origType"], "ps": order["positionSide"], "cp": order["closePosition"], "rp": realized,
            "pP": order["priceProtect"], "si": 0, "ss": 0, "V": order["selfTradePreventionMode"],
            "pm": order["priceMatch"], "gtd": order["goodTillDate"],
        }
        self._user_event({"e": "ORDER_TRADE_UPDATE", "E": now, "T": now, "o": body})

    def fill(self, order: dict, trade: dict, first: bool) -> None:
        """A fill: NEW first when the order never rested (a market or marketable order, as Binance
        sends it), then the TRADE and the account's new balance and position."""
        if first:
            self.order_update(order, "NEW")
        self.order_update(order, "TRADE", trade)
        self.account_update("ORDER", order["symbol"])

    def algo_update(self, algo: dict) -> None:
        """ALGO_UPDATE for a conditional order whose status changed (triggered, finished, expired)."""
        now = self._fake.now_ms()
        body = {
            "caid": algo["clientAlgoId"], "aid": algo["algoId"], "at": algo["algoType"], "o": algo["orderType"],
            "s": algo["symbol"], "S": algo["side"], "ps": algo["positionSide"], "f": algo["timeInForce"],
            "q": algo["quantity"], "X": algo["algoStatus"], "ai": algo["actualOrderId"], "ap": algo["actualPrice"],
            "aq": algo["quantity"], "act": "MARKET" if algo["orderType"].endswith("MARKET") else "LIMIT",
            "tp": algo["triggerPrice"], "p": algo["price"], "V": algo["selfTradePreventionMode"],
            "wt": algo["workingType"], "pm": algo["priceMatch"], "cp": algo["closePosition"],
            "pP": algo["priceProtect"], "R": algo["reduceOnly"], "tt": algo["triggerTime"], "gtd": algo["goodTillDate"],
        }
        self._user_event({"e": "ALGO_UPDATE", "T": now, "E": now, "o": body})

    def account_update(self, reason: str, symbol: str) -> None:
        """ACCOUNT_UPDATE (reason ORDER, FUNDING_FEE, ...): the USDT balance and the symbol's position."""
        fake, now = self._fake, self._fake.now_ms()
        figures = fake._position_figures(symbol)
        isolated = fake.positions[symbol]["margin_type"] == "ISOLATED"
        cross_wallet = fake.balance - sum(fake._position_figures(s)["isolated_wallet"] for s in fake.positions)
        realized = sum(float(t["realizedPnl"]) for t in fake.trades if t["symbol"] == symbol)
        money = "{:.8f}".format
        data = {
            "m": reason,
            "B": [{"a": "USDT", "wb": money(fake.balance), "cw": money(cross_wallet), "bc": "0"}],
            "P": [{"s": symbol, "pa": fake._fmt_qty(symbol, figures["amount"]), "ep": money(figures["entry"]),
                   "bep": money(figures["break_even"]), "cr": money(realized), "up": money(figures["upnl"]),
                   "mt": "isolated" if isolated else "cross", "iw": money(figures["isolated_wallet"]), "ps": "BOTH",
                   "ma": "USDT"}],
        }
        self._user_event({"e": "ACCOUNT_UPDATE", "E": now, "T": now, "a": data})

    def _user_event(self, event: dict) -> None:
        self.check_expiry()
        key = self.listen_key
        for connection in self.connections:
            if key is not None and connection.listen_key == key:
                self._put(connection, key, event)

    # --- one websocket ---------------------------------------------------------------------------

    async def handle(self, request: web.Request) -> web.StreamResponse:
        route = request.match_info["route"]
        kind, _, name = _split(route)
        ws = web.WebSocketResponse(autoping=False)  # pings are answered by hand: a stall must not answer them
        await ws.prepare(request)
        streams = name.split("/") if kind == "stream" else [name]
        streams += request.query.get("streams", "").split("/") if kind == "stream" else []
        key = request.query.get("listenKey")
        if key is None and self.listen_key is not None and self.listen_key in streams:
            key = self.listen_key
        connection = Connection(request, ws, combined=kind == "stream", listen_key=key, opened_ms=self._fake.now_ms())
        self._subscribe(connection, [s for s in streams if s and s != key])
        self.connections.append(connection)
        self.connections_accepted += 1
        self.user_connections_accepted += key is not None
        self._start_pump()
        writer = asyncio.ensure_future(self._write(connection))
        try:
            async for message in ws:
                if message.type == WSMsgType.PING:
                    if self._flowing.is_set() or self._answer_pings_when_stalled:
                        await ws.pong(message.data)
                        self.pings_answered += 1
                elif message.type == WSMsgType.TEXT:
                    self._method(connection, message.data)
        finally:
            self.connections.remove(connection)
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await writer
        return ws

    async def _write(self, connection: Connection) -> None:
        while True:
            text = await connection.outbox.get()
            await self._flowing.wait()
            if connection.ws.closed:
                return
            if text == CLOSE:
                await connection.ws.close()
                return
            if self._fake.latency_ms:  # the REST answers' injected round trip: half of it each way
                await asyncio.sleep(self._fake.latency_ms / 2000)
            try:
                await connection.ws.send_str(text)
            except ConnectionError:  # dropped under us: the handler's loop ends and cancels this task
                return
            connection.unsent -= 1

    def _method(self, connection: Connection, text: str) -> None:
        """A live method message: {"method", "params", "id"} -> {"result", "id"} (Binance's replies)."""
        try:
            message = json.loads(text)
            method, params, request_id = message.get("method"), message.get("params", []), message.get("id")
        except (ValueError, AttributeError):
            self._reply(connection, {"error": {"code": 3, "msg": "Invalid JSON: expected value at line 1 column 1"}})
            return
        if method == "SUBSCRIBE" and isinstance(params, list):
            self.subscribe_messages.append(list(params))
            self._subscribe(connection, params)
            self._reply(connection, {"result": None, "id": request_id})
        elif method == "UNSUBSCRIBE" and isinstance(params, list):
            for stream in params:
                connection.klines.pop(stream, None)
            self._reply(connection, {"result": None, "id": request_id})
        elif method == "LIST_SUBSCRIPTIONS":
            self._reply(connection, {"result": list(connection.klines), "id": request_id})
        else:
            self._reply(connection, {"error": {"code": 2, "msg": f"Invalid request: unknown method {method!r}"},
                                     "id": request_id})

    def _subscribe(self, connection: Connection, streams: list[str]) -> None:
        """From now on: a stream's first push is the next candle that closes (no history, as Binance)."""
        now = self._fake.now_ms()
        for stream in streams:
            parsed = KLINE_RE.match(stream)
            if parsed is None:
                continue  # another stream type: accepted, silent
            symbol_id, interval = parsed.group(1).upper(), parsed.group(2)
            if symbol_id in self._fake.positions and interval in TIMEFRAME_MS:
                connection.klines.setdefault(stream, last_closed_open_ms(now, TIMEFRAME_MS[interval]))

    def _reply(self, connection: Connection, body: dict) -> None:
        connection.unsent += 1
        connection.outbox.put_nowait(json.dumps(body))

    def _put(self, connection: Connection, stream: str, event: dict) -> None:
        self.events_sent.append(event)
        wrapped = {"stream": stream, "data": event} if connection.combined else event
        connection.unsent += 1
        connection.outbox.put_nowait(json.dumps(wrapped))

    # --- the pump: the fake's clock drives candle closes and key expiry ---------------------------

    def _start_pump(self) -> None:
        if self._pump is None:
            self._pump = asyncio.ensure_future(self._run_pump())

    async def _run_pump(self) -> None:
        while True:
            self.tick()
            await asyncio.sleep(POLL_S)

    def tick(self) -> None:
        """Push every candle close the clock has passed, per subscribed stream; expire a stale key; close
        the connections that reached their 24-hour mark."""
        now = self._fake.now_ms()
        for connection in self.connections:
            if now - connection.opened_ms >= CONNECTION_LIFETIME_MS and not connection.cut:
                connection.cut = True
                self.cut_at_24h += 1
                connection.outbox.put_nowait(CLOSE)
            for stream, announced in list(connection.klines.items()):
                symbol_id, interval = _stream_market(stream)
                tf = TIMEFRAME_MS[interval]
                closed = last_closed_open_ms(now, tf)
                if closed <= announced:
                    continue
                first = max(announced + tf, closed - (MAX_BURST - 1) * tf)
                for row in self._fake.kline_rows(symbol_id, interval, first, closed):
                    self._put(connection, stream, self._kline_event(symbol_id, interval, row, closed=True))
                connection.klines[stream] = closed
        self.check_expiry()

    def _kline_event(self, symbol_id: str, interval: str, row: list[Any], closed: bool) -> dict:
        """Binance's kline event from a REST klines row [t, o, h, l, c, v, T, q, n, V, Q, ignore]."""
        first_trade = int(row[0]) // 1000  # any increasing ids do: nothing reads them
        kline = {"t": row[0], "T": row[6], "s": symbol_id, "i": interval, "f": first_trade,
                 "L": first_trade + int(row[8]) - 1, "o": row[1], "c": row[4], "h": row[2], "l": row[3], "v": row[5],
                 "n": row[8], "x": closed, "q": row[7], "V": row[9], "Q": row[10], "B": row[11]}
        return {"e": "kline", "E": self._fake.now_ms(), "s": symbol_id, "k": kline}


def _split(route: str) -> tuple[str, str, str]:
    """'market/ws/0' -> ('ws', '/', '0'); 'stream' -> ('stream', '', '')."""
    tail = route.split("/", 1)[1] if route.split("/", 1)[0] in ("public", "market", "private") else route
    return tail.partition("/")


def _stream_market(stream: str) -> tuple[str, str]:
    parsed = KLINE_RE.match(stream)
    assert parsed is not None  # only kline streams are kept
    return parsed.group(1).upper(), parsed.group(2)
