"""Paper mode on the synthetic market: the live loop with a fast clock, restarts, and signals."""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import subprocess
import sys
import time

import pytest

from conftest import make_settings, subprocess_env
from fakes.clocks import JAN_1_2026_MS, SharedClock
from fakes.crashed_writer import dead_writers_temp
from fakes.output_lines import OutputLines, killed
from trading_bot.domain.timeframes import last_closed_open_ms
from trading_bot.engine.daemon import Daemon
from trading_bot.marketdata.sources import FetchResult, SyntheticSource
from trading_bot.persistence.state_store import StateStore, decode_state, read_journal
from trading_bot.persistence.strategy_config_file import write_config

START_MS = JAN_1_2026_MS


def minute_clock(start_ms: int) -> SharedClock:
    """Wall-clock semantics (heartbeats, not candle jumps), one simulated minute per tick."""
    return SharedClock(start_ms, wake_every_ms=60_000)


def paper_settings(tmp_path):
    settings = make_settings(tmp_path, symbols=("BTC/USDT:USDT", "ETH/USDT:USDT"), timeframes=("1m", "5m"))
    write_config(settings.strategy_config, {"version": 1, "defaults": {"sl_pct": 0.004, "rr_ratio": 1.5}})
    return settings


async def test_paper_run_trades_and_a_restart_picks_up_the_same_positions(tmp_path):
    settings = paper_settings(tmp_path)
    clock = minute_clock(START_MS)
    daemon = Daemon(settings, cycles=400, clock=clock, source=SyntheticSource(settings.synthetic_seed), install_signals=False)
    await daemon.run()
    store = StateStore(settings.state_dir())
    journal = read_journal(store.trades_path)
    assert journal, "paper trades should open and close"
    held = sorted((p.symbol, p.timeframe, p.entry_ts) for p in daemon.parts.broker.open_positions())
    saved = decode_state(store.positions_path.read_bytes(), "positions.json")
    assert sorted((b.position.symbol, b.position.timeframe, b.position.entry_ts)
                  for b in saved.books.values() if b.position) == held
    # The synthetic candles went to their own cache, never into the real-exchange cache.
    assert (settings.synthetic_dir / "BTC_USDT_USDT_1m.csv").exists()
    assert not settings.candles_dir.exists()

    # Restart 30 simulated minutes later: the same positions come back, and the candles that
    # closed meanwhile are checked for their exits before anything else.
    clock2 = minute_clock(clock.now_ms() + 30 * 60_000)
    again = Daemon(settings, cycles=1, clock=clock2, source=SyntheticSource(settings.synthetic_seed), install_signals=False)
    await again.start()
    resumed = {(p.symbol, p.timeframe, p.entry_ts) for p in again.parts.broker.open_positions()}
    closed_meanwhile = {(t["symbol"], t["timeframe"], t["entry_ts"]) for t in read_journal(store.trades_path)[len(journal):]}
    assert resumed | closed_meanwhile >= set(held)
    assert again.parts.broker.wallet.trades == len(read_journal(store.trades_path))
    await again.shutdown()


async def test_a_start_removes_the_temp_files_that_killed_writes_left_and_keeps_the_books(tmp_path, caplog):
    caplog.set_level(logging.INFO)
    settings = paper_settings(tmp_path)
    first = Daemon(settings, cycles=3, clock=minute_clock(START_MS), source=SyntheticSource(settings.synthetic_seed),
                   install_signals=False)
    await first.run()
    store = StateStore(settings.state_dir())
    books = store.positions_path.read_bytes()
    orphan = dead_writers_temp(store.positions_path)  # a save killed between its write and its rename
    again = Daemon(settings, cycles=1, clock=minute_clock(START_MS + 3 * 60_000),
                   source=SyntheticSource(settings.synthetic_seed), install_signals=False)
    await again.start()
    try:
        assert not orphan.exists() and "removed the temp file of a write a crash interrupted" in caplog.text
        assert decode_state(books, "positions.json").wallet == again.parts.broker.wallet  # the books, not the temp
    finally:
        await again.shutdown()


