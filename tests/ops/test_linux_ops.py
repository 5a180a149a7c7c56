"""scripts/ under the real programs that read them: systemd-analyze, logrotate, shellcheck."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from conftest import PROJECT_ROOT, subprocess_env

SCRIPTS = PROJECT_ROOT / "scripts"
SANDBOX_KEYS = ("NoNewPrivileges", "ProtectSystem", "ProtectHome", "PrivateTmp", "PrivateDevices", "PrivateUsers",
                "ProtectKernelTunables", "ProtectKernelModules", "ProtectKernelLogs", "ProtectControlGroups",
                "RestrictAddressFamilies", "RestrictNamespaces", "SystemCallFilter", "CapabilityBoundingSet",
                "MemoryMax", "CPUWeight", "CPUQuota", "CPUAffinity", "LimitNOFILE", "WatchdogSec", "Type",
                "NotifyAccess", "Restart", "RestartSec", "TimeoutStopSec", "ExecReload", "ExecStart",
                "MemoryDenyWriteExecute", "ReadWritePaths")


def tool(name: str) -> str:
    path = shutil.which(name) or (f"/usr/sbin/{name}" if os.path.exists(f"/usr/sbin/{name}") else None)
    assert path, f"{name} is missing: scripts/ensure-system-tools.sh installs it"
    return path


def shell_scripts() -> list[Path]:
    listing = ["git", "ls-files", "--cached", "--others", "--exclude-standard"]
    tracked = subprocess.run(listing, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=60).stdout.split()
    found = []
    for name in tracked:
        path = PROJECT_ROOT / name
        if path.suffix == ".sh" or (path.is_file() and path.read_bytes()[:40].startswith(b"#!/usr/bin/env bash")):
            found.append(path)
    return found


@pytest.mark.slow
def test_shellcheck_is_clean_for_every_shell_script():
    scripts = shell_scripts()
    names = {p.name for p in scripts}
    assert {"launcher.sh", "linux-optimize.sh", "install-service.sh", "run"} <= names
    result = subprocess.run([tool("shellcheck"), "--severity=style", *map(str, scripts)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.fixture(scope="module")
def rendered(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("rendered")
    user = subprocess.run(["id", "-un"], capture_output=True, text=True, timeout=60).stdout.strip()
    subprocess.run(["bash", str(SCRIPTS / "install-service.sh"), "--render-to", str(out), "--user", user], check=True,
                   capture_output=True, timeout=60)
    return out


@pytest.mark.slow
def test_rendered_units_pass_systemd_analyze_verify(rendered):
    (rendered / "trading-bot@alpha.service").symlink_to(rendered / "trading-bot@.service")
    for unit in ("trading-bot.service", "trading-bot@alpha.service"):
        text = (rendered / unit).read_text()
        assert "@INSTALL_DIR@" not in text and "@USER@" not in text
        result = subprocess.run([tool("systemd-analyze"), "verify", str(rendered / unit)],
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 0 and not result.stderr.strip(), result.stderr


@pytest.mark.slow
def test_verify_does_catch_a_broken_unit(rendered, tmp_path):
    broken = tmp_path / "trading-bot.service"
    broken.write_text((rendered / "trading-bot.service").read_text().replace("Type=notify", "Type=notifyy"))
    result = subprocess.run([tool("systemd-analyze"), "verify", str(broken)], capture_output=True, text=True, timeout=60)
    assert result.returncode != 0 or "notifyy" in result.stderr


@pytest.mark.slow
def test_security_exposure_is_ok(rendered):
    result = subprocess.run([tool("systemd-analyze"), "security", "--offline=yes", str(rendered / "trading-bot.service")],
                            capture_output=True, text=True, timeout=60)
    match = re.search(r"Overall exposure level for trading-bot.service: ([\d.]+) (\w+)", result.stdout)
    assert match, result.stdout[-2000:] + result.stderr
    assert float(match.group(1)) <= 3.0 and match.group(2) == "OK", match.group(0)


def _directives(text: str) -> dict[str, list[str]]:
    section = text.split("[Service]", 1)[1].split("[Install]", 1)[0]
    out: dict[str, list[str]] = {}
    for line in section.splitlines():
        if "=" in line and not line.startswith("#"):
            key, _, value = line.partition("=")
            out.setdefault(key, []).append(value)
    return out


def test_unit_has_the_operational_settings_and_the_template_keeps_in_step():
    main = _directives((SCRIPTS / "trading-bot.service").read_text())
    template = _directives((SCRIPTS / "trading-bot@.service").read_text())
    assert main["Type"] == ["notify"] and main["NotifyAccess"] == ["main"]
    assert main["ExecReload"] == ["/bin/kill -HUP $MAINPID"] and main["Restart"] == ["always"]
    assert int(main["WatchdogSec"][0]) >= 3 * 5  # ≥ 3 × the default heartbeat
    assert "MemoryLimit" not in main and "CPUShares" not in main  # deprecated
    assert main["MemoryMax"] == ["512M"] and main["CPUQuota"] == ["80%"] and main["LimitNOFILE"] == ["65536"]
    for key in SANDBOX_KEYS:
        assert template.get(key) == main.get(key), key
    assert template["EnvironmentFile"] == ["@INSTALL_DIR@/instances/%i.env"]


def run_as_nobody(script: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run a script as an unprivileged user (from a copy nobody may read: checkouts are often 0700)."""
    if os.geteuid() != 0:
        return subprocess.run(["bash", str(script), *args], capture_output=True, text=True, timeout=60)
    with tempfile.TemporaryDirectory() as tmp:
        os.chmod(tmp, 0o755)
        copy = Path(tmp) / script.name
        shutil.copy(script, copy)
        os.chmod(copy, 0o755)
        return subprocess.run(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "bash", str(copy), *args],
                              capture_output=True, text=True, cwd=tmp, timeout=60)


