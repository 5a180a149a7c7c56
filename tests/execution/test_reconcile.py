"""Startup reconciliation with the exchange (the truth), each case set up on the fake first."""

from __future__ import annotations

import json
import logging

import pytest

from fakes.ccxt_client import by_hand
from fakes.clocks import SharedClock
from fakes.live_bot import SYMBOL, SYMBOL_ID, live_settings, open_a_position
from trading_bot.domain.trades import Position
from trading_bot.engine.daemon import Daemon
from trading_bot.persistence.state_store import StateStore, read_journal


def open_algos(fake) -> list[dict]:
    return [o for o in fake.algo_orders.values() if o.get("algoStatus") == "NEW"]


async def restart(tmp_path, clock, fake, **changes) -> Daemon:
    bot = Daemon(live_settings(tmp_path, fake, **changes), clock=clock, install_signals=False)
    await bot.start()
    return bot


def state_with_an_entry_intent(settings, client_id: str, qty: float, side: int = 1, created_ms: int = 0) -> StateStore:
    """positions.json as a crash leaves it after an entry was sent and before its answer came."""
    store = StateStore(settings.state_dir())
    store.directory.mkdir(parents=True, exist_ok=True)
    store.positions_path.write_text(json.dumps({
        "version": 1, "mode": "live", "clock_ms": None, "saved_at": 0, "data_source": "exchange",
        "wallet": {"initial_balance": 10000.0, "balance": 10000.0, "fees_paid": 0.0, "trades": 0, "wins": 0},
        "bots": {}, "intents": {client_id: {"kind": "entry", "symbol": SYMBOL, "timeframe": "1m", "side": side,
                                            "qty": qty, "created_ms": created_ms}},
    }))
    return store


async def a_stopped_bot_whose_stop_was_cancelled(tmp_path, clock, fake) -> Position:
    """A bot opened a position and stopped; then its stop disappeared from the exchange."""
    bot, _ = await open_a_position(tmp_path, clock, fake)
    [position] = bot.parts.broker.open_positions()
    await bot.shutdown()
    async with by_hand(fake) as client:
        await client.cancel_order(position.orders["stop"], SYMBOL, {"trigger": True})
    return position


async def test_a_stop_that_filled_while_the_bot_was_down_is_booked(tmp_path, market):
    clock, fake = market
    bot, settings = await open_a_position(tmp_path, clock, fake)
    [position] = bot.parts.broker.open_positions()
    await bot.shutdown()
    fake.set_price(SYMBOL_ID, position.stop * (1 - 0.002 * position.side))  # while nobody watches
    realised_by_the_stop = fake.realized_pnl()
    assert realised_by_the_stop < 0
    clock.advance(120_000)
    algos_before = {o["algoId"] for o in open_algos(fake)}
    again = await restart(tmp_path, clock, fake)
    try:
        # (A fresh signal on the newest candle may open a new position at start: not the old one.)
        assert all(p.orders.get("entry") != position.orders["entry"] for p in again.parts.broker.open_positions())
        [trade] = read_journal(StateStore(settings.state_dir()).trades_path)
        assert trade["exit_reason"] == "stop" and trade["entry_price"] == position.entry_price
        assert trade["gross_pnl"] == pytest.approx(realised_by_the_stop)
        assert not algos_before & {o["algoId"] for o in open_algos(fake)}, "the orphaned take-profit was cancelled"
    finally:
        await again.shutdown()


async def test_an_unknown_exchange_position_is_adopted_and_protected(tmp_path, market, caplog):
    caplog.set_level(logging.INFO)
    clock, fake = market
    async with by_hand(fake) as client:
        await client.create_order(SYMBOL, "market", "buy", 0.01, None, {"clientOrderId": "manual-1"})
    bot = await restart(tmp_path, clock, fake)
    try:
        [position] = bot.parts.broker.open_positions()
        assert position.side == 1 and position.qty == 0.01 and position.timeframe == "1m"
        assert {o["orderType"] for o in open_algos(fake)} == {"STOP_MARKET", "TAKE_PROFIT_MARKET"}
        assert position.stop < position.entry_price < position.target
        assert "positions adopted" in caplog.text
    finally:
        await bot.shutdown()


async def test_with_adoption_off_an_unknown_position_is_left_alone(tmp_path, market, caplog):
    clock, fake = market
    async with by_hand(fake) as client:
        await client.create_order(SYMBOL, "market", "sell", 0.01, None, {"clientOrderId": "manual-2"})
    bot = await restart(tmp_path, clock, fake, adopt_unknown_positions=False)
    try:
        assert bot.parts.broker.open_positions() == [] and open_algos(fake) == []
        assert "positions left alone" in caplog.text
    finally:
        await bot.shutdown()


