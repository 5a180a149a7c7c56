"""launcher.sh: DEMO by default, LIVE only after typing yes; reads .env without executing it.

launcher.sh works in its own directory (it reads .env there and runs .venv/bin/python), so each test
runs it from a copy of the few files it uses: a test can give the copy its own .env, and a
developer's .env in the checkout is neither read nor overwritten."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import PROJECT_ROOT, subprocess_env

pytestmark = pytest.mark.slow  # processes: see the `slow` marker in pyproject.toml

LAUNCHER_FILES = ("launcher.sh", "requirements.txt", "pyproject.toml", "scripts/ensure-venv.sh")


@pytest.fixture
def project(tmp_path) -> Path:
    """A copy of the launcher's files that shares the checkout's .venv (a symlink). The checkout's
    venv is brought up to date first, from the checkout: the copy's files are the same bytes, so
    its ensure-venv.sh finds the install stamps current and never installs from the copy."""
    subprocess.run(["bash", "scripts/ensure-venv.sh", "requirements.txt"], cwd=PROJECT_ROOT, check=True,
                   capture_output=True, timeout=600)
    root = tmp_path / "project"
    (root / "scripts").mkdir(parents=True)
    for name in LAUNCHER_FILES:
        shutil.copy2(PROJECT_ROOT / name, root / name)
    (root / ".venv").symlink_to(PROJECT_ROOT / ".venv", target_is_directory=True)
    return root


def run_launcher(project: Path, tmp_path: Path, *args: str, stdin: str = "", **env: str) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(["bash", str(project / "launcher.sh"), *args], input=stdin, capture_output=True, text=True,
                            timeout=120, env=subprocess_env(tmp_path, HEARTBEAT_SECONDS="0.05", **env))
    assert "installing" not in result.stdout, "the copy must reuse the checkout's venv, not install into it"
    return result


def test_demo_start_reaches_ready(project, tmp_path):
    result = run_launcher(project, tmp_path, "--cycles", "1")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Mode:       DEMO (paper trading)" in result.stdout
    assert "Symbols:    BTC/USDT:USDT,ETH/USDT:USDT,SOL/USDT:USDT" in result.stdout
    assert " ready: 21 bots" in result.stdout


def test_live_mode_needs_yes_and_no_aborts_without_starting(project, tmp_path):
    result = run_launcher(project, tmp_path, stdin="no\n", DRY_RUN="false")
    assert result.returncode == 0
    assert "Aborted" in result.stdout and "ready" not in result.stdout
    assert "Type 'yes' to start LIVE trading" in result.stdout + result.stderr
    assert not (tmp_path / "data").exists()


def test_live_mode_without_a_terminal_answer_aborts(project, tmp_path):
    result = run_launcher(project, tmp_path, stdin="", DRY_RUN="false")
    assert result.returncode == 0 and "Aborted" in result.stdout


def test_env_file_values_are_shown_but_never_executed(project, tmp_path):
    marker = tmp_path / "pwned"
    (project / ".env").write_text(f'TRADING_TIMEFRAMES="5m, 1h"  # two\nEVIL=$(touch {marker})\n`touch {marker}`\n')
    result = run_launcher(project, tmp_path, "check-config")
    assert "Timeframes: 5m, 1h" in result.stdout, result.stdout
    assert not marker.exists()
