"""Live trading end to end: the daemon's real ccxt client over HTTP against the loopback fake."""

from __future__ import annotations

import logging

import pytest

from fakes.live_bot import SYMBOL_ID, open_a_position
from trading_bot.persistence.state_store import StateStore, read_journal


async def test_signal_opens_a_protected_position_and_the_stop_closes_it(tmp_path, market, caplog):
    caplog.set_level(logging.INFO)
    clock, fake = market
    bot, settings = await open_a_position(tmp_path, clock, fake)
    try:
        [position] = bot.parts.broker.open_positions()
        assert fake.positions[SYMBOL_ID]["amount"] == pytest.approx(position.side * position.qty)
        open_algos = [o for o in fake.algo_orders.values() if o.get("algoStatus", o.get("status")) in ("NEW", "open")]
        assert {o["orderType"] if "orderType" in o else o["type"] for o in open_algos} == {"STOP_MARKET", "TAKE_PROFIT_MARKET"}
        assert position.orders["stop"] and position.orders["target"]
        assert bot.parts.report.status()["entry_latency"]["orders"] == 1

        # The market falls through a long's stop (or rises through a short's).
        fake.set_price(SYMBOL_ID, position.stop * (1 - 0.001 * position.side))
        await fake.ws_flush()  # the fill's events reach the bot (within milliseconds, as they would)
        clock.advance(5_000)
        await bot.tick()
        assert bot.parts.broker.open_positions() == []
        [trade] = read_journal(StateStore(settings.state_dir()).trades_path)
        assert trade["exit_reason"] == "stop"
        assert trade["gross_pnl"] == pytest.approx(fake.realized_pnl())
        assert trade["pnl"] < 0
        assert not [o for o in fake.algo_orders.values() if o.get("algoStatus", o.get("status")) in ("NEW", "open")], \
            "the take-profit was cancelled"
        assert fake.duplicate_client_ids == []
    finally:
        await bot.shutdown()


async def test_take_profit_closes_it_and_the_stop_is_cancelled(tmp_path, market):
    clock, fake = market
    bot, settings = await open_a_position(tmp_path, clock, fake)
    try:
        [position] = bot.parts.broker.open_positions()
        fake.set_price(SYMBOL_ID, position.target * (1 + 0.001 * position.side))
        await fake.ws_flush()
        clock.advance(5_000)
        await bot.tick()
        [trade] = read_journal(StateStore(settings.state_dir()).trades_path)
        assert trade["exit_reason"] == "target" and trade["pnl"] > 0
        assert fake.positions.get(SYMBOL_ID, {}).get("amount", 0) == 0
        assert bot.parts.broker.wallet.balance == pytest.approx(fake.balance)
    finally:
        await bot.shutdown()


async def test_status_shows_the_entry_latency(tmp_path, market):
    from trading_bot.cli.status_view import collect_status, render_status

    clock, fake = market
    bot, settings = await open_a_position(tmp_path, clock, fake)
    try:
        await bot.parts.store.write_status(bot.parts.report.status())
        text = render_status(collect_status(settings.state_dir(), settings.mode()))
        assert "mode live" in text and "entry latency over 1 order(s): p50 " in text
        assert "user data stream connected" in text
    finally:
        await bot.shutdown()


async def test_a_stop_out_frees_its_slot_for_the_signal_of_the_same_candle(tmp_path, market):
    """MAX_OPEN_POSITIONS=1: the exchange stops the position out during a candle whose close signals again.
    The exit is booked before the cap is asked, so the bot re-enters at once, as the backtest does."""
    clock, fake = market
    bot, settings = await open_a_position(tmp_path, clock, fake, max_open_positions=1)
    try:
        [position] = bot.parts.broker.open_positions()
        fake.set_price(SYMBOL_ID, position.stop * (1 - 0.001 * position.side))  # the stop fires on the exchange
        await fake.ws_flush()
        clock.advance(60_000)  # the candle closes (with a signal: the hair-trigger threshold)
        await bot.tick()
        [trade] = read_journal(StateStore(settings.state_dir()).trades_path)
        assert trade["exit_reason"] == "stop"
        [again] = bot.parts.broker.open_positions()
        assert again.entry_ts > position.entry_ts
    finally:
        await bot.shutdown()
