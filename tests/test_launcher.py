"""launcher.sh: DEMO by default, LIVE only after typing yes; reads .env without executing it."""

from __future__ import annotations

import subprocess

from conftest import PROJECT_ROOT, subprocess_env

LAUNCHER = str(PROJECT_ROOT / "launcher.sh")


def run_launcher(tmp_path, *args, stdin="", **env):
    return subprocess.run(["bash", LAUNCHER, *args], input=stdin, capture_output=True, text=True, timeout=120,
                          env=subprocess_env(tmp_path, HEARTBEAT_SECONDS="0.05", **env))


def test_demo_start_reaches_ready(tmp_path):
    result = run_launcher(tmp_path, "--cycles", "1")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Mode:       DEMO (paper trading)" in result.stdout
    assert "Symbols:    BTC/USDT:USDT,ETH/USDT:USDT,SOL/USDT:USDT" in result.stdout
    assert " ready: 21 bots" in result.stdout


def test_live_mode_needs_yes_and_no_aborts_without_starting(tmp_path):
    result = run_launcher(tmp_path, stdin="no\n", DRY_RUN="false")
    assert result.returncode == 0
    assert "Aborted" in result.stdout and "ready" not in result.stdout
    assert "Type 'yes' to start LIVE trading" in result.stdout + result.stderr
    assert not (tmp_path / "data").exists()


def test_live_mode_without_a_terminal_answer_aborts(tmp_path):
    result = run_launcher(tmp_path, stdin="", DRY_RUN="false")
    assert result.returncode == 0 and "Aborted" in result.stdout


def test_env_file_values_are_shown_but_never_executed(tmp_path):
    marker = tmp_path / "pwned"
    project_env = PROJECT_ROOT / ".env"
    assert not project_env.exists(), "tests must not clobber a developer's .env"
    project_env.write_text(f'TRADING_TIMEFRAMES="5m, 1h"  # two\nEVIL=$(touch {marker})\n`touch {marker}`\n')
    try:
        result = run_launcher(tmp_path, "check-config")
    finally:
        project_env.unlink()
    assert "Timeframes: 5m, 1h" in result.stdout, result.stdout
    assert not marker.exists()
