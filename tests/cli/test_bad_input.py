"""Bad input never takes the bot down: fuzzed readers raise only our own clear error types, and
broken state files are set aside (never deleted) with a clear line."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import make_settings, subprocess_env
from trading_bot.domain.candles import COLUMNS
from trading_bot.domain.params import StrategyConfigError, parse_config_bytes
from trading_bot.engine.daemon import Daemon, StartupError
from trading_bot.marketdata.candle_csv import ReadReport, parse_candle_lines, read_candles
from trading_bot.persistence.state_store import StateError, StateStore, decode_state, read_journal

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
KEYS = [("BTC/USDT:USDT", "5m"), ("ETH/USDT:USDT", "1h")]

json_values = st.recursive(
    st.none() | st.booleans() | st.floats(allow_nan=True, allow_infinity=True) | st.integers() | st.text(max_size=8),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)
config_like = st.fixed_dictionaries({}, optional={
    "version": st.sampled_from([1, 2, "1", None]),
    "defaults": st.dictionaries(st.sampled_from(["threshold", "sl_pct", "rr_ratio", "weights", "x"]), json_values, max_size=4),
    "bots": st.dictionaries(st.sampled_from(["BTC/USDT:USDT", "ETH/USDT:USDT", "X"]),
                            st.dictionaries(st.sampled_from(["5m", "1h"]), json_values, max_size=2), max_size=3),
})


@FUZZ
@given(st.one_of(st.binary(max_size=300), config_like.map(lambda d: json.dumps(d).encode())))
def test_config_reader_raises_only_its_own_error(data):
    try:
        config = parse_config_bytes(data, "fuzz.json")
        config.validate_for(KEYS)
    except StrategyConfigError as exc:
        assert "\n" not in str(exc)


@FUZZ
@given(st.lists(st.one_of(st.binary(max_size=60),
                          st.lists(st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-5, 10**13)),
                                   min_size=COLUMNS, max_size=COLUMNS).map(lambda r: ",".join(map(str, r)).encode())),
                max_size=30))
def test_csv_reader_never_raises_and_keeps_only_sane_candles(lines):
    candles = parse_candle_lines(lines, ReadReport())
    assert candles.shape[1] == COLUMNS
    if candles.shape[0]:
        assert (candles[:, 1:5] > 0).all() and (candles[:, 2] >= candles[:, 3]).all()
        assert (candles[1:, 0] > candles[:-1, 0]).all()


@FUZZ
@given(st.binary(max_size=400))
def test_csv_file_reader_never_raises(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("csv") / "x.csv"
    path.write_bytes(data)
    read_candles(path)
    read_candles(path, limit=5)


state_like = st.fixed_dictionaries({"version": st.sampled_from([1, 2])}, optional={
    "wallet": st.dictionaries(st.sampled_from(["initial_balance", "balance", "fees_paid", "trades", "wins", "x"]),
                              json_values, max_size=6),
    "bots": st.dictionaries(st.text(max_size=20), json_values, max_size=3),
    "intents": json_values,
    "clock_ms": json_values,
})


@FUZZ
@given(st.one_of(st.binary(max_size=300), state_like.map(lambda d: json.dumps(d).encode())))
def test_state_reader_raises_only_its_own_error(data):
    try:
        decode_state(data, "positions.json")
    except StateError as exc:
        assert "positions.json" in str(exc)


@FUZZ
@given(st.binary(max_size=300))
def test_journal_reader_never_raises(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("j") / "trades.jsonl"
    path.write_bytes(data)
    assert all(isinstance(r, dict) for r in read_journal(path))


async def test_corrupt_positions_file_in_paper_mode_is_kept_aside_and_the_bot_starts(tmp_path, caplog):
    settings = make_settings(tmp_path, symbols=("BTC/USDT:USDT",), timeframes=("1m",))
    store = StateStore(settings.state_dir())
    store.directory.mkdir(parents=True)
    store.positions_path.write_text('{"version": 1, "wallet": {"bal')
    daemon = Daemon(settings, cycles=1, install_signals=False)
    await daemon.run()
    backups = list(store.directory.glob("positions.json.corrupt-*"))
    assert len(backups) == 1 and backups[0].read_text() == '{"version": 1, "wallet": {"bal'
    assert "kept it as" in caplog.text and str(backups[0]) in caplog.text
    assert decode_state(store.positions_path.read_bytes(), "x").wallet.balance == settings.initial_balance


async def test_corrupt_positions_file_in_live_mode_refuses_to_start(tmp_path, market):
    from fakes.live_bot import live_settings

    clock, fake = market
    settings = live_settings(tmp_path, fake)
    store = StateStore(settings.state_dir())
    store.directory.mkdir(parents=True)
    store.positions_path.write_text("garbage")
    daemon = Daemon(settings, clock=clock, install_signals=False)
    with pytest.raises(StartupError) as info:
        await daemon.run()
    message = str(info.value)
    assert str(store.positions_path) in message and "positions.json.corrupt-" in message
    assert "Live mode will not start" in message
    assert not fake.orders, "nothing was traded"


async def test_a_torn_journal_line_is_cut_at_start(tmp_path, caplog):
    caplog.set_level(logging.WARNING)
    settings = make_settings(tmp_path, symbols=("BTC/USDT:USDT",), timeframes=("1m",))
    store = StateStore(settings.state_dir())
    store.directory.mkdir(parents=True)
    store.trades_path.write_text('{"symbol": "BTC/USDT:USDT", "pnl": 1.0}\n{"symbol": "BTC/US')
    await Daemon(settings, cycles=1, install_signals=False).run()
    assert store.trades_path.read_text() == '{"symbol": "BTC/USDT:USDT", "pnl": 1.0}\n'
    assert "cut a torn last line" in caplog.text


@pytest.mark.slow
def test_env_file_unknown_keys_and_loose_permissions_are_warned_about(tmp_path):
    env_file = tmp_path / ".env"
    env_file.write_text("TRADING_SYMBOLS=BTC/USDT:USDT\nTRADNG_TIMEFRAMES=5m\nAPI_SECRET=abc\n")
    os.chmod(env_file, 0o644)
    result = subprocess.run([sys.executable, "-m", "trading_bot", "check-config"], cwd=tmp_path,
                            env=subprocess_env(tmp_path), capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "unknown setting(s) ignored: TRADNG_TIMEFRAMES" in result.stderr
    assert "readable by other users" in result.stderr and "chmod 600" in result.stderr
    os.chmod(env_file, 0o600)
    quiet = subprocess.run([sys.executable, "-m", "trading_bot", "check-config"], cwd=tmp_path,
                           env=subprocess_env(tmp_path), capture_output=True, text=True, timeout=60)
    assert "readable by other users" not in quiet.stderr
