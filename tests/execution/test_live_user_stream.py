"""The live daemon on the user data stream, against the fake exchange (the real ccxt client over HTTP,
the bot's own websocket client, both on 127.0.0.1 and one clock the test moves): a stop or target is
journaled from the stream's own fills by the heartbeat it wakes, with no REST request; a position
closed by hand is caught at once; while the stream is down the REST positions check runs every
heartbeat, and the reconnect brings a reconciliation; with the stream off or refused, today's REST path."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

from fakes.ccxt_client import by_hand
from fakes.live_bot import SYMBOL, SYMBOL_ID, open_a_position
from fakes.waiting import until
from trading_bot.persistence.state_store import StateStore, read_journal

POSITIONS = "/fapi/v3/positionRisk"
FILLS = "/fapi/v1/userTrades"
LISTEN_KEY = "/fapi/v1/listenKey"


def asked(fake, path: str) -> int:
    return sum(1 for r in fake.requests if r.path == path)


def journal(settings) -> list[dict]:
    return read_journal(StateStore(settings.state_dir()).trades_path)


def open_protection(fake) -> list[dict]:
    return [a for a in fake.algo_orders.values() if a["algoStatus"] == "NEW"]


async def test_a_triggered_stop_is_journaled_from_the_streams_fill_without_a_positions_request(tmp_path, market):
    clock, fake = market
    bot, settings = await open_a_position(tmp_path, clock, fake)
    try:
        broker = bot.parts.broker
        [position] = broker.open_positions()
        assert broker.stream_state == "connected" and bot.parts.report.status()["user_stream"] == "connected"
        positions, fills = asked(fake, POSITIONS), asked(fake, FILLS)
        bot.wake_event.clear()
        triggered = time.perf_counter()
        fake.set_price(SYMBOL_ID, position.stop * (1 - 0.001 * position.side))  # the exchange's stop fires
        await asyncio.wait_for(bot.wake_event.wait(), 2)  # its fill, on the stream, ends the daemon's sleep ...
        woken = time.perf_counter()
        await bot.tick()  # ... and the heartbeat that follows at once books it
        journaled = time.perf_counter()
        [trade] = journal(settings)
        assert asked(fake, POSITIONS) == positions and asked(fake, FILLS) == fills, "no REST request for it"
        [fill] = [t for t in fake.trades if t["orderId"] == fake.trades[-1]["orderId"]]
        assert trade["exit_reason"] == "stop" and trade["qty"] == position.qty
        assert (trade["exit_price"], trade["exit_fee"], trade["exit_ts"]) == (
            pytest.approx(float(fill["price"])), float(fill["commission"]), fill["time"])
        assert trade["gross_pnl"] == pytest.approx(fake.realized_pnl()) and broker.open_positions() == []
        assert open_protection(fake) == [], "the target was cancelled"
        assert broker.wallet.balance == pytest.approx(fake.balance)
        print(f"\nuser data stream: stop triggered → daemon woken {1000 * (woken - triggered):.1f} ms → "
              f"trade journaled {1000 * (journaled - triggered):.1f} ms (loopback, the heartbeat included)")
    finally:
        await bot.shutdown()


async def test_a_target_filled_in_parts_is_booked_once_its_fills_cover_the_position(tmp_path, market):
    clock, fake = market
    fake.trigger_fill_parts = 3
    bot, settings = await open_a_position(tmp_path, clock, fake)
    try:
        [position] = bot.parts.broker.open_positions()
        positions = asked(fake, POSITIONS)
        fake.set_price(SYMBOL_ID, position.target * (1 + 0.001 * position.side))
        await fake.ws_flush()
        clock.advance(5_000)
        await bot.tick()
        [trade] = journal(settings)
        parts = [t for t in fake.trades if t["orderId"] == fake.trades[-1]["orderId"]]
        assert len(parts) == 3 and sum(float(t["qty"]) for t in parts) == pytest.approx(position.qty)
        assert trade["exit_reason"] == "target" and trade["exit_fee"] == pytest.approx(
            sum(float(t["commission"]) for t in parts))
        assert trade["gross_pnl"] == pytest.approx(fake.realized_pnl()) and trade["pnl"] > 0
        assert asked(fake, POSITIONS) == positions and open_protection(fake) == []
    finally:
        await bot.shutdown()


async def test_a_position_closed_by_hand_is_checked_over_rest_at_once(tmp_path, market):
    """No stop or target of ours filled, but the stream saw the position go flat: the next heartbeat asks
    for positions although the periodic check is not due, and books the exit from the fills."""
    clock, fake = market
    bot, settings = await open_a_position(tmp_path, clock, fake)
    try:
        [position] = bot.parts.broker.open_positions()
        positions = asked(fake, POSITIONS)
        bot.wake_event.clear()
        async with by_hand(fake) as client:
            await client.create_order(SYMBOL, "market", "sell" if position.side > 0 else "buy", position.qty, None,
                                      {"reduceOnly": True})
        await asyncio.wait_for(bot.wake_event.wait(), 2)
        clock.advance(5_000)
        await bot.tick()
        [trade] = journal(settings)
        assert trade["exit_reason"] == "outside" and asked(fake, POSITIONS) == positions + 1
        assert trade["gross_pnl"] == pytest.approx(fake.realized_pnl())
    finally:
        await bot.shutdown()


async def test_after_a_drop_rest_checks_every_heartbeat_and_the_reconnect_brings_a_reconciliation(
        tmp_path, market, caplog):
    caplog.set_level(logging.INFO)
    clock, fake = market
    bot, settings = await open_a_position(tmp_path, clock, fake)
    try:
        broker = bot.parts.broker
        [position] = broker.open_positions()
        assert fake.ws_drop() >= 1  # (the candle feed's websocket too)
        await until(lambda: broker.stream_state == "reconnecting")
        fake.set_price(SYMBOL_ID, position.stop * (1 - 0.001 * position.side))  # the stop fills in the gap
        positions = asked(fake, POSITIONS)
        await bot.tick()  # the stream is down: positions asked, as before the stream
        [trade] = journal(settings)
        assert trade["exit_reason"] == "stop" and asked(fake, POSITIONS) == positions + 1
        assert trade["gross_pnl"] == pytest.approx(fake.realized_pnl())
        reconciled = caplog.text.count("reconciled with the exchange")
        clock.advance(1_000)  # the backoff, on the bot's clock
        await until(lambda: broker.stream_state == "connected")
        assert broker.reconcile_requested, "the events of the gap are lost"
        await bot.tick()
        assert caplog.text.count("reconciled with the exchange") == reconciled + 1
        assert not broker.reconcile_requested and "connected again" in caplog.text
        await bot.tick()
        assert caplog.text.count("reconciled with the exchange") == reconciled + 1, "once per reconnect"
    finally:
        await bot.shutdown()


@pytest.mark.parametrize("how", ["USER_STREAM=off", "the exchange refuses the listen key"])
async def test_without_the_stream_the_rest_path_books_the_stop_at_the_next_heartbeat(tmp_path, market, how):
    clock, fake = market
    if how == "USER_STREAM=off":
        bot, settings = await open_a_position(tmp_path, clock, fake, user_stream=False)
    else:
        fake.inject("-2015", LISTEN_KEY, method="POST", times=100)
        bot, settings = await open_a_position(tmp_path, clock, fake)
    try:
        broker = bot.parts.broker
        assert broker.stream_state == ("off" if how == "USER_STREAM=off" else "reconnecting")
        assert fake.ws.user_connections_accepted == 0
        [position] = broker.open_positions()
        positions = asked(fake, POSITIONS)
        fake.set_price(SYMBOL_ID, position.stop * (1 - 0.001 * position.side))
        clock.advance(5_000)
        await bot.tick()
        [trade] = journal(settings)
        assert trade["exit_reason"] == "stop" and asked(fake, POSITIONS) == positions + 1
        assert trade["gross_pnl"] == pytest.approx(fake.realized_pnl()) and open_protection(fake) == []
        if how == "USER_STREAM=off":
            assert asked(fake, LISTEN_KEY) == 0 and bot.parts.report.status()["user_stream"] == "off"
    finally:
        await bot.shutdown()
