"""launcher.sh in a real tmux session, driven with send-keys and read with capture-pane."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import uuid

import pytest

from conftest import PROJECT_ROOT, subprocess_env

pytestmark = pytest.mark.slow  # processes: see the `slow` marker in pyproject.toml


class Tmux:
    def __init__(self, env: dict[str, str]) -> None:
        self.socket = f"tb-test-{uuid.uuid4().hex[:8]}"
        self.env = {k: v for k, v in env.items() if k not in ("TMUX", "TMUX_PANE")}
        assert shutil.which("tmux"), "tmux is missing: scripts/ensure-system-tools.sh installs it"

    def __call__(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["tmux", "-L", self.socket, "-f", "/dev/null", *args], env=self.env, cwd=PROJECT_ROOT,
                              capture_output=True, text=True, check=check, timeout=30)

    def screen(self) -> str:
        return self("capture-pane", "-p", "-J", "-S", "-200", "-t", "trading", check=False).stdout

    def alive(self) -> bool:
        return self("has-session", "-t", "trading", check=False).returncode == 0

    def wait_for(self, text: str, timeout: float = 60) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            screen = self.screen()
            if text in screen:
                return screen
            time.sleep(0.1)
        raise AssertionError(f"{text!r} never appeared:\n{self.screen()}")

    def kill(self) -> None:
        self("kill-server", check=False)


@pytest.fixture
def tmux_env(tmp_path):
    return subprocess_env(tmp_path, HEARTBEAT_SECONDS="0.5", LOG_FILE=str(tmp_path / "bot.log"))


def test_readme_tmux_command_reaches_ready_and_ctrl_c_stops_cleanly(tmp_path, tmux_env):
    tmux = Tmux(tmux_env)
    try:
        tmux("new-session", "-d", "-s", "trading", "-x", "200", "-y", "50", "./launcher.sh")
        tmux.wait_for(" ready: 21 bots")
        tmux.wait_for("heartbeat 2:")
        tmux("send-keys", "-t", "trading", "C-c")
        deadline = time.monotonic() + 10
        while tmux.alive() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not tmux.alive(), "the bot did not stop on Ctrl-C:\n" + tmux.screen()
    finally:
        tmux.kill()
    log = (tmp_path / "bot.log").read_text()
    assert "SIGINT received" in log and "stopped:" in log and "Traceback" not in log
    status = json.loads((tmp_path / "data" / "state" / "paper" / "status.json").read_text())
    assert status["mode"] == "paper" and status["heartbeat"] >= 2


def test_live_prompt_answered_no_starts_nothing(tmp_path, tmux_env):
    tmux = Tmux({**tmux_env, "DRY_RUN": "false"})
    try:
        tmux("new-session", "-d", "-s", "trading", "-x", "200", "-y", "50",
             "./launcher.sh; echo \"launcher exit=$?\"; sleep 30")
        tmux.wait_for("Type 'yes' to start LIVE trading:")
        tmux("send-keys", "-t", "trading", "no", "Enter")
        screen = tmux.wait_for("launcher exit=")
    finally:
        tmux.kill()
    assert "Aborted" in screen and "launcher exit=0" in screen
    assert "ready" not in screen and not (tmp_path / "data").exists()
