"""Strategy config: defaults, overrides, lazy parsing, and every kind of bad file."""

from __future__ import annotations

import json
import os

import pytest

from trading_bot.domain.params import StrategyConfigError, default_config, parse_config_bytes
from trading_bot.persistence.strategy_config_file import load_config, write_config

KEYS = [("BTC/USDT:USDT", "5m"), ("ETH/USDT:USDT", "1h")]


def test_missing_file_gives_embedded_defaults(tmp_path):
    config = load_config(tmp_path / "nope.json", KEYS)
    assert config.source == "embedded defaults"
    params = config.params_for("BTC/USDT:USDT", "5m")
    assert params.threshold == default_config().params_for("X/Y", "1m").threshold


def test_per_bot_override_on_top_of_defaults(tmp_path):
    path = tmp_path / "c.json"
    write_config(path, {"version": 1, "defaults": {"threshold": 0.4, "weights": {"rsi": 1.0}},
                        "bots": {"BTC/USDT:USDT": {"5m": {"sl_pct": 0.01, "weights": {"macd": 0.5}}}}})
    config = load_config(path, KEYS)
    btc = config.params_for("BTC/USDT:USDT", "5m")
    eth = config.params_for("ETH/USDT:USDT", "1h")
    assert btc.threshold == 0.4 and btc.sl_pct == 0.01
    assert btc.weight_map()["rsi"] == 1.0 and btc.weight_map()["macd"] == 0.5
    assert eth.sl_pct == 0.015 and eth.weight_map()["macd"] == 0.2


def test_only_running_bots_are_parsed(tmp_path):
    path = tmp_path / "c.json"
    write_config(path, {"version": 1, "bots": {"DOGE/USDT:USDT": {"1m": {"threshold": "not a number"}}}})
    config = load_config(path, KEYS)  # DOGE is not running: its broken entry is never parsed
    assert config.params_for("BTC/USDT:USDT", "5m")
    with pytest.raises(StrategyConfigError, match="threshold"):
        config.params_for("DOGE/USDT:USDT", "1m")


@pytest.mark.parametrize(("content", "message"), [
    (b'{"version": 1, "defaults": {"threshold": 0.3', "not valid JSON"),
    (b"[]", "expected a JSON object"),
    (b'{"version": 1, "defaults": {"threshold": NaN}}', "NaN is not a valid number"),
    (b'{"version": 1, "defaults": {"threshold": "high"}}', "expected a number"),
    (b'{"version": 1, "defaults": {"sl_pct": -0.01}}', "sl_pct: must be in (0, 0.5]"),
    (b'{"version": 1, "defaults": {"rr_ratio": 1e9}}', "rr_ratio: must be in"),
    (b'{"version": 1, "defaults": {"weights": {"magic": 1}}}', "unknown component 'magic'"),
    (b'{"version": 1, "defaults": {"weights": {"rsi": 0, "ema": 0, "macd": 0, "bollinger": 0, "volume": 0}}}',
     "at least one weight"),
    (b'{"version": 2}', "version: expected 1"),
    (b'{"version": 1, "bots": {"BTC/USDT:USDT": {"5m": {"threshold": true}}}}', "bots.BTC/USDT:USDT.5m.threshold"),
    (b'{"version": 1, "bots": []}', "bots: expected an object"),
    (b"\xff\xfe", "not valid JSON"),
])
def test_bad_files_raise_one_clear_error(tmp_path, content, message):
    path = tmp_path / "c.json"
    path.write_bytes(content)
    with pytest.raises(StrategyConfigError) as info:
        load_config(path, KEYS)
    assert message in str(info.value)
    assert str(path) in str(info.value)
    assert "\n" not in str(info.value)


def test_directory_and_unreadable(tmp_path):
    with pytest.raises(StrategyConfigError, match="is a directory"):
        load_config(tmp_path, KEYS)
    path = tmp_path / "c.json"
    path.write_text("{}")
    os.chmod(path, 0)
    try:
        if os.geteuid() != 0:  # root reads anything
            with pytest.raises(StrategyConfigError, match="cannot read"):
                load_config(path, KEYS)
    finally:
        os.chmod(path, 0o644)


def test_write_is_atomic_and_round_trips(tmp_path):
    path = tmp_path / "sub" / "c.json"
    doc = {"version": 1, "defaults": {"threshold": 0.2}, "bots": {}}
    write_config(path, doc)
    assert json.loads(path.read_text()) == doc
    assert [p.name for p in path.parent.iterdir()] == ["c.json"]
    assert parse_config_bytes(path.read_bytes(), "x").params_for("A/B", "1m").threshold == 0.2