@pytest.mark.slow
def test_sigterm_finishes_the_tick_saves_state_and_exits_zero(tmp_path):
    env = subprocess_env(tmp_path, HEARTBEAT_SECONDS="0.2", TRADING_SYMBOLS="BTC/USDT:USDT",
                         TRADING_TIMEFRAMES="1m,5m")
    proc = subprocess.Popen([sys.executable, "-m", "trading_bot", "run"], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    output = OutputLines(proc)
    try:
        output.wait_for("heartbeat 2:", timeout=30)
        sent = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        code = output.finish(timeout=10)
        elapsed = time.monotonic() - sent
    finally:
        killed(proc)
    out = output.text()
    assert code == 0, out
    assert elapsed < 5
    assert "SIGTERM received" in out and "stopped:" in out
    assert "Traceback" not in out
    state = tmp_path / "data" / "state" / "paper"
    decode_state((state / "positions.json").read_bytes(), "positions.json")
    status = json.loads((state / "status.json").read_text())
    assert status["data_source"] == "synthetic" and status["bots"] == 2
    assert not list(state.glob(".*.tmp")), "no temp file left behind"


@pytest.mark.slow
def test_ready_line_and_status_command(tmp_path):
    env = subprocess_env(tmp_path, HEARTBEAT_SECONDS="0.05")
    run = subprocess.run([sys.executable, "-m", "trading_bot", "run", "--cycles", "2"], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "ready: 21 bots (3 symbols × 7 timeframes)" in run.stdout
    assert run.stdout.count("heartbeat ") == 2
    status = subprocess.run([sys.executable, "-m", "trading_bot", "status"], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=30)
    assert status.returncode == 0, status.stderr
    assert "SYNTHETIC" in status.stdout and "last heartbeat #2" in status.stdout
    as_json = subprocess.run([sys.executable, "-m", "trading_bot", "status", "--json"], cwd=tmp_path, env=env,
                             capture_output=True, text=True, timeout=30)
    doc = json.loads(as_json.stdout)
    assert doc["last_heartbeat"]["bots"] == 21 and doc["equity"] == pytest.approx(10_000.0)


async def a_daemon_stuck_after_tick(settings, number: int):
    """A paper daemon running whose tick `number` never returns (an order call that never comes back)."""
    import asyncio

    daemon = Daemon(settings, clock=minute_clock(START_MS), source=SyntheticSource(settings.synthetic_seed),
                    install_signals=False)
    original_tick = daemon.tick

    async def tick() -> None:
        await original_tick()
        if daemon.figures.number == number:
            await asyncio.sleep(3600)

    daemon.tick = tick  # type: ignore[method-assign]
    task = asyncio.create_task(daemon.run())
    deadline = time.monotonic() + 30
    while daemon.figures.number < number:
        assert time.monotonic() < deadline and not task.done(), f"{daemon.figures.number} heartbeats in 30 s"
        await asyncio.sleep(0.01)
    return daemon, task


async def test_a_stuck_tick_is_cut_short_on_stop_and_state_is_saved(tmp_path, monkeypatch):
    import asyncio

    monkeypatch.setattr("trading_bot.engine.daemon.SHUTDOWN_GRACE_S", 0.5)
    settings = paper_settings(tmp_path)
    daemon, task = await a_daemon_stuck_after_tick(settings, 3)
    started = time.monotonic()
    daemon.request_stop("SIGTERM")
    await asyncio.wait_for(task, 5)
    assert 0.4 < time.monotonic() - started < 2.0  # the grace period, then out
    decode_state(StateStore(settings.state_dir()).positions_path.read_bytes(), "positions.json")


async def test_a_second_signal_exits_at_once(tmp_path):
    import asyncio

    settings = paper_settings(tmp_path)
    daemon, task = await a_daemon_stuck_after_tick(settings, 2)
    started = time.monotonic()
    daemon.request_stop("SIGINT")
    daemon.request_stop("SIGINT")
    await asyncio.wait_for(task, 5)
    assert time.monotonic() - started < 0.5
    decode_state(StateStore(settings.state_dir()).positions_path.read_bytes(), "positions.json")


class StalledSource(SyntheticSource):
    """A market whose newest closed candle is never published (the exchange late, a symbol in
    maintenance): every fetch succeeds without it."""

    def __init__(self, seed: int) -> None:
        super().__init__(seed)
        self.fetches = 0
        self.withheld_from = last_closed_open_ms(int(time.time() * 1000), 60_000)

    async def fetch(self, symbol, timeframe, tf_ms, since_ms, now_ms, limit, last_close):
        self.fetches += 1
        result = await super().fetch(symbol, timeframe, tf_ms, since_ms, now_ms, limit, last_close)
        return FetchResult(result.closed[result.closed[:, 0] < self.withheld_from])


async def test_the_live_loop_backs_off_while_a_due_candle_does_not_come(tmp_path, caplog):
    settings = make_settings(tmp_path, symbols=("BTC/USDT:USDT",), timeframes=("1m",), heartbeat_seconds=5.0)
    source = StalledSource(settings.synthetic_seed)
    daemon = Daemon(settings, source=source, install_signals=False)
    caplog.set_level("INFO")
    task = asyncio.ensure_future(daemon.run())
    await asyncio.sleep(1.5)
    daemon.stop_event.set()
    await asyncio.wait_for(task, 10)
    # 1.5 s of waiting with a 5 s heartbeat: the start, then 0.2 s, 0.5 s, 1 s apart (plus the
    # grace after a close); the old loop polled as fast as the source answered.
    assert daemon.figures.number <= 5 and source.fetches <= 6
    assert caplog.text.count("not published yet") == 1


async def test_a_stop_asked_for_during_startup_reaches_the_broker_before_ready(tmp_path):
    """SIGTERM while the parts are still being built: the broker is told before the ready catch-up,
    so nothing opens between the signal and the exit (the trading state says why)."""
    settings = paper_settings(tmp_path)
    write_config(settings.strategy_config, {"version": 1, "defaults": {"threshold": 0.0001, "sl_pct": 0.004}})
    clock = minute_clock(START_MS)
    daemon = Daemon(settings, clock=clock, source=SyntheticSource(settings.synthetic_seed), install_signals=False)
    daemon.request_stop("SIGTERM")
    await daemon.start()
    try:
        broker = daemon.parts.broker
        assert broker.stopping and broker.trading_state().describe() == "reducing (shutting down)"
        clock.advance(60_000)
        await daemon.tick()  # a hair-trigger signal on every bot's new candle
        assert broker.open_positions() == [] and broker.pending_count() == 0
    finally:
        await daemon.shutdown()
