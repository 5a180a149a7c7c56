"""SIGTERM while a live order is on its way: the daemon still exits 0 within 5 s, and what it leaves
on disk agrees with the exchange (or, if the order outlasted the grace period, records the intent
so the next start resolves it)."""

from __future__ import annotations

import asyncio
import signal
import time

import pytest

from fakes.live_bot import live_settings
from fakes.live_daemon import DaemonProcess, assert_state_agrees_with_the_exchange, live_store, start_fast_market
from trading_bot.engine.daemon import Daemon
from trading_bot.execution.live.protection import Protection
from trading_bot.persistence.state_store import StateStore, decode_state

ENTRY = ("POST", "/fapi/v1/order")


async def sigterm_during_the_first_entry(daemon: DaemonProcess, fake, order_delay: float) -> float:
    """Start the daemon, hold its first entry order `order_delay` s at the exchange, SIGTERM it while
    the order is there, and return the seconds from SIGTERM to exit."""
    fake.inject("timeout", ENTRY[1], method=ENTRY[0], delay=order_delay)  # executed after the delay
    daemon.start()
    await daemon.ready()
    deadline = time.monotonic() + 20
    while ENTRY not in fake.arrivals:
        assert time.monotonic() < deadline, daemon.log()[-3000:]
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.2)
    sent = time.monotonic()
    daemon.kill(signal.SIGTERM)
    await daemon.reap(expect=0)
    return time.monotonic() - sent


@pytest.mark.slow
async def test_sigterm_mid_order_lets_the_order_finish_protects_it_and_exits_zero(tmp_path):
    fake, clock = await start_fast_market(tmp_path)
    daemon = DaemonProcess(tmp_path, fake, clock)
    try:
        took = await sigterm_during_the_first_entry(daemon, fake, order_delay=1.0)
        assert took < 5.0
        assert "SIGTERM received" in daemon.log()
        store = live_store(tmp_path)
        assert_state_agrees_with_the_exchange(fake, store)
        entries = {o["clientOrderId"] for o in fake.orders.values() if o["type"] == "MARKET"}
        saved = decode_state(store.positions_path.read_bytes(), "positions.json")
        held = {b.position.orders["entry_client"] for b in saved.books.values() if b.position}
        assert entries and entries == held, "every entry executed, the one SIGTERM caught included, is in the state"
    finally:
        daemon.kill_and_wait()
        await fake.stop()


@pytest.mark.slow
async def test_sigterm_with_an_order_outlasting_the_grace_period_exits_in_time_and_the_restart_resolves_it(tmp_path):
    # 10× (not 30×): the exchange refuses a request older than recvWindow (60 s of exchange time),
    # and this order must still execute after 5 s of wall time.
    fake, clock = await start_fast_market(tmp_path, speed=10)
    daemon = DaemonProcess(tmp_path, fake, clock)
    try:
        took = await sigterm_during_the_first_entry(daemon, fake, order_delay=5.0)
        assert took < 5.0
        store = live_store(tmp_path)
        saved = decode_state(store.positions_path.read_bytes(), "positions.json")
        [(client_id, intent)] = saved.intents.items()
        assert intent.kind == "entry"
        deadline = time.monotonic() + 10
        while not any(o["clientOrderId"] == client_id for o in fake.orders.values()):
            assert time.monotonic() < deadline, "the exchange executes it after all"
            await asyncio.sleep(0.05)
        fake.refuse_entries = True
        daemon.start()
        await daemon.ready()
        assert "its entry had filled: position taken over" in daemon.log()
        assert_state_agrees_with_the_exchange(fake, store)
        saved = decode_state(store.positions_path.read_bytes(), "positions.json")
        assert client_id in {b.position.orders["entry_client"] for b in saved.books.values() if b.position}
        daemon.kill(signal.SIGTERM)
        await daemon.reap(expect=0)
    finally:
        daemon.kill_and_wait()
        await fake.stop()


async def test_a_tick_cut_short_between_entry_and_stop_leaves_no_bare_position(tmp_path, market, monkeypatch):
    """The grace period ends while the stop is on its way: before exiting, the bot places the stop
    and target the position lacks (within the 5 s)."""
    monkeypatch.setattr("trading_bot.engine.daemon.SHUTDOWN_GRACE_S", 0.3)
    clock, fake = market
    settings = live_settings(tmp_path, fake)
    original = Protection.place
    hung = asyncio.Event()

    async def place(self, position, kind):
        if not hung.is_set():
            hung.set()
            await asyncio.sleep(3600)  # the first stop never gets an answer
        return await original(self, position, kind)

    monkeypatch.setattr(Protection, "place", place)
    bot = Daemon(settings, clock=clock, install_signals=False)
    run = asyncio.create_task(bot.run())
    await asyncio.wait_for(hung.wait(), 30)
    sent = time.monotonic()
    bot.request_stop("SIGTERM")
    await asyncio.wait_for(run, 5)
    assert time.monotonic() - sent < 5.0
    [position] = [b.position for b in decode_state(StateStore(settings.state_dir()).positions_path.read_bytes(),
                                                   "positions.json").books.values() if b.position]
    open_algos = {str(a["algoId"]): a["orderType"] for a in fake.algo_orders.values() if a["algoStatus"] == "NEW"}
    assert open_algos == {position.orders["stop"]: "STOP_MARKET", position.orders["target"]: "TAKE_PROFIT_MARKET"}