async def test_a_missing_stop_is_placed_again(tmp_path, market):
    clock, fake = market
    position = await a_stopped_bot_whose_stop_was_cancelled(tmp_path, clock, fake)
    assert {o["orderType"] for o in open_algos(fake)} == {"TAKE_PROFIT_MARKET"}
    again = await restart(tmp_path, clock, fake)
    try:
        assert {o["orderType"] for o in open_algos(fake)} == {"STOP_MARKET", "TAKE_PROFIT_MARKET"}
        [kept] = again.parts.broker.open_positions()
        assert kept.orders["stop"] != position.orders["stop"] and kept.orders["target"] == position.orders["target"]
    finally:
        await again.shutdown()


async def test_an_entry_intent_with_no_known_outcome_is_resolved(tmp_path, market):
    clock, fake = market
    settings = live_settings(tmp_path, fake)
    async with by_hand(fake) as client:
        await client.create_order(SYMBOL, "market", "buy", 0.02, None, {"clientOrderId": "tb-e-crashedbeforeanswer"})
    state_with_an_entry_intent(settings, "tb-e-crashedbeforeanswer", qty=0.02)
    bot = await restart(tmp_path, clock, fake)
    try:
        [position] = bot.parts.broker.open_positions()
        assert position.qty == 0.02 and position.orders["entry_client"] == "tb-e-crashedbeforeanswer"
        assert bot.parts.broker.intents == {}
        assert len(open_algos(fake)) == 2
        assert fake.duplicate_client_ids == []
    finally:
        await bot.shutdown()


async def test_orphan_protective_orders_of_ours_are_cancelled_others_kept(tmp_path, market):
    clock, fake = market
    async with by_hand(fake) as client:
        price = fake.price(SYMBOL_ID)
        await client.create_order(SYMBOL, "STOP_MARKET", "sell", 0.01, None,
                                  {"triggerPrice": round(price * 0.9, 1), "reduceOnly": True, "clientOrderId": "tb-s-orphan"})
        await client.create_order(SYMBOL, "STOP_MARKET", "sell", 0.01, None,
                                  {"triggerPrice": round(price * 0.8, 1), "reduceOnly": True, "clientOrderId": "manual-stop"})
    bot = await restart(tmp_path, clock, fake)
    try:
        assert [o["clientAlgoId"] for o in open_algos(fake)] == ["manual-stop"]
    finally:
        await bot.shutdown()


async def test_a_refused_stop_halts_new_entries_and_says_why(tmp_path, market):
    clock, fake = market
    await a_stopped_bot_whose_stop_was_cancelled(tmp_path, clock, fake)
    fake.inject("-2019", "/fapi/v1/algoOrder", method="POST", times=20)
    again = await restart(tmp_path, clock, fake)
    try:
        assert again.parts.broker.halted and "stop" in again.parts.broker.halted
        assert again.parts.report.status_line().startswith("HALTED (")
        assert again.parts.report.status()["halted"] == again.parts.broker.halted
    finally:
        await again.shutdown()


async def test_reconciliation_reruns_after_an_outage_and_periodically(tmp_path, market, caplog, monkeypatch):
    caplog.set_level(logging.INFO)
    clock, fake = market
    bot = await restart(tmp_path, clock, fake)
    try:
        runs = caplog.text.count("reconciled with the exchange")
        bot.exchange.get().outage_recovered = True  # requests work again after failing for a minute
        clock.advance(5_000)
        await bot.tick()
        assert caplog.text.count("reconciled with the exchange") == runs + 1
        await bot.tick()
        assert caplog.text.count("reconciled with the exchange") == runs + 1  # not every tick
        monkeypatch.setattr("trading_bot.engine.supervision.RECONCILE_EVERY_S", 0.0)
        await bot.tick()
        assert caplog.text.count("reconciled with the exchange") == runs + 2
    finally:
        await bot.shutdown()


