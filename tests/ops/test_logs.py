"""Log format for a terminal vs journald, and secrets masked whatever logs them."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from conftest import subprocess_env


def run_bot(tmp_path, **env):
    return subprocess.run([sys.executable, "-m", "trading_bot", "run", "--cycles", "1"], cwd=tmp_path,
                          env=subprocess_env(tmp_path, HEARTBEAT_SECONDS="0.05", TRADING_SYMBOLS="BTC/USDT:USDT",
                                             TRADING_TIMEFRAMES="1m", **env),
                          capture_output=True, text=True, timeout=60)


@pytest.mark.slow
def test_terminal_lines_have_timestamps_and_levels(tmp_path):
    out = run_bot(tmp_path).stdout
    assert re.search(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d INFO    ready: ", out, re.M), out


@pytest.mark.slow
def test_under_journald_lines_carry_priorities_and_no_timestamps(tmp_path):
    # auto + a closed loopback port: the "exchange unreachable" warning, without touching the internet
    out = run_bot(tmp_path, JOURNAL_STREAM="8:12345", MARKET_DATA="auto", EXCHANGE_URL="http://127.0.0.1:9").stdout
    lines = out.strip().splitlines()
    assert lines and all(re.match(r"^<[0-7]>", line) for line in lines), out
    assert any(line.startswith("<6>ready: ") for line in lines)
    assert any(line.startswith("<4>candle cache empty") for line in lines)  # a warning
    assert not re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d", out)


@pytest.mark.slow
def test_secrets_never_reach_the_logs_or_the_status(tmp_path):
    key, secret = "AKIAxxKEYxx1234567", "sEcReT-ValUe-987654321"
    result = run_bot(tmp_path, API_KEY=key, API_SECRET=secret, LOG_LEVEL="DEBUG", LOG_FILE=str(tmp_path / "bot.log"))
    assert result.returncode == 0, result.stderr
    status = subprocess.run([sys.executable, "-m", "trading_bot", "status", "--json"], cwd=tmp_path,
                            env=subprocess_env(tmp_path, API_KEY=key, API_SECRET=secret),
                            capture_output=True, text=True, timeout=60)
    everything = result.stdout + result.stderr + status.stdout + status.stderr + (tmp_path / "bot.log").read_text()
    for path in (tmp_path / "data").rglob("*"):
        if path.is_file():
            everything += path.read_text(errors="replace")
    assert key not in everything and secret not in everything


def test_redact_filter_masks_a_secret_in_any_message():
    import logging

    from trading_bot.ops.logs import RedactSecrets

    record = logging.LogRecord("x", logging.INFO, __file__, 1, "request failed: apiKey=%s", ("TOPSECRET99",), None)
    RedactSecrets(["TOPSECRET99"]).filter(record)
    assert record.getMessage() == "request failed: apiKey=***"


def test_redact_filter_masks_listen_keys_and_tracebacks():
    import logging
    import sys

    from trading_bot.ops.logs import RedactSecrets

    answer = logging.LogRecord("ccxt", logging.DEBUG, __file__, 1, "POST …/listenKey, Response: 200 %s",
                               ('{"listenKey": "pqia91ma19a5s61cv6a81va65sdf19v8a65a1a5s61"}',), None)
    RedactSecrets([]).filter(answer)
    assert answer.getMessage() == 'POST …/listenKey, Response: 200 {"listenKey": "***"}'
    try:
        raise ConnectionError("cannot connect to wss://fstream.binance.com/private/ws?listenKey=pqia91ma19a5s61cv6a8")
    except ConnectionError:
        failed = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", None, sys.exc_info())
    RedactSecrets([]).filter(failed)
    assert "pqia91ma19a5s61cv6a8" not in logging.Formatter().format(failed) and "listenKey=***" in failed.exc_text