@pytest.mark.slow
def test_install_service_refuses_without_root_and_dry_run_shows_the_plan():
    refused = run_as_nobody(SCRIPTS / "install-service.sh", "--user", "root")
    assert refused.returncode == 1 and "needs root" in refused.stderr
    plan = subprocess.run(["bash", str(SCRIPTS / "install-service.sh"), "--dry-run", "--user", "root"],
                          capture_output=True, text=True, timeout=60)
    assert plan.returncode == 0, plan.stderr
    assert "would write /etc/systemd/system/trading-bot.service" in plan.stdout
    assert "would write /etc/logrotate.d/trading-bot" in plan.stdout
    assert "would run: systemctl daemon-reload" in plan.stdout and "would run: systemctl enable" in plan.stdout
    assert f"ExecStart={PROJECT_ROOT}/.venv/bin/python -m trading_bot run" in plan.stdout
    unknown = subprocess.run(["bash", str(SCRIPTS / "install-service.sh"), "--dry-run", "--user", "no-such-user-x"],
                             capture_output=True, text=True, timeout=60)
    assert unknown.returncode == 2 and "does not exist" in unknown.stderr


# --- linux-optimize.sh ---------------------------------------------------------------------------

OPTIMIZE = str(SCRIPTS / "linux-optimize.sh")
WANTED = {"net.core.rmem_max": "134217728", "net.core.wmem_max": "134217728",
          "net.ipv4.tcp_rmem": "4096 87380 134217728", "net.ipv4.tcp_wmem": "4096 65536 134217728",
          "net.ipv4.tcp_keepalive_time": "60", "net.ipv4.tcp_keepalive_intvl": "10", "net.core.somaxconn": "65535",
          "net.ipv4.tcp_max_syn_backlog": "65535", "vm.overcommit_memory": "1"}


