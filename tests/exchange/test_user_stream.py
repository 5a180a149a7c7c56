"""The user data stream client (exchange/user_stream.py) against the fake exchange over real HTTP and a
real websocket on 127.0.0.1, its timers on the test's clock (which only the test moves): keep-alive,
renewal before the 24-hour cut, an expired or unknown listen key, a drop, a stall, the exchange's
errors; and the listen key never in a log line."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from fakes.clocks import SharedClock
from fakes.fake_binance import FakeBinance
from fakes.live_bot import LIVE_KEY, LIVE_SECRET
from fakes.waiting import until
from trading_bot.exchange.client import ExchangeClient, stream_url_for
from trading_bot.exchange.retry import RetryPolicy
from trading_bot.exchange.user_stream import StreamTiming, UserStream, user_stream_url
from trading_bot.ops.logs import RedactSecrets

MINUTE = 60_000
LISTEN_KEY = "/fapi/v1/listenKey"
POLL_S = 0.005  # the stream looks at the test's clock this often (the default, 50 ms, only slows tests)


@dataclass
class Opened:
    stream: UserStream
    events: list[dict[str, Any]] = field(default_factory=list)
    connected: list[int] = field(default_factory=list)  # the clock at each new connection


@contextlib.asynccontextmanager
async def a_stream(clock: SharedClock, fake: FakeBinance, url: str | None = None) -> AsyncIterator[Opened]:
    pool = ExchangeClient("binanceusdm", fake.url, LIVE_KEY, LIVE_SECRET, now_ms=clock,
                          retry=RetryPolicy(attempts=2, base_delay=0.01, max_delay=0.02))
    stream = UserStream(pool, url or user_stream_url(fake.ws_url, demo=False), clock, StreamTiming(poll_s=POLL_S),
                        rng=random.Random(7))
    opened = Opened(stream)
    await stream.start(opened.events.append, lambda: opened.connected.append(clock()))
    try:
        yield opened
    finally:
        await stream.close()
        await pool.close()


def key_requests(fake: FakeBinance, method: str) -> list[int]:
    """The HTTP status of each listen key request of that method, in order."""
    return [r.status for r in fake.requests if r.path == LISTEN_KEY and r.method == method]


async def settle() -> None:
    await asyncio.sleep(4 * POLL_S)


def assert_no_key_logged(fake: FakeBinance, caplog: pytest.LogCaptureFixture) -> None:
    """Our lines never hold a listen key; and what every handler of the daemon writes (through its
    RedactSecrets filter) holds none either, ccxt's DEBUG lines of the listen key answers included."""
    keys = fake.ws.issued_keys
    assert keys
    ours = [r.getMessage() for r in caplog.records if r.name.startswith("trading_bot")]
    assert not [k for k in keys if any(k in line for line in ours)], "our code logged a listen key"
    shown = []
    for record in caplog.records:
        copy = logging.makeLogRecord(record.__dict__)
        RedactSecrets([]).filter(copy)
        shown.append(copy.getMessage())
    assert not [k for k in keys if any(k in line for line in shown)], "a listen key got past the log filter"


