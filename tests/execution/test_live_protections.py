"""The account rules in live mode: the exit the exchange's stop made is booked first, then the rules
refuse the signal of that same candle, as in the backtest; the state survives a restart."""

from __future__ import annotations

import asyncio

import pytest

from fakes.clocks import JAN_1_2026_MS
from fakes.live_bot import SYMBOL_ID, open_a_position
from trading_bot.domain.protections import HALTED, REDUCING
from trading_bot.engine.control import Controls
from trading_bot.engine.daemon import Daemon
from trading_bot.persistence.state_store import StateStore, decode_state, read_journal


@pytest.fixture
def market_start_ms() -> int:
    return JAN_1_2026_MS + 7 * 3_600_000 + 58 * 60_000  # 07:58 UTC: two minutes before a funding moment


async def _stopped_out(bot, clock, fake):
    [position] = bot.parts.broker.open_positions()
    fake.set_price(SYMBOL_ID, position.stop * (1 - 0.001 * position.side))  # the exchange's stop fires
    await fake.ws_flush()  # its events reach the bot
    clock.advance(60_000)  # the candle closes, with a signal (the hair-trigger threshold)
    await bot.tick()
    return position


async def test_a_stop_out_that_reaches_the_daily_loss_limit_refuses_the_reentry(tmp_path, market):
    clock, fake = market
    bot, settings = await open_a_position(tmp_path, clock, fake, max_open_positions=1, daily_loss_limit=0.0005)
    try:
        await _stopped_out(bot, clock, fake)
        [trade] = read_journal(StateStore(settings.state_dir()).trades_path)
        assert trade["exit_reason"] == "stop"
        assert bot.parts.broker.open_positions() == [], "no re-entry: the day's loss reached the limit"
        state = bot.parts.broker.trading_state()
        assert state.state == REDUCING and "daily loss limit 0.05% of the day" in state.reason
        assert bot.parts.report.status_line().startswith("REDUCING (daily loss limit")
        saved = decode_state(StateStore(settings.state_dir()).positions_path.read_bytes(), "positions.json")
        assert saved.guard.daily_limit_day == clock.now_ms() // 86_400_000
    finally:
        await bot.shutdown()
    again = Daemon(settings, clock=clock, install_signals=False)
    await again.start()
    try:
        assert again.parts.broker.trading_state().state == REDUCING, "the limit survives a restart"
        clock.advance(60_000)
        await again.tick()
        assert again.parts.broker.open_positions() == []
    finally:
        await again.shutdown()


async def test_a_cooldown_after_a_stop_out_skips_signals_for_its_candles(tmp_path, market):
    clock, fake = market
    bot, _ = await open_a_position(tmp_path, clock, fake, max_open_positions=1, cooldown_stopouts=1,
                                   cooldown_candles=2)
    try:
        await _stopped_out(bot, clock, fake)
        broker = bot.parts.broker
        assert broker.open_positions() == [], "the stop-out candle's own signal is skipped"
        clock.advance(60_000)
        await bot.tick()
        assert broker.open_positions() == [], "and the next candle's"
        clock.advance(60_000)
        await bot.tick()
        assert len(broker.open_positions()) == 1, "two candles later the bot trades again"
        assert broker.trading_state().allows_entries, "a cooldown is the bot's, not the account's"
    finally:
        await bot.shutdown()


async def test_the_max_drawdown_halts_until_resumed(tmp_path, market):
    clock, fake = market
    bot, _ = await open_a_position(tmp_path, clock, fake, max_open_positions=1, max_drawdown=0.0005)
    try:
        await _stopped_out(bot, clock, fake)
        broker = bot.parts.broker
        assert broker.open_positions() == []
        state = broker.trading_state()
        assert state.state == HALTED and "max drawdown" in state.reason
        answer = await Controls(bot.parts, asyncio.Lock(), bot.reload).resume()
        assert answer.startswith("resumed: lifted the halt (max drawdown") and answer.endswith("new entries allowed")
        clock.advance(60_000)
        await bot.tick()
        assert len(broker.open_positions()) == 1
    finally:
        await bot.shutdown()


async def test_the_exchanges_funding_fee_is_booked_on_its_position_and_its_trade(tmp_path, market):
    """Funding at 08:00 UTC on an open position: the fee from the exchange's income history goes into
    the position, the wallet's funding total, status.json and, at the close, the journaled trade,
    apart from the trade's PnL and fees; booked once however often it is read."""
    clock, fake = market
    bot, settings = await open_a_position(tmp_path, clock, fake)
    try:
        broker = bot.parts.broker
        [position] = broker.open_positions()
        clock.advance(3 * 60_000)  # past 08:00 and the minute after it
        await bot.tick()
        fee = fake.funding_fees()
        assert fee != 0, "the fake charged funding at 08:00"
        assert position.funding == fee and broker.wallet.funding == fee
        assert bot.parts.report.status()["funding"] == fee
        for _ in range(3):
            clock.advance(60_000)
            await bot.tick()
        assert broker.wallet.funding == fee, "booked once"
        fake.set_price(SYMBOL_ID, position.stop * (1 - 0.001 * position.side))
        await fake.ws_flush()
        clock.advance(5_000)
        await bot.tick()
        [trade] = read_journal(StateStore(settings.state_dir()).trades_path)
        assert trade["funding"] == fee and trade["pnl"] == trade["gross_pnl"] - trade["entry_fee"] - trade["exit_fee"]
    finally:
        await bot.shutdown()
    again = Daemon(settings, clock=clock, install_signals=False)
    await again.start()
    try:
        clock.advance(60 * 60_000)
        await again.tick()
        assert again.parts.broker.wallet.funding == fee, "the fee is not booked again after a restart"
    finally:
        await again.shutdown()
