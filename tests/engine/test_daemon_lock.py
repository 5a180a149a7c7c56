"""Two `trading-bot run` processes on one state folder: the second exits 2 naming the first's PID;
once the first is SIGKILLed (no clean-up of any kind), the kernel has dropped its lock and a new one starts."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest

from conftest import subprocess_env

pytestmark = pytest.mark.slow  # processes: see the `slow` marker in pyproject.toml


def start(tmp_path, env, name: str) -> subprocess.Popen:
    with (tmp_path / f"{name}.log").open("wb") as log:
        return subprocess.Popen([sys.executable, "-m", "trading_bot", "run"], cwd=tmp_path, env=env,
                                stdout=log, stderr=subprocess.STDOUT)


def wait_ready(tmp_path, proc: subprocess.Popen, name: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while "ready:" not in (tmp_path / f"{name}.log").read_text(errors="replace"):
        assert proc.poll() is None, (tmp_path / f"{name}.log").read_text()
        assert time.monotonic() < deadline, "not ready in time"
        time.sleep(0.05)


def test_a_second_daemon_on_the_same_state_exits_2_naming_the_first_and_a_sigkill_frees_the_lock(tmp_path):
    env = subprocess_env(tmp_path, HEARTBEAT_SECONDS="1", TRADING_SYMBOLS="BTC/USDT:USDT", TRADING_TIMEFRAMES="1m")
    procs = []
    try:
        first = start(tmp_path, env, "first")
        procs.append(first)
        wait_ready(tmp_path, first, "first")

        second = subprocess.run([sys.executable, "-m", "trading_bot", "run"], cwd=tmp_path, env=env,
                                capture_output=True, text=True, timeout=60)
        assert second.returncode == 2
        assert second.stderr.strip().splitlines() == [second.stderr.strip()], "one line"
        assert f"in use by another trading-bot (PID {first.pid})" in second.stderr
        assert "ready:" not in second.stdout

        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
        third = start(tmp_path, env, "third")
        procs.append(third)
        wait_ready(tmp_path, third, "third")
        assert (tmp_path / "data" / "state" / "paper" / "daemon.lock").read_text() == f"{third.pid}\n"
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)
