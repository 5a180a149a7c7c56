"""The fake exchange's websocket side (tests/fakes/fake_binance_ws.py) driven by the real ccxt.pro
binanceusdm client over a real websocket on 127.0.0.1: kline streams, a drop, a stall, the user data
stream and its listen key. What ccxt.pro does on each is what the daemon's websocket client will see."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator

import aiohttp
import ccxt.pro as ccxt_pro
import pytest
from ccxt.base.errors import ExchangeError, NetworkError, RequestTimeout

from fakes.ccxt_client import ccxt_client
from fakes.clocks import SharedClock
from fakes.fake_binance import FakeBinance
from fakes.waiting import until

BTC, ETH = "BTC/USDT:USDT", "ETH/USDT:USDT"
MINUTE = 60_000
# watch_orders / watch_balance also start a REST positions snapshot nobody awaits; closed before it
# settles, ccxt.pro leaves its future with an exception never retrieved (the loop's error handler sees it)
NO_POSITIONS_SNAPSHOT = {"watchPositions": {"fetchPositionsSnapshot": False}}
KLINE_KEYS = ("t", "o", "h", "l", "c", "v", "T", "q", "n", "V", "Q", "B")  # the REST kline array's order


@contextlib.asynccontextmanager
async def pro_client(fake: FakeBinance, **options) -> AsyncIterator[ccxt_pro.binanceusdm]:
    client = ccxt_client(fake, pro=True, **options)
    try:
        yield client
    finally:
        await client.close()


async def subscribed(fake: FakeBinance, stream: str, count: int = 1) -> None:
    await until(lambda: fake.ws.subscriptions().count(stream) >= count)


def rest_klines(fake: FakeBinance, symbol_id: str, interval: str, start: int, end: int) -> list[list]:
    return fake._klines({"symbol": symbol_id, "interval": interval, "startTime": str(start), "endTime": str(end)})


async def test_watch_ohlcv_gets_the_closed_candles_rest_returns(market):
    clock, fake = market
    async with pro_client(fake) as client:
        await client.load_markets()
        watching = asyncio.ensure_future(client.watch_ohlcv_for_symbols([[BTC, "1m"], [ETH, "5m"]]))
        await subscribed(fake, "btcusdt@kline_1m")
        assert fake.ws.subscribe_messages == [["btcusdt@kline_1m", "ethusdt@kline_5m"]]  # one SUBSCRIBE, live
        assert not watching.done()  # nothing is pushed before a candle closes
        start = clock()
        pushed = []
        for _ in range(3):  # one close at a time, as in real time (a burst: see the stall test)
            clock.advance(MINUTE)
            result = await asyncio.wait_for(watching, 2)
            pushed += result[BTC]["1m"]
            watching = asyncio.ensure_future(client.watch_ohlcv_for_symbols([[BTC, "1m"], [ETH, "5m"]]))
        watching.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watching
        fetched = await client.fetch_ohlcv(BTC, "1m", since=pushed[0][0], limit=3)
        assert pushed == fetched  # ccxt's candles from the stream are the REST ones, value for value
        first_close = (start // MINUTE + 1) * MINUTE
        assert [c[0] for c in pushed] == [first_close - MINUTE, first_close, first_close + MINUTE]
        # the events themselves: every kline field is the REST array's, at the same clock
        events = [e for e in fake.ws.events_sent if e["e"] == "kline" and e["s"] == "BTCUSDT"]
        rows = rest_klines(fake, "BTCUSDT", "1m", pushed[0][0], pushed[-1][0])
        assert [[e["k"][key] for key in KLINE_KEYS] for e in events] == rows
        assert all(e["k"]["x"] is True and e["k"]["i"] == "1m" and e["k"]["s"] == "BTCUSDT" for e in events)


async def test_combined_stream_wraps_events_and_answers_method_messages(market):
    clock, fake = market
    async with aiohttp.ClientSession() as session, session.ws_connect(
            f"ws://127.0.0.1:{fake.port}/stream?streams=btcusdt@kline_1m/solusdt@kline_1m") as ws:
        await subscribed(fake, "solusdt@kline_1m")
        await ws.send_json({"method": "UNSUBSCRIBE", "params": ["solusdt@kline_1m"], "id": 7})
        assert await ws.receive_json(timeout=2) == {"result": None, "id": 7}
        await ws.send_json({"method": "LIST_SUBSCRIPTIONS", "id": 8})
        assert await ws.receive_json(timeout=2) == {"result": ["btcusdt@kline_1m"], "id": 8}
        clock.advance(MINUTE)
        closed = await ws.receive_json(timeout=2)
        fake.ws.push_forming("BTCUSDT", "1m")
        forming = await ws.receive_json(timeout=2)
    assert set(closed) == {"stream", "data"} and closed["stream"] == "btcusdt@kline_1m"
    event = closed["data"]
    assert set(event) == {"e", "E", "s", "k"} and (event["e"], event["s"]) == ("kline", "BTCUSDT")
    assert set(event["k"]) == {"t", "T", "s", "i", "f", "L", "o", "c", "h", "l", "v", "n", "x", "q", "V", "Q", "B"}
    assert [event["k"][key] for key in KLINE_KEYS] == rest_klines(fake, "BTCUSDT", "1m", event["k"]["t"],
                                                                   event["k"]["t"])[0]
    assert forming["data"]["k"]["x"] is False and forming["data"]["k"]["t"] == event["k"]["t"] + MINUTE


async def test_after_a_drop_the_next_watch_reconnects_and_the_candles_in_between_are_missed(market):
    clock, fake = market
    async with pro_client(fake) as client:
        [first] = await _one_closed_candle(client, clock, fake)
        pending = asyncio.ensure_future(client.watch_ohlcv(BTC, "1m"))
        await asyncio.sleep(0.05)
        assert fake.ws_drop() == 1
        with pytest.raises(NetworkError, match="closed by remote server"):  # the watch in flight fails
            await asyncio.wait_for(pending, 2)
        clock.advance(2 * MINUTE)  # two candles close while nobody is connected
        await asyncio.sleep(0.05)
        [after] = await _one_closed_candle(client, clock, fake)  # ccxt.pro dials again and re-subscribes
        assert fake.ws.connections_accepted == 2 and len(fake.ws.subscribe_messages) == 2
        missed = [first[0] + MINUTE, first[0] + 2 * MINUTE]
        assert after[0] == first[0] + 3 * MINUTE  # the stream resumes with the next close, no replay ...
        cached = [c[0] for c in client.ohlcvs[BTC]["1m"]]
        assert cached == [first[0], after[0]]  # ... so ccxt's cache has a hole REST must fill
        assert [r[0] for r in rest_klines(fake, "BTCUSDT", "1m", missed[0], missed[1])] == missed


async def _one_closed_candle(client, clock: SharedClock, fake: FakeBinance) -> list[list]:
    watching = asyncio.ensure_future(client.watch_ohlcv(BTC, "1m"))
    await until(lambda: len(fake.ws.connections) == 1 and fake.ws.subscriptions() == ["btcusdt@kline_1m"])
    await asyncio.sleep(0.02)  # the SUBSCRIBE reply is in
    clock.advance(MINUTE)
    return await asyncio.wait_for(watching, 2)


async def test_a_stall_is_silence_on_an_open_connection_until_released(market):
    clock, fake = market
    async with pro_client(fake) as client:
        await _one_closed_candle(client, clock, fake)
        fake.ws_stall(answer_pings=True)
        clock.advance(MINUTE)
        watching = asyncio.ensure_future(client.watch_ohlcv(BTC, "1m"))
        await asyncio.sleep(0.5)
        assert not watching.done()  # nothing for 0.5 s ...
        [ws_client] = client.clients.values()
        assert not ws_client.closed() and len(fake.ws.connections) == 1  # ... and both ends still open
        fake.ws_release()
        [late] = await asyncio.wait_for(watching, 2)  # what was held back arrives late, not lost
        assert late[0] == (clock() // MINUTE - 1) * MINUTE


async def test_a_stall_without_pongs_is_a_request_timeout_after_two_keepalives(market):
    """ccxt.pro pings every streaming keepAlive (Binance's: 180 s) and gives up after two unanswered:
    with the default a stalled stream goes unnoticed for 6 minutes; here keepAlive is 0.2 s."""
    clock, fake = market
    async with pro_client(fake) as client:
        client.streaming = {**client.streaming, "keepAlive": 200}
        await _one_closed_candle(client, clock, fake)
        fake.ws_stall()
        started = time.monotonic()
        with pytest.raises(RequestTimeout, match="ping-pong keepalive"):
            await asyncio.wait_for(client.watch_ohlcv(BTC, "1m"), 3)
        assert 0.3 < time.monotonic() - started < 1.5
        fake.ws_release()


async def test_an_order_fill_arrives_as_order_trade_update(market):
    _, fake = market
    async with pro_client(fake, adjustForTimeDifference=True, options=NO_POSITIONS_SNAPSHOT) as client:
        await client.load_markets()
        fake.set_price("BTCUSDT", 60_000)
        watching = asyncio.ensure_future(client.watch_orders(BTC))
        await until(lambda: len(fake.ws.connections) == 1 and fake.ws.connections[0].listen_key == fake.ws.listen_key)
        balances = asyncio.ensure_future(client.watch_balance())
        await asyncio.sleep(0.05)
        placed = await client.create_order(BTC, "market", "buy", 0.01, None, {"clientOrderId": "ws-entry"})
        orders = await asyncio.wait_for(watching, 2)
        while orders[-1]["status"] != "closed":
            orders = await asyncio.wait_for(client.watch_orders(BTC), 2)
        balance = await asyncio.wait_for(balances, 2)
    assert (orders[-1]["id"], orders[-1]["clientOrderId"], orders[-1]["filled"], orders[-1]["average"]) == (
        placed["id"], "ws-entry", 0.01, 60_000)
    updates = [e["o"] for e in fake.ws.events_sent if e["e"] == "ORDER_TRADE_UPDATE"]
    assert [(u["x"], u["X"]) for u in updates] == [("NEW", "NEW"), ("TRADE", "FILLED")]
    assert updates[1]["n"] == fake.trades[-1]["commission"] and updates[1]["t"] == fake.trades[-1]["id"]
    [account] = [e["a"] for e in fake.ws.events_sent if e["e"] == "ACCOUNT_UPDATE"]
    assert account["m"] == "ORDER" and account["P"][0]["pa"] == "0.010"
    assert balance["USDT"]["total"] == pytest.approx(fake.balance)


async def test_a_triggered_stop_arrives_as_algo_and_order_updates(market):
    _, fake = market
    async with pro_client(fake, adjustForTimeDifference=True, options=NO_POSITIONS_SNAPSHOT) as client:
        await client.load_markets()
        fake.set_price("BTCUSDT", 60_000)
        await client.create_order(BTC, "market", "buy", 0.01)
        await client.create_order(BTC, "market", "sell", 0.01, None, {"stopLossPrice": 59_000, "reduceOnly": True})
        watching = asyncio.ensure_future(client.watch_orders(BTC))
        await until(lambda: len(fake.ws.connections) == 1)
        await asyncio.sleep(0.05)
        fake.set_price("BTCUSDT", 58_900)
        await asyncio.wait_for(watching, 2)
    kinds = [(e["e"], e["o"].get("x"), e["o"].get("ot") or e["o"].get("o"), e["o"]["X"])
             for e in fake.ws.events_sent if e["e"] in ("ORDER_TRADE_UPDATE", "ALGO_UPDATE")]
    assert kinds == [("ORDER_TRADE_UPDATE", "NEW", "STOP_MARKET", "NEW"),
                     ("ORDER_TRADE_UPDATE", "TRADE", "STOP_MARKET", "FILLED"),
                     ("ALGO_UPDATE", None, "STOP_MARKET", "FINISHED")]
    assert fake.positions["BTCUSDT"]["amount"] == 0


async def test_the_listen_key_lives_60_minutes_of_fake_clock_from_its_last_keepalive(market):
    clock, fake = market
    async with pro_client(fake) as client:
        key = (await client.fapiPrivatePostListenKey())["listenKey"]
        assert (await client.fapiPrivatePostListenKey())["listenKey"] == key  # the same while valid
        for _ in range(3):  # kept alive: 150 minutes of clock on one key
            clock.advance(50 * MINUTE)
            assert await client.fapiPrivatePutListenKey() == {"listenKey": key}
        clock.advance(60 * MINUTE)
        with pytest.raises(ExchangeError, match="-1125"):
            await client.fapiPrivatePutListenKey()
        fresh = (await client.fapiPrivatePostListenKey())["listenKey"]
        assert fresh != key
        assert await client.fapiPrivateDeleteListenKey() == {}
        with pytest.raises(ExchangeError, match="This listenKey does not exist"):
            await client.fapiPrivateDeleteListenKey()
    assert [r.status for r in fake.requests if r.path == "/fapi/v1/listenKey"] == [200] * 5 + [400, 200, 200, 400]


async def test_listen_key_expired_arrives_after_60_minutes_without_keepalive(market):
    clock, fake = market
    async with pro_client(fake) as client:
        key = (await client.fapiPrivatePostListenKey())["listenKey"]
    async with aiohttp.ClientSession() as session, session.ws_connect(
            f"ws://127.0.0.1:{fake.port}/private/ws?listenKey={key}") as ws:
        await until(lambda: len(fake.ws.connections) == 1)
        clock.advance(59 * MINUTE)
        with pytest.raises(TimeoutError):
            await ws.receive_json(timeout=0.1)
        clock.advance(MINUTE)
        expired = await ws.receive_json(timeout=2)
        assert expired == {"e": "listenKeyExpired", "E": str(clock()), "listenKey": key}
        fake.set_price("BTCUSDT", 60_000)  # nothing more comes on the expired key
        fake.ws.account_update("ORDER", "BTCUSDT")
        with pytest.raises(TimeoutError):
            await ws.receive_json(timeout=0.1)
        assert not ws.closed  # Binance keeps the connection; the client must get a new key


async def test_user_stream_on_ws_path_and_expiry_on_command(market):
    _, fake = market
    key = fake.ws.listen_key_request("POST")
    async with aiohttp.ClientSession() as session, session.ws_connect(
            f"ws://127.0.0.1:{fake.port}/ws/{key}") as ws:
        await until(lambda: len(fake.ws.connections) == 1)
        fake.ws_expire_listen_key()
        assert json.loads((await ws.receive(timeout=2)).data)["e"] == "listenKeyExpired"
