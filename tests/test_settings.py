"""Settings from the environment and .env; every bad value names itself, exit code 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from conftest import subprocess_env
from trading_bot.settings import Secret, Settings, SettingsError, load_settings, settings_from_mapping

BAD_VALUES = [
    ("DRY_RUN", "maybe", "expected true or false"),
    ("TRADING_TIMEFRAMES", "1m,7m", "unknown timeframe '7m'"),
    ("TRADING_TIMEFRAMES", " , ", "at least one timeframe"),
    ("TRADING_SYMBOLS", "BTCUSDT", "not a ccxt symbol"),
    ("HEARTBEAT_SECONDS", "0", "must be in (0, 3600]"),
    ("HEARTBEAT_SECONDS", "fast", "expected a number"),
    ("INITIAL_BALANCE", "-5", "must be in (0,"),
    ("INITIAL_BALANCE", "nan", "finite"),
    ("LEVERAGE", "500", "must be in [1, 125]"),
    ("RISK_PER_TRADE", "2", "must be in (0, 1]"),
    ("MAX_OPEN_POSITIONS", "2.5", "expected a whole number"),
    ("FEE_RATE", "abc", "expected a number"),
    ("SLIPPAGE", "-0.1", "must be in [0, 0.05]"),
    ("LOG_LEVEL", "LOUD", "expected one of DEBUG"),
    ("HISTORY_CANDLES", "10", "must be in [100, 100000]"),
    ("DATA_DIR", "  ", "expected a path"),
    ("MARKET_DATA", "carrier-pigeon", "expected one of auto"),
    ("CLOCK_SPEED", "0", "must be in (0, 10000]"),
    ("CLOCK_ORIGIN_MS", "-1", "milliseconds since the epoch"),
    ("DAILY_LOSS_LIMIT", "5", "must be in [0, 1]"),
    ("MAX_DRAWDOWN", "-0.1", "must be in [0, 1]"),
    ("COOLDOWN_STOPOUTS", "two", "expected a whole number"),
    ("MAX_ORDER_NOTIONAL", "-1", "must be in [0, 1e+12]"),
    ("TRADING_SYMBOLS", "top:0", "top:N takes a whole number of symbols, at least 1 (e.g. top:20), got 'top:0'"),
    ("TRADING_SYMBOLS", "top:abc", "got 'top:abc'"),
    ("TRADING_SYMBOLS", "top:", "got 'top:'"),
]


def test_a_cooldown_needs_both_of_its_settings():
    with pytest.raises(SettingsError, match="COOLDOWN_STOPOUTS and COOLDOWN_CANDLES: set both"):
        settings_from_mapping({"COOLDOWN_STOPOUTS": "3"})
    s = settings_from_mapping({"COOLDOWN_STOPOUTS": "3", "COOLDOWN_CANDLES": "12", "DAILY_LOSS_LIMIT": "0.03",
                               "MAX_DRAWDOWN": "0.15", "MAX_ORDER_NOTIONAL": "2500"})
    assert (s.protections.cooldown_stopouts, s.protections.cooldown_candles) == (3, 12)
    assert (s.protections.daily_loss_limit, s.protections.max_drawdown) == (0.03, 0.15)
    assert s.risk_limits.max_order_notional == 2500.0
    off = settings_from_mapping({}).protections
    assert off.daily_loss_limit == off.max_drawdown == off.cooldown_stopouts == 0, "off by default"


@pytest.mark.parametrize(("key", "value", "message"), BAD_VALUES)
def test_bad_value_names_the_setting(key, value, message):
    with pytest.raises(SettingsError) as info:
        settings_from_mapping({key: value})
    assert str(info.value).startswith(f"{key}: ")
    assert message in str(info.value)


def test_defaults_are_paper_mode_21_bots():
    s = Settings()
    assert s.dry_run is True and len(s.bot_keys) == 21 and s.heartbeat_seconds == 5.0
    assert s.exchange_id == "binanceusdm"


def test_env_file_is_read_and_the_environment_wins(tmp_path):
    env_file = tmp_path / ".env"
    env_file.write_text('TRADING_SYMBOLS="BTC/USDT:USDT, eth/usdt:usdt"\nLEVERAGE=3\n# comment\nHEARTBEAT_SECONDS=2 # inline\n')
    s = load_settings(env_file, environ={"LEVERAGE": "4"})
    assert s.symbols == ("BTC/USDT:USDT", "ETH/USDT:USDT")
    assert s.leverage == 4.0 and s.heartbeat_seconds == 2.0


def test_trading_symbols_top_n_or_all_choose_at_start_instead_of_a_list():
    from trading_bot.domain.universe import UniverseRule

    top = settings_from_mapping({"TRADING_SYMBOLS": " Top:20 ", "TRADING_TIMEFRAMES": "1m,1h"})
    assert top.universe == UniverseRule(20) and top.symbols == () and top.bot_keys == []
    assert settings_from_mapping({"TRADING_SYMBOLS": "all"}).universe == UniverseRule()
    listed = settings_from_mapping({"TRADING_SYMBOLS": "BTC/USDT:USDT"})
    assert listed.universe is None and listed.symbols == ("BTC/USDT:USDT",)


@pytest.mark.parametrize(("argv", "value"), [(["check-config"], "top:0"), (["run", "--cycles", "1"], "top:abc"),
                                             (["run", "--cycles", "1", "--symbols", "top:"], "all")])
def test_a_bad_top_n_is_one_line_and_exit_2(tmp_path, monkeypatch, capsys, argv, value):
    from trading_bot.cli.main import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TRADING_SYMBOLS", value)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "top:N takes a whole number of symbols, at least 1" in err, err
    named = "--symbols" if "--symbols" in argv else "TRADING_SYMBOLS"
    assert err.startswith(f"trading-bot: error: {named}: ")


def test_secrets_never_show_in_repr_or_format():
    s = settings_from_mapping({"API_KEY": "key-abcdef123", "API_SECRET": "secret-zyx987"})
    text = f"{s!r} {s} {s.api_key} {s.api_secret!r} {[s.api_key]} %s" % s.api_secret
    assert "abcdef123" not in text and "zyx987" not in text
    assert s.api_key.reveal() == "key-abcdef123"
    assert isinstance(s.api_key, Secret)


@pytest.mark.slow
@pytest.mark.parametrize(("key", "value", "message"), BAD_VALUES[:6])
def test_cli_exits_2_with_one_line_and_no_traceback(tmp_path, key, value, message):
    env = subprocess_env(tmp_path, **{key: value})
    result = subprocess.run([sys.executable, "-m", "trading_bot", "run", "--cycles", "1"], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0, result.stderr
    assert f"{key}: " in result.stderr and message in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


@pytest.mark.slow
def test_bad_value_in_env_file_is_reported_too(tmp_path):
    (tmp_path / ".env").write_text("TRADING_TIMEFRAMES=2m\n")
    result = subprocess.run([sys.executable, "-m", "trading_bot", "check-config"], cwd=tmp_path,
                            env=subprocess_env(tmp_path), capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "TRADING_TIMEFRAMES: unknown timeframe '2m'" in result.stderr


@pytest.mark.slow
def test_check_config_ok(tmp_path):
    result = subprocess.run([sys.executable, "-m", "trading_bot", "check-config"], cwd=tmp_path,
                            env=subprocess_env(tmp_path), capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "ok: settings valid (21 bots, paper mode)" in result.stdout


def test_env_example_documents_every_setting():
    from trading_bot.settings import FIELDS

    text = (Path(__file__).resolve().parents[1] / ".env.example").read_text()
    missing = [key for key in FIELDS if f"{key}=" not in text]
    assert not missing, f".env.example does not document {missing}"
    # and it loads as valid settings as shipped
    load_settings(Path(__file__).resolve().parents[1] / ".env.example", environ={})


@pytest.mark.slow
@pytest.mark.parametrize(("env", "message"), [
    ({"DRY_RUN": "false"}, "DRY_RUN=false needs API_KEY and API_SECRET"),
    ({"DRY_RUN": "false", "API_KEY": "abcd1234", "API_SECRET": "efgh5678"}, "needs LIVE_TRADING_CONFIRMED=yes"),
])
def test_live_mode_needs_keys_and_confirmation(tmp_path, env, message):
    result = subprocess.run([sys.executable, "-m", "trading_bot", "run", "--cycles", "1"], cwd=tmp_path,
                            env=subprocess_env(tmp_path, **env), capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and message in result.stderr
    assert result.stderr.strip().count("\n") == 0 and "Traceback" not in result.stderr
    assert "abcd1234" not in result.stderr + result.stdout and "efgh5678" not in result.stderr + result.stdout


@pytest.mark.parametrize(("extra", "allowed"), [
    ({}, False),
    ({"EXCHANGE_URL": "https://fapi.binance.com"}, False),
    ({"EXCHANGE_URL": "http://127.0.0.1:8080"}, True),
    ({"EXCHANGE_URL": "http://localhost:8080/"}, True),
    ({"MARKET_DATA": "synthetic"}, True),
])
def test_a_time_lapse_clock_only_runs_against_a_local_or_synthetic_market(extra, allowed):
    values = {"CLOCK_SPEED": "60", **extra}
    if allowed:
        assert settings_from_mapping(values).clock_speed == 60
    else:
        with pytest.raises(SettingsError, match=r"^CLOCK_SPEED: a time-lapse clock needs"):
            settings_from_mapping(values)


def test_two_time_lapse_clocks_with_one_origin_agree():
    import time

    from trading_bot.engine.clock import FastClock, wall_clock

    origin = int(time.time() * 1000) - 10_000
    a, b = FastClock(60, origin), wall_clock(60, origin)
    before = int(time.time() * 1000)
    first, second = a.now_ms(), b.now_ms()
    assert abs(first - second) < 60 * 20  # a few ms of wall time apart, times 60
    assert first >= origin + (before - origin) * 60
    assert isinstance(wall_clock(1.0, origin), type(wall_clock()))


def test_the_user_data_stream_settings():
    assert settings_from_mapping({}).user_stream is True
    settings = settings_from_mapping({"USER_STREAM": "off", "USER_STREAM_CHECK_S": "30"})
    assert (settings.user_stream, settings.user_stream_check_s) == (False, 30.0)
    with pytest.raises(SettingsError, match="USER_STREAM_CHECK_S"):
        settings_from_mapping({"USER_STREAM_CHECK_S": "0"})


def test_the_metrics_settings():
    assert (settings_from_mapping({}).metrics_port, settings_from_mapping({}).metrics_host) == (0, "127.0.0.1")
    assert settings_from_mapping({"METRICS_PORT": ""}).metrics_port == 0
    settings = settings_from_mapping({"METRICS_PORT": " 9108 ", "METRICS_HOST": "0.0.0.0"})
    assert (settings.metrics_port, settings.metrics_host) == (9108, "0.0.0.0")
    assert settings_from_mapping({"METRICS_HOST": "::1"}).metrics_host == "::1"
    for raw in ("70000", "-1", "abc", "91.5"):
        with pytest.raises(SettingsError, match=r"^METRICS_PORT: "):
            settings_from_mapping({"METRICS_PORT": raw})
    for raw in ("", "http://127.0.0.1", "my host"):
        with pytest.raises(SettingsError, match=r"^METRICS_HOST: "):
            settings_from_mapping({"METRICS_HOST": raw})
