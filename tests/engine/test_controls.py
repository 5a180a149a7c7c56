"""Operator controls over the real control socket: `trading-bot pause|resume|flatten|reload` against
a paper daemon in-process, and a flatten of a live daemon against the fake exchange."""

from __future__ import annotations

import asyncio
import os
import signal
import stat
import subprocess
import sys

import pytest

from conftest import make_settings, subprocess_env
from fakes.clocks import JAN_1_2026_MS, SharedClock
from fakes.live_bot import open_a_position
from fakes.live_daemon import assert_state_agrees_with_the_exchange
from fakes.output_lines import OutputLines, killed
from trading_bot.cli.main import main
from trading_bot.engine.daemon import Daemon
from trading_bot.marketdata.sources import SyntheticSource
from trading_bot.ops.control import CONTROL_SOCKET, ask
from trading_bot.persistence.state_store import StateStore, decode_state, read_journal, read_status
from trading_bot.persistence.strategy_config_file import write_config

SYMBOLS = ("BTC/USDT:USDT", "ETH/USDT:USDT")


@pytest.fixture
def cli_env(tmp_path, monkeypatch):
    """The environment `trading-bot` reads, pointed at the test's folders (as make_settings is)."""
    monkeypatch.setenv("DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("STRATEGY_CONFIG", str(tmp_path / "config" / "strategy_config.json"))
    monkeypatch.setenv("MARKET_DATA", "synthetic")
    return ["--env-file", str(tmp_path / "none.env")]


async def cli(env_args, *args):
    """`trading-bot ARGS` in a thread (it blocks on the socket while the daemon answers on this loop)."""
    return await asyncio.to_thread(main, [*env_args, *args])


def paper_daemon(settings, clock):
    return Daemon(settings, clock=clock, source=SyntheticSource(settings.synthetic_seed), install_signals=False)


async def tick_until(daemon, clock, done, limit=400):
    for _ in range(limit):
        if done():
            return
        clock.advance(60_000)
        await daemon.tick()
    pytest.fail("the condition never came")


async def test_pause_flatten_resume_over_the_socket_and_the_pause_survives_a_restart(tmp_path, cli_env, capsys):
    settings = make_settings(tmp_path, symbols=SYMBOLS, timeframes=("1m",))
    write_config(settings.strategy_config, {"version": 1, "defaults": {"threshold": 0.0001, "sl_pct": 0.05,
                                                                         "rr_ratio": 3}})
    clock = SharedClock(JAN_1_2026_MS, wake_every_ms=60_000)
    daemon = paper_daemon(settings, clock)
    await daemon.start()
    await daemon.start_controls()
    sock = settings.state_dir() / CONTROL_SOCKET
    assert stat.S_IMODE(sock.stat().st_mode) == 0o600
    broker = daemon.parts.broker
    await tick_until(daemon, clock, lambda: broker.open_positions())

    assert await cli(cli_env, "pause") == 0
    assert capsys.readouterr().out.startswith("paused: no new entries")
    assert await cli(cli_env, "pause") == 0
    assert "already paused" in capsys.readouterr().out
    store = StateStore(settings.state_dir())
    assert decode_state(store.positions_path.read_bytes(), "positions.json").paused
    assert read_status(store.status_path)["paused"] is True
    assert daemon.parts.report.status_line().startswith("HALTED (paused by the operator) | ")

    assert await cli(cli_env, "flatten", "--all") == 0
    assert capsys.readouterr().out.startswith("flattened")
    assert broker.open_positions() == []
    flattened = [t for t in read_journal(store.trades_path) if t["exit_reason"] == "flatten"]
    assert flattened and broker.wallet.trades == len(read_journal(store.trades_path))
    assert (await asyncio.to_thread(ask, settings.state_dir(), {"command": "flatten", "symbols": None}))["message"] \
        == "nothing to flatten: no open position"

    # Paused: the hair-trigger strategy signals on every candle, and nothing opens.
    for _ in range(30):
        clock.advance(60_000)
        await daemon.tick()
    assert broker.open_positions() == [] and broker.pending_count() == 0
    assert await cli(cli_env, "status") == 0
    assert "trading HALTED: paused by the operator" in capsys.readouterr().out
    await daemon.shutdown()
    assert not sock.exists()

    again = paper_daemon(settings, clock)
    await again.start()
    assert again.parts.broker.paused, "the pause survived the restart"
    await again.start_controls()
    assert await cli(cli_env, "resume") == 0
    assert capsys.readouterr().out.startswith("resumed: lifted the pause; new entries allowed")
    assert await cli(cli_env, "resume") == 0
    assert "not paused or halted: nothing to resume" in capsys.readouterr().out
    assert await cli(cli_env, "reload") == 0
    assert capsys.readouterr().out.startswith("reloaded")
    await tick_until(again, clock, lambda: again.parts.broker.open_positions())
    await again.shutdown()
    assert not decode_state(store.positions_path.read_bytes(), "positions.json").paused


async def test_a_stale_socket_of_a_dead_daemon_is_replaced(tmp_path):
    settings = make_settings(tmp_path, symbols=SYMBOLS[:1], timeframes=("1m",))
    sock = settings.state_dir() / CONTROL_SOCKET
    sock.parent.mkdir(parents=True)
    sock.write_bytes(b"")  # left by a daemon that was killed
    daemon = paper_daemon(settings, SharedClock(JAN_1_2026_MS, wake_every_ms=60_000))
    await daemon.start()
    await daemon.start_controls()
    answer = await asyncio.to_thread(ask, settings.state_dir(), {"command": "pause"})
    assert answer == {"ok": True, "message": "paused: no new entries; 0 open position(s) keep their stops and targets"}
    bad = await asyncio.to_thread(ask, settings.state_dir(), {"command": "explode"})
    assert not bad["ok"] and "unknown command" in bad["message"]
    await daemon.shutdown()


def test_refused_clearly_when_no_daemon_runs(tmp_path, cli_env, capsys):
    state_dir = make_settings(tmp_path).state_dir()
    assert main([*cli_env, "pause"]) == 1
    assert capsys.readouterr().err == f"trading-bot: no trading-bot is running on {state_dir}\n"
    state_dir.mkdir(parents=True)
    (state_dir / CONTROL_SOCKET).write_bytes(b"")  # a dead daemon's left-over socket file
    assert main([*cli_env, "flatten", "BTC/USDT:USDT"]) == 1
    assert "no trading-bot is running" in capsys.readouterr().err


def test_flatten_needs_symbols_or_all(cli_env, capsys):
    assert main([*cli_env, "flatten"]) == 2
    assert main([*cli_env, "flatten", "BTC/USDT:USDT", "--all"]) == 2
    assert main([*cli_env, "flatten", "BTCUSDT"]) == 2
    assert capsys.readouterr().err.count("trading-bot: error: flatten:") == 3


async def test_live_flatten_closes_at_market_cancels_our_orders_and_journals_the_exit(tmp_path, market, cli_env, capsys):
    clock, fake = market
    daemon, settings = await open_a_position(tmp_path, clock, fake)
    try:
        assert daemon.parts.broker.open_positions()
        assert any(a["algoStatus"] == "NEW" for a in fake.algo_orders.values())
        await daemon.start_controls()
        assert await cli(cli_env, "flatten", "--mode", "live", "BTC/USDT:USDT") == 0
        assert capsys.readouterr().out.startswith("flattened 1 position(s): BTC/USDT:USDT 1m")
        assert daemon.parts.broker.open_positions() == []
        store = StateStore(settings.state_dir())
        assert assert_state_agrees_with_the_exchange(fake, store) == 1  # flat, no orders of ours, no dup ids
        assert not any(pos["amount"] for pos in fake.positions.values())
        assert [t["exit_reason"] for t in read_journal(store.trades_path)] == ["flatten"]
        assert await cli(cli_env, "flatten", "--mode", "live", "--all") == 0
        assert "nothing to flatten" in capsys.readouterr().out
        daemon.parts.broker.halted = "a stop was refused"  # as reconciliation sets it
        assert await cli(cli_env, "pause", "--mode", "live") == 0
        assert await cli(cli_env, "resume", "--mode", "live") == 0
        assert capsys.readouterr().out.splitlines()[-1] == (
            "resumed: lifted the pause; but new entries stay refused: trading is halted (reconciliation: a stop was "
            "refused)")
    finally:
        await daemon.shutdown()


@pytest.mark.slow
def test_a_daemon_in_another_process_answers_and_logs_who_asked(tmp_path):
    env = subprocess_env(tmp_path, HEARTBEAT_SECONDS="0.2", TRADING_SYMBOLS="BTC/USDT:USDT", TRADING_TIMEFRAMES="1m")
    proc = subprocess.Popen([sys.executable, "-m", "trading_bot", "run"], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    output = OutputLines(proc)
    try:
        seen = output.wait_for("heartbeat 1:", timeout=60)
        asked = subprocess.run([sys.executable, "-m", "trading_bot", "pause"], cwd=tmp_path, env=env,
                               capture_output=True, text=True, timeout=60)
        assert asked.returncode == 0 and asked.stdout.startswith("paused: no new entries"), asked
        output.wait_for("state=halted (paused by the operator)", timeout=30, after=seen)  # the next heartbeat line
        proc.send_signal(signal.SIGTERM)
        assert output.finish(timeout=30) == 0
    finally:
        killed(proc)
    assert f"control: pause asked by uid {os.getuid()}" in output.text()
    assert not (tmp_path / "data" / "state" / "paper" / CONTROL_SOCKET).exists()