async def test_the_pool_notices_an_outage_of_a_minute(monkeypatch):
    import ccxt

    from trading_bot.exchange.client import ExchangeClient

    now = [1000.0]
    monkeypatch.setattr("trading_bot.exchange.client.time.monotonic", lambda: now[0])
    pool = ExchangeClient("binanceusdm")

    class Client:
        def __init__(self) -> None:
            self.last_response_headers: dict = {}
            self.markets = {"X": {}}
            self.fail = True

        async def fetch_time(self):
            if self.fail:
                raise ccxt.NetworkError("down")
            return 1

    pool._client = Client()
    with pytest.raises(ccxt.NetworkError):
        await pool._once("fetch_time", (), {}, 1)
    now[0] += 61
    pool._client.fail = False
    await pool._once("fetch_time", (), {}, 1)
    assert pool.outage_recovered


async def test_an_entry_opened_and_closed_while_the_bot_was_down_is_booked(tmp_path, market):
    clock, fake = market
    settings = live_settings(tmp_path, fake)
    async with by_hand(fake) as client:
        await client.create_order(SYMBOL, "market", "buy", 0.02, None, {"clientOrderId": "tb-e-openedwhiledown"})
        fake.set_price(SYMBOL_ID, fake.price(SYMBOL_ID) * 0.99)
        await client.create_order(SYMBOL, "market", "sell", 0.02, None, {"clientOrderId": "manual-close",
                                                                           "reduceOnly": True})
    store = state_with_an_entry_intent(settings, "tb-e-openedwhiledown", qty=0.02)
    bot = await restart(tmp_path, clock, fake)
    try:
        [trade] = read_journal(store.trades_path)
        assert trade["qty"] == 0.02 and trade["gross_pnl"] == pytest.approx(fake.realized_pnl())
        assert trade["gross_pnl"] < 0
    finally:
        await bot.shutdown()


async def test_booking_a_trade_again_after_a_crash_keeps_one_journal_record(tmp_path, market):
    """A crash after the journal got the trade and before positions.json lost the intent: the next
    start books the same trade again, and the journal must still hold it once."""
    clock, fake = market
    settings = live_settings(tmp_path, fake)
    async with by_hand(fake) as client:
        await client.create_order(SYMBOL, "market", "sell", 0.02, None, {"clientOrderId": "tb-e-bookedtwice"})
        fake.set_price(SYMBOL_ID, fake.price(SYMBOL_ID) * 0.995)
        await client.create_order(SYMBOL, "market", "buy", 0.02, None, {"clientOrderId": "manual-cover",
                                                                         "reduceOnly": True})
    for _ in range(2):
        store = state_with_an_entry_intent(settings, "tb-e-bookedtwice", qty=0.02, side=-1)
        bot = await restart(tmp_path, clock, fake)
        await bot.shutdown()
        clock.advance(60_000)  # a later start: a key that used the clock would differ
    [trade] = read_journal(store.trades_path)
    assert trade["gross_pnl"] == pytest.approx(fake.realized_pnl()) and trade["gross_pnl"] > 0


async def test_a_missing_stop_the_price_has_passed_closes_the_position_and_books_it(tmp_path, market):
    clock, fake = market
    position = await a_stopped_bot_whose_stop_was_cancelled(tmp_path, clock, fake)
    fake.set_price(SYMBOL_ID, position.stop * (1 - 0.003 * position.side))  # beyond the stop, short of the target
    again = await restart(tmp_path, clock, fake)
    try:
        assert fake.positions[SYMBOL_ID]["amount"] == 0.0
        assert all(p.orders.get("entry") != position.orders["entry"] for p in again.parts.broker.open_positions())
        assert not again.parts.broker.halted
        [trade] = read_journal(StateStore(again.settings.state_dir()).trades_path)
        assert trade["gross_pnl"] == pytest.approx(fake.realized_pnl()) and trade["gross_pnl"] < 0
        assert open_algos(fake) == [], "the take-profit of the closed position was cancelled"
    finally:
        await again.shutdown()


async def test_a_symbol_taken_out_of_the_settings_keeps_its_position_and_its_protection(tmp_path, market):
    clock, fake = market
    bot, settings = await open_a_position(tmp_path, clock, fake)
    [position] = bot.parts.broker.open_positions()
    await bot.shutdown()
    again = Daemon(settings.with_overrides(symbols=("ETH/USDT:USDT",)), clock=clock, install_signals=False)
    await again.start()
    try:
        assert again.parts.broker.open_positions() == [position], "kept, though no bot trades BTC any more"
        assert {str(o["algoId"]) for o in open_algos(fake)} == {position.orders["stop"], position.orders["target"]}
        assert read_journal(StateStore(settings.state_dir()).trades_path) == []
    finally:
        await again.shutdown()


