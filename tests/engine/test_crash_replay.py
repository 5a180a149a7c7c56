"""Crash test: SIGKILL the daemon at random moments and restart it, many times. Nothing may be lost
or duplicated: after all the kills the journal is exactly the uninterrupted backtest's trades.

CRASH_ITERATIONS sets how many kills (default: a seeded sample of 8 for CI; the full run is 50)."""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import time

import pytest

from conftest import subprocess_env, write_synthetic_cache
from fakes.replay import SYMBOL, TF, portfolio_result, replay_settings
from trading_bot.persistence.state_store import StateStore, decode_state, read_journal

pytestmark = pytest.mark.slow  # processes: see the `slow` marker in pyproject.toml

ITERATIONS = int(os.environ.get("CRASH_ITERATIONS", "8"))


def test_sigkill_at_random_moments_loses_and_duplicates_nothing(tmp_path):
    settings = replay_settings(tmp_path, funding="auto")  # 41 hours: funding is booked while positions are open
    candles = write_synthetic_cache(settings.candles_dir, "BTC/USDT:USDT", "1m", 2500)
    env = subprocess_env(tmp_path, TRADING_SYMBOLS="BTC/USDT:USDT", TRADING_TIMEFRAMES="1m", HISTORY_CANDLES="5000",
                         DATA_DIR=str(settings.data_dir), STRATEGY_CONFIG=str(settings.strategy_config))
    store = StateStore(settings.state_dir(replay=True))
    expected = [t.to_json() for t in portfolio_result(settings, {(SYMBOL, TF): candles}).trades]
    assert any(t["funding"] for t in expected), "the replay books funding on some trades"
    rng = random.Random(20261124)
    kills = rounds = 0
    deadline = time.monotonic() + 600
    while kills < ITERATIONS and time.monotonic() < deadline:  # rounds: a replay from scratch to its end
        shutil.rmtree(store.directory, ignore_errors=True)
        rounds += 1
        finished = False
        while not finished:
            proc = subprocess.Popen([sys.executable, "-m", "trading_bot", "run", "--replay"], cwd=tmp_path, env=env,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            if kills < ITERATIONS:
                time.sleep(rng.uniform(0.2, 1.2))  # during startup, mid-tick, mid-write: anywhere
                if proc.poll() is None:
                    proc.send_signal(signal.SIGKILL)
                    kills += 1
            _, errors = proc.communicate(timeout=60)
            finished = proc.returncode == 0
            assert finished or proc.returncode == -signal.SIGKILL, errors.decode()
            if store.positions_path.exists():  # after every stop the state is readable and consistent
                saved = decode_state(store.positions_path.read_bytes(), "positions.json")
                journal = read_journal(store.trades_path)
                assert saved.wallet.trades <= len(journal) <= saved.wallet.trades + 1
        journal = read_journal(store.trades_path)
        assert journal == expected, f"round {rounds}"  # nothing lost, nothing twice, the same numbers
        saved = decode_state(store.positions_path.read_bytes(), "positions.json")
        assert saved.wallet.trades == len(journal)
    assert kills == ITERATIONS
