"""The daemon on pushed candles (CANDLE_FEED=websocket, the default), against the fake exchange with
the real ccxt.pro client: a close wakes the loop and its bots trade it with no klines request; with
CANDLE_FEED=rest the same close is polled."""

from __future__ import annotations

import asyncio
import json

from fakes.live_bot import live_settings
from fakes.waiting import klines_requests, until
from trading_bot.engine.daemon import Daemon


async def test_a_pushed_close_wakes_the_loop_and_the_bot_enters_without_polling(tmp_path, market):
    clock, fake = market
    bot = Daemon(live_settings(tmp_path, fake), clock=clock, install_signals=False)
    await bot.start()
    try:
        await until(lambda: fake.ws.subscriptions() == ["btcusdt@kline_1m"])
        await asyncio.sleep(0.05)  # the SUBSCRIBE answer is in
        bot.wake_event.clear()
        before = klines_requests(fake)
        clock.advance(60_000)  # the close …
        await until(bot.wake_event.is_set)  # … is pushed and wakes the loop
        await bot.tick()
        assert klines_requests(fake) == before
        assert len(bot.parts.broker.open_positions()) == 1  # the hair-trigger bot entered on it
        status = json.loads((bot.state_dir / "status.json").read_text())
        assert status["candle_feed"] == "websocket 1/1 live"
    finally:
        await bot.shutdown()
    assert not fake.ws.connections  # the stream closed with the daemon


async def test_candle_feed_rest_polls_the_same_close(tmp_path, market):
    clock, fake = market
    bot = Daemon(live_settings(tmp_path, fake, candle_feed="rest"), clock=clock, install_signals=False)
    await bot.start()
    try:
        before = klines_requests(fake)
        clock.advance(60_000)
        await bot.tick()
        assert klines_requests(fake) == before + 1
        assert len(bot.parts.broker.open_positions()) == 1
        assert fake.ws.connections_accepted == fake.ws.user_connections_accepted, "no market data websocket"
    finally:
        await bot.shutdown()