class LateExecution(SharedClock):
    """A restart right after an entry was sent: the order executes while reconciliation waits out
    its recvWindow (here: during the clock's first wait)."""

    def __init__(self, start_ms: int, execute) -> None:
        super().__init__(start_ms)
        self.execute = execute

    async def sleep_until(self, wake_ms, stop) -> None:
        if self.execute is not None:
            execute, self.execute = self.execute, None
            await execute()
        await super().sleep_until(wake_ms, stop)


async def test_an_entry_sent_just_before_a_restart_is_waited_for_not_dropped(tmp_path, market):
    clock, fake = market
    settings = live_settings(tmp_path, fake)
    client_id = "tb-e-inflightatrestart"

    async def the_exchange_executes_it_now():
        async with by_hand(fake) as client:
            await client.create_order(SYMBOL, "market", "buy", 0.02, None, {"clientOrderId": client_id})

    late = LateExecution(clock.now_ms(), the_exchange_executes_it_now)
    state_with_an_entry_intent(settings, client_id, qty=0.02, created_ms=late.now_ms())
    bot = Daemon(settings, clock=late, install_signals=False)
    await bot.start()
    try:
        [position] = bot.parts.broker.open_positions()
        assert position.orders["entry_client"] == client_id and position.qty == 0.02
        assert len(open_algos(fake)) == 2 and bot.parts.broker.intents == {}
    finally:
        await bot.shutdown()


async def test_a_position_held_for_weeks_books_its_exit_from_the_right_fills(tmp_path, market):
    """Binance answers fills for at most 7 days per request; the exit of a position opened 16 days
    earlier must still be found (read week by week)."""
    clock, fake = market
    bot, settings = await open_a_position(tmp_path, clock, fake)
    [position] = bot.parts.broker.open_positions()
    await bot.shutdown()
    clock.advance(16 * 86_400_000)
    fake.set_price(SYMBOL_ID, position.stop * (1 - 0.002 * position.side))  # the stop fills, weeks later
    again = await restart(tmp_path, clock, fake)
    try:
        [trade] = read_journal(StateStore(settings.state_dir()).trades_path)
        assert trade["exit_reason"] == "stop" and trade["exit_price"] != trade["entry_price"]
        assert trade["gross_pnl"] == pytest.approx(fake.realized_pnl()) and trade["gross_pnl"] < 0
        user_trades = [r for r in fake.requests if r.path == "/fapi/v1/userTrades"]
        assert len(user_trades) >= 3, "read in week-long windows"
    finally:
        await again.shutdown()


async def test_a_position_larger_on_the_exchange_than_in_the_books_halts_new_entries(tmp_path, market):
    clock, fake = market
    bot, _ = await open_a_position(tmp_path, clock, fake)
    [position] = bot.parts.broker.open_positions()
    await bot.shutdown()
    async with by_hand(fake) as client:
        await client.create_order(SYMBOL, "market", "buy" if position.side > 0 else "sell", 0.01, None,
                                  {"clientOrderId": "manual-add"})
    again = await restart(tmp_path, clock, fake)
    try:
        assert again.parts.broker.halted and f"the bot {position.qty:g}" in again.parts.broker.halted
        assert again.parts.broker.open_positions() == [position]
    finally:
        await again.shutdown()


async def test_an_adopted_position_is_booked_from_its_own_exit_not_an_earlier_trade(tmp_path, market):
    clock, fake = market
    async with by_hand(fake) as client:
        await client.create_order(SYMBOL, "market", "buy", 0.01, None, {"clientOrderId": "manual-a"})
        fake.set_price(SYMBOL_ID, fake.price(SYMBOL_ID) * 1.003)
        await client.create_order(SYMBOL, "market", "sell", 0.01, None, {"clientOrderId": "manual-b", "reduceOnly": True})
        earlier = fake.realized_pnl()
        await client.create_order(SYMBOL, "market", "buy", 0.02, None, {"clientOrderId": "manual-c"})
    clock.advance(5_000)  # the bot starts a few seconds after that earlier round trip
    bot = await restart(tmp_path, clock, fake)
    try:
        [position] = bot.parts.broker.open_positions()
        assert position.qty == 0.02
        fake.set_price(SYMBOL_ID, position.stop * 0.998)
        await fake.ws_flush()
        clock.advance(5_000)
        await bot.tick()
        [trade] = read_journal(StateStore(bot.settings.state_dir()).trades_path)
        assert trade["exit_reason"] == "stop" and trade["gross_pnl"] == pytest.approx(fake.realized_pnl() - earlier)
    finally:
        await bot.shutdown()