async def test_keepalive_puts_every_30_minutes_of_the_bots_clock_on_one_key_and_connection(market, caplog):
    caplog.set_level(logging.DEBUG)
    clock, fake = market
    puts: list[int] = []
    fake.on_executed = lambda method, path, params: puts.append(clock()) if (method, path) == ("PUT", LISTEN_KEY) else None
    async with a_stream(clock, fake) as opened:
        start = clock()
        key = fake.ws.listen_key
        for _ in range(12):  # two hours, ten minutes at a time
            clock.advance(10 * MINUTE)
            await until(lambda: len(puts) == (clock() - start) // (30 * MINUTE))
            await settle()
        assert puts == [start + k * 30 * MINUTE for k in (1, 2, 3, 4)]
        assert fake.ws.listen_key == key and key_requests(fake, "POST") == [200] and key_requests(fake, "PUT") == [200] * 4
        assert fake.ws.connections_accepted == 1 and opened.connected == [start] and opened.stream.keepalives == 4
        assert fake.ws.pings_answered >= 11, "each quiet ten minutes got a ping, and its pong"
        fake.ws.account_update("ORDER", "BTCUSDT")  # and the stream still delivers
        await until(lambda: [e["e"] for e in opened.events] == ["ACCOUNT_UPDATE"])
    assert_no_key_logged(fake, caplog)


async def test_the_connection_is_renewed_before_the_24_hour_cut_without_a_gap(market, caplog):
    caplog.set_level(logging.INFO)
    clock, fake = market
    async with a_stream(clock, fake) as opened:
        start = clock()
        for step in range(1, 50):  # 24.5 hours, thirty minutes at a time: a keep-alive each time
            clock.advance(30 * MINUTE)
            await until(lambda step=step: opened.stream.keepalives == step)
            if step == 46:  # 23 hours: a second connection, then the first one closed
                await until(lambda: fake.ws.connections_accepted == 2 and len(fake.ws.connections) == 1)
        assert fake.ws.cut_at_24h == 0, "the exchange never had to cut it"
        assert opened.connected == [start], "no gap, so no reconciliation asked"
        assert "connection renewed ahead of the exchange's 24-hour cut" in caplog.text
        fake.ws.account_update("ORDER", "BTCUSDT")
        await until(lambda: len(opened.events) == 1)  # on the new connection, once
        await settle()
        assert len(opened.events) == 1
    assert_no_key_logged(fake, caplog)


async def test_listen_key_expired_brings_a_new_key_and_connection(market, caplog):
    clock, fake = market
    async with a_stream(clock, fake) as opened:
        first = fake.ws.listen_key
        fake.ws_expire_listen_key()
        await until(lambda: len(opened.connected) == 2)
        assert fake.ws.listen_key not in (None, first) and opened.stream.state == "connected"
        await until(lambda: len(fake.ws.connections) == 1)
        assert fake.ws.connections[0].listen_key == fake.ws.listen_key
        assert key_requests(fake, "POST") == [200, 200]
    assert_no_key_logged(fake, caplog)


async def test_sixty_minutes_without_a_keepalive_answer_minus_1125_and_a_new_key(market, caplog):
    """The clock jumps past the key's hour while the fake holds its listenKeyExpired back: the keep-alive
    hears -1125 first, and that alone brings a new key and connection."""
    clock, fake = market
    async with a_stream(clock, fake) as opened:
        first = fake.ws.listen_key
        fake.ws_stall(answer_pings=True)
        clock.advance(61 * MINUTE)
        await until(lambda: key_requests(fake, "PUT") == [400])
        fake.ws_release()
        await until(lambda: len(opened.connected) == 2)
        assert fake.ws.listen_key not in (None, first) and len(fake.ws.issued_keys) == 2
        assert "no longer knows the listen key" in caplog.text
    assert_no_key_logged(fake, caplog)


async def test_a_drop_reconnects_after_a_backoff_on_the_bots_clock_that_doubles_while_they_keep_dying(market):
    clock, fake = market
    async with a_stream(clock, fake) as opened:
        stream = opened.stream
        clock.advance(2 * MINUTE)  # a connection that lived: the next backoff starts from 0.5-1 s
        await settle()
        for quiet, rest in ((499, 501), (999, 1_001)):  # then 1-2 s: the one before died young
            assert fake.ws_drop() == 1
            await until(lambda: stream.state == "reconnecting")
            count = len(opened.connected)
            clock.advance(quiet)
            await settle()
            assert len(opened.connected) == count and fake.ws.connections == [], "no redial before the backoff"
            clock.advance(rest)
            await until(lambda count=count: len(opened.connected) == count + 1)
        assert stream.state == "connected" and fake.ws.connections_accepted == 3


async def test_a_silent_stall_is_caught_by_an_unanswered_ping_and_the_connection_replaced(market, caplog):
    clock, fake = market
    async with a_stream(clock, fake) as opened:
        stream = opened.stream
        fake.ws_stall(answer_pings=True)  # quiet, yet it answers: alive, kept
        clock.advance(31_000)
        await until(lambda: fake.ws.pings_answered == 1)
        clock.advance(11_000)
        await settle()
        assert stream.state == "connected" and fake.ws.connections_accepted == 1
        fake.ws_stall()  # now nothing at all, pings included
        clock.advance(31_000)  # a ping ...
        await settle()
        clock.advance(10_000)  # ... unanswered for 10 s of the bot's clock (and half a second of wall time)
        await until(lambda: stream.state == "reconnecting")
        fake.ws_release()
        clock.advance(2_000)
        await until(lambda: len(opened.connected) == 2)
        assert len(fake.ws.connections) == 1 and fake.ws.connections_accepted == 2
        assert "not even an answer to a ping: stalled" in caplog.text


async def test_the_listen_key_endpoints_errors(market, caplog):
    """-2015 on the POST: refused, tried again 15 minutes later; a server error on the POST: retried;
    -1001 on a keep-alive: the key kept, the PUT tried again a minute later; -1125 on one: a new
    connection."""
    caplog.set_level(logging.INFO)
    clock, fake = market
    fake.inject("-2015", LISTEN_KEY, method="POST")
    async with a_stream(clock, fake) as opened:
        stream = opened.stream
        assert stream.state == "reconnecting" and opened.connected == [] and key_requests(fake, "POST") == [401]
        assert "refuses this API key a stream" in caplog.text
        clock.advance(14 * MINUTE)
        await settle()
        assert opened.connected == []
        fake.inject("-1001", LISTEN_KEY, method="POST")
        clock.advance(MINUTE)
        await until(lambda: len(opened.connected) == 1)
        assert key_requests(fake, "POST") == [401, 500, 200]  # the server error retried at once

        fake.inject("-1001", LISTEN_KEY, method="PUT")
        clock.advance(30 * MINUTE)
        await until(lambda: key_requests(fake, "PUT") == [500])
        clock.advance(MINUTE)
        await until(lambda: key_requests(fake, "PUT") == [500, 200])
        assert len(opened.connected) == 1 and "keeping the listen key alive failed" in caplog.text

        fake.inject("-1125", LISTEN_KEY, method="PUT")
        clock.advance(30 * MINUTE)
        await until(lambda: len(opened.connected) == 2)
        assert key_requests(fake, "PUT")[-1] == 400 and stream.state == "connected"
    assert_no_key_logged(fake, caplog)


async def test_a_connection_refused_is_logged_without_its_url_and_retried(market, caplog):
    """aiohttp's errors name the URL, which holds the listen key: the log line has it masked."""
    clock, fake = market
    async with a_stream(clock, fake, url=f"ws://127.0.0.1:{fake.port}/nowhere?listenKey=") as opened:
        assert opened.stream.state == "reconnecting" and fake.ws.connections_accepted == 0
        assert "connecting failed" in caplog.text and "listenKey=***" in caplog.text
        clock.advance(2_000)
        await until(lambda: caplog.text.count("connecting failed") == 2)
    assert_no_key_logged(fake, caplog)


def test_the_stream_url_for_production_the_demo_and_a_local_exchange():
    assert user_stream_url("", demo=False) == "wss://fstream.binance.com/private/ws?listenKey="
    assert user_stream_url("", demo=True) == "wss://fstream.binancefuture.com/private/ws?listenKey="
    assert user_stream_url(stream_url_for("http://127.0.0.1:8080"), demo=True) == \
        "ws://127.0.0.1:8080/private/ws?listenKey="
    assert user_stream_url("wss://proxy.example/stream-auth", demo=False) == "wss://proxy.example/stream-auth/"
