"""PushedCandles (exchange/ws_candles.py) with the real ccxt.pro client over a real websocket to the
fake exchange on 127.0.0.1: closes pushed and served without REST, a drop filled by REST with no
candle missing or twice, a silent stall replaced, the fallback to REST after repeated failures."""

from __future__ import annotations

import asyncio
import logging
import time

import numpy as np
import pytest

from fakes.waiting import klines_requests, until
from trading_bot.domain.candles import TS
from trading_bot.domain.timeframes import last_closed_open_ms
from trading_bot.exchange import ws_candles
from trading_bot.exchange.client import ExchangeClient
from trading_bot.exchange.source import ExchangeSource
from trading_bot.exchange.ws_candles import PushedCandles
from trading_bot.marketdata.manager import MarketDataManager

BTC, ETH = "BTC/USDT:USDT", "ETH/USDT:USDT"
MINUTE = 60_000
KEYS = [(BTC, "1m"), (ETH, "1m"), (BTC, "5m")]



@pytest.fixture
async def feed(market, tmp_path):
    """A manager on PushedCandles over the shared clock's fake, history loaded, streams started."""
    clock, fake = market
    pool = ExchangeClient("binanceusdm", fake.url, now_ms=clock)
    pushes: list[int] = []
    source = PushedCandles(pool, KEYS, ExchangeSource(pool, owns_pool=False), grace_ms=1_000, keepalive_ms=200,
                           on_push=lambda: pushes.append(clock()))
    mdm = MarketDataManager(KEYS, tmp_path, source, history_limit=300, write_cache=True)
    mdm.start_push()
    await mdm.refresh(clock())
    await until(lambda: len(fake.ws.subscriptions()) == len(KEYS))
    await asyncio.sleep(0.05)  # the SUBSCRIBE answer is in
    try:
        yield clock, fake, source, mdm, pushes
    finally:
        await source.close()
        await pool.close()


async def close_minutes(clock, fake, mdm: MarketDataManager, minutes: int = 1) -> dict:
    """To 100 ms after the minutes-th next close (within the push grace), then one refresh."""
    clock.advance((clock() // MINUTE + minutes) * MINUTE + 100 - clock())
    return await mdm.refresh(clock())


def rest_candles(fake, symbol_id: str, interval: str, start: int, end: int) -> np.ndarray:
    rows = fake._klines({"symbol": symbol_id, "interval": interval, "startTime": str(start), "endTime": str(end)})
    return np.array([[float(v) for v in row[:6]] for row in rows])


async def test_a_pushed_close_is_served_without_rest_and_equals_the_rest_candle(feed):
    clock, fake, source, mdm, pushes = feed
    before = klines_requests(fake)
    new = await close_minutes(clock, fake, mdm)
    assert set(new) == {(BTC, "1m"), (ETH, "1m")}  # 5m not due yet
    assert klines_requests(fake) == before  # straight from the stream
    assert pushes  # the daemon was woken
    last = int(mdm.series[(BTC, "1m")].last_ts or 0)
    assert last == last_closed_open_ms(clock(), MINUTE)
    assert np.array_equal(new[(BTC, "1m")], rest_candles(fake, "BTCUSDT", "1m", last, last))  # bit for bit
    assert source.summary() == "websocket 1/1 live"


async def test_a_drop_is_reconnected_and_rest_fills_the_gap_with_no_candle_missing_or_twice(feed, caplog):
    clock, fake, _source, mdm, _ = feed
    await close_minutes(clock, fake, mdm)
    fake.ws_drop()
    clock.advance(2 * MINUTE)  # two closes while nobody listens
    await until(lambda: fake.ws.connections_accepted >= 2 and len(fake.ws.subscriptions()) == len(KEYS))
    await asyncio.sleep(0.05)
    new = await close_minutes(clock, fake, mdm)
    btc = mdm.series[(BTC, "1m")].candles[:, TS]
    assert np.all(np.diff(btc) == MINUTE)  # contiguous: none missing, none twice
    assert new[(BTC, "1m")].shape[0] == 3
    assert "lost" in caplog.text and "REST fills any gap" in caplog.text
    # the next close comes from the stream again
    before = klines_requests(fake)
    await close_minutes(clock, fake, mdm)
    assert klines_requests(fake) == before


async def test_a_silent_stall_is_detected_and_the_connection_replaced(feed, caplog):
    clock, fake, _source, mdm, _ = feed
    caplog.set_level(logging.WARNING)
    fake.ws_stall(answer_pings=True)  # pings answered: only the missing closes tell
    clock.advance(MINUTE)
    clock.advance(1_500)  # past the grace
    new = await mdm.refresh(clock())
    assert (BTC, "1m") in new  # REST had it
    assert "stalled" in caplog.text
    assert sum("stalled" in r.message for r in caplog.records) == 1  # once per close, not per series
    fake.ws_release()
    await until(lambda: len(fake.ws.subscribe_messages) >= 2 and len(fake.ws.connections) == 1)
    await asyncio.sleep(0.05)
    before = klines_requests(fake)
    await close_minutes(clock, fake, mdm)
    assert klines_requests(fake) == before  # the replacement delivers
    assert np.all(np.diff(mdm.series[(ETH, "1m")].candles[:, TS]) == MINUTE)


async def test_repeated_failures_fall_back_to_rest_and_logged(market, tmp_path, caplog, monkeypatch):
    clock, fake = market
    monkeypatch.setattr(ws_candles, "RECONNECT_DELAYS_S", (0.01,))
    pool = ExchangeClient("binanceusdm", fake.url, now_ms=clock)
    source = PushedCandles(pool, KEYS, ExchangeSource(pool, owns_pool=False), ws_url="ws://127.0.0.1:9/ws",
                           grace_ms=1_000, retry_s=3600)
    mdm = MarketDataManager(KEYS, tmp_path, source, history_limit=300)
    try:
        mdm.start_push()
        await mdm.refresh(clock())
        await until(lambda: source.shards[0].state == "rest")
        assert "failed 5 times in a row" in caplog.text and "polling REST" in caplog.text
        clock.advance(MINUTE)
        started = time.monotonic()
        new = await mdm.refresh(clock())
        assert time.monotonic() - started < 0.5  # no wait for a push that cannot come
        assert (BTC, "1m") in new
    finally:
        await source.close()
        await pool.close()


async def test_a_series_added_at_run_time_is_subscribed_and_a_removed_one_forgotten(feed):
    clock, fake, source, mdm, _ = feed
    sol = ("SOL/USDT:USDT", "1m")
    await mdm.add_series([sol])
    mdm.remove_series([(BTC, "5m")])
    await until(lambda: len(fake.ws.subscribe_messages) >= 2 and "solusdt@kline_1m" in fake.ws.subscriptions())
    await asyncio.sleep(0.05)
    await mdm.refresh(clock())  # the new series' history, over REST
    before = klines_requests(fake)
    new = await close_minutes(clock, fake, mdm)
    assert sol in new and klines_requests(fake) == before  # pushed like the others
    assert fake.ws.subscribe_messages[-1] == ["btcusdt@kline_1m", "ethusdt@kline_1m", "solusdt@kline_1m"]
    assert source.summary() == "websocket 1/1 live"