@pytest.mark.slow
def test_optimize_dry_run_prints_the_plan_and_changes_nothing():
    result = subprocess.run(["bash", OPTIMIZE, "--dry-run"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "would write /etc/sysctl.d/99-trading-bot.conf" in result.stdout
    assert "would run: sysctl --system" in result.stdout
    for key, value in WANTED.items():
        assert f"{key} = {value}" in result.stdout
    assert "soft nofile 65536" in result.stdout


@pytest.mark.slow
def test_optimize_check_reports_current_against_wanted():
    result = subprocess.run(["bash", OPTIMIZE, "--check"], capture_output=True, text=True, timeout=60)
    rows = {line.split()[0]: line for line in result.stdout.splitlines() if line.split()}
    for key in WANTED:
        assert key in rows
        current = " ".join(Path(f"/proc/sys/{key.replace('.', '/')}").read_text().split())
        assert (current == WANTED[key]) == rows[key].rstrip().endswith(" ok"), rows[key]
    differs = any(line.rstrip().endswith("DIFFERS") for line in result.stdout.splitlines())
    assert result.returncode == (1 if differs else 0)


@pytest.mark.slow
def test_optimize_writes_the_files_under_a_root_and_is_idempotent(tmp_path):
    first = subprocess.run(["bash", OPTIMIZE, "--root", str(tmp_path), "--user", "trading"],
                           capture_output=True, text=True, timeout=60)
    assert first.returncode == 0, first.stderr
    assert "2 file(s) changed" in first.stdout
    sysctl_conf = (tmp_path / "etc/sysctl.d/99-trading-bot.conf").read_text()
    values = dict(line.split(" = ", 1) for line in sysctl_conf.splitlines() if " = " in line)
    assert values == WANTED
    limits = (tmp_path / "etc/security/limits.d/99-trading-bot.conf").read_text()
    assert re.search(r"^trading\s+soft nofile 65536$", limits, re.M) and re.search(r"^trading\s+hard nofile 65536$", limits, re.M)
    stamp = [(p, p.stat().st_mtime_ns) for p in tmp_path.rglob("*.conf")]
    second = subprocess.run(["bash", OPTIMIZE, "--root", str(tmp_path), "--user", "trading"],
                            capture_output=True, text=True, timeout=60)
    assert "0 file(s) changed" in second.stdout
    assert [(p, p.stat().st_mtime_ns) for p in tmp_path.rglob("*.conf")] == stamp


@pytest.mark.slow
def test_optimize_refuses_without_root():
    result = run_as_nobody(Path(OPTIMIZE))
    assert result.returncode == 1 and "needs root" in result.stderr


# --- logrotate against a running daemon ------------------------------------------------------------


@pytest.mark.slow
def test_logrotate_loses_and_duplicates_no_line(tmp_path):
    user = subprocess.run(["id", "-un"], capture_output=True, text=True, timeout=60).stdout.strip()
    group = subprocess.run(["id", "-gn"], capture_output=True, text=True, timeout=60).stdout.strip()
    conf = tmp_path / "logrotate.conf"
    conf.write_text((SCRIPTS / "logrotate.conf").read_text().replace("@INSTALL_DIR@", str(tmp_path))
                    .replace("@USER@", user).replace("@GROUP@", group))
    log_file = tmp_path / "logs" / "bot.log"
    env = subprocess_env(tmp_path, LOG_FILE=str(log_file), HEARTBEAT_SECONDS="0.02", TRADING_SYMBOLS="BTC/USDT:USDT",
                         TRADING_TIMEFRAMES="1m")
    proc = subprocess.Popen([sys.executable, "-m", "trading_bot", "run"], cwd=tmp_path, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    rotated = log_file.with_name("bot.log.1")
    try:
        _wait_for(lambda: log_file.exists() and log_file.read_text().count("heartbeat ") >= 20)
        result = subprocess.run([tool("logrotate"), "-f", "-s", str(tmp_path / "logrotate.state"), str(conf)],
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        assert rotated.exists()
        _wait_for(lambda: log_file.exists() and log_file.read_text().count("heartbeat ") >= 20)
        proc.send_signal(signal.SIGTERM)
        _, errors = proc.communicate(timeout=10)
        assert proc.returncode == 0, errors
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=10)
    before, after = rotated.read_text(), log_file.read_text()
    numbers = [int(n) for n in re.findall(r"heartbeat (\d+):", before + after)]
    assert numbers == list(range(1, len(numbers) + 1))  # every heartbeat once, in order, none lost
    assert "ready:" in before and "stopped:" in after
    assert len(set(before.splitlines()) & set(after.splitlines())) == 0


def _wait_for(condition, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError("timed out")
