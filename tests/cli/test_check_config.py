"""`check-config` on the strategy config: a typo is an error with a suggestion, an override for a bot
that is not running is only a warning."""

from __future__ import annotations

import json
import os

import pytest

from trading_bot.cli.main import main


def check_config(tmp_path, document, capsys):
    config = tmp_path / "strategy_config.json"
    config.write_text(json.dumps(document))
    env_file = tmp_path / ".env"
    env_file.write_text(f"TRADING_SYMBOLS=BTC/USDT:USDT\nTRADING_TIMEFRAMES=5m\nSTRATEGY_CONFIG={config}\n"
                        f"DATA_DIR={tmp_path / 'data'}\n")
    os.chmod(env_file, 0o600)
    code = main(["--env-file", str(env_file), "check-config"])
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.mark.parametrize(("document", "line"), [
    ({"bots": {"BTC/USDT:USDT": {"5m": {"treshold": 0.3}}}},
     "bots.BTC/USDT:USDT.5m: unknown key 'treshold' (did you mean 'threshold'?)"),
    ({"strategies": {"BTC/USDT:USDT": {"5m": {"threshold": 0.3}}}},
     "top level: unknown key 'strategies' (expected one of version, defaults, bots)"),
    ({"defaults": {"rr": 2.0}}, "defaults: unknown key 'rr' (did you mean 'rr_ratio'?)"),
    ({"bots": {"BTC/USDT:USDT": {"5min": {}}}}, "bots.BTC/USDT:USDT: unknown timeframe '5min' (did you mean '5m'?)"),
])
def test_a_typo_in_the_strategy_config_is_an_error(tmp_path, capsys, document, line):
    code, out, err = check_config(tmp_path, {"version": 1, **document}, capsys)
    assert code == 2
    assert line in err and err.count("\n") == 1
    assert "ok:" not in out


def test_analyzer_blocks_are_accepted_and_an_untraded_symbol_is_a_warning(tmp_path, capsys):
    entry = {"threshold": 0.3, "metrics": {"train": {}}, "provenance": {"candles": 10}}
    code, out, err = check_config(tmp_path, {"version": 1, "bots": {"BTC/USDT:USDT": {"5m": entry},
                                                                    "DOGE/USDT:USDT": {"1m": {"threshold": 0.2}}}},
                                  capsys)
    assert code == 0, err
    assert "ok: settings valid" in out
    assert "warning: strategy config: bots.DOGE/USDT:USDT: DOGE/USDT:USDT is not traded" in err


def test_with_top_n_every_symbol_the_file_names_is_checked_and_none_is_called_unused(tmp_path, capsys):
    env_file = tmp_path / ".env"
    config = tmp_path / "strategy_config.json"
    env_file.write_text(f"TRADING_SYMBOLS=top:5\nTRADING_TIMEFRAMES=5m\nSTRATEGY_CONFIG={config}\nDATA_DIR={tmp_path}\n")
    os.chmod(env_file, 0o600)
    config.write_text(json.dumps({"version": 1, "bots": {"DOGE/USDT:USDT": {"5m": {"threshold": 0.2}}}}))
    assert main(["--env-file", str(env_file), "check-config"]) == 0
    out = capsys.readouterr()
    assert "ok: settings valid (top:5 × 1 timeframes, the symbols chosen at start, paper mode)" in out.out
    assert "not traded" not in out.err
    config.write_text(json.dumps({"version": 1, "bots": {"DOGE/USDT:USDT": {"5m": {"threshold": -1}}}}))
    assert main(["--env-file", str(env_file), "check-config"]) == 2
    assert "strategy config: bots.DOGE/USDT:USDT.5m.threshold: " in capsys.readouterr().err
    for command in ("analyze", "backtest"):
        assert main(["--env-file", str(env_file), command]) == 2
        err = capsys.readouterr().err
        assert err == (f"trading-bot: error: TRADING_SYMBOLS=top:5: {command} needs a list of symbols: pass --symbols A,B "
                       "(the running daemon's choice is in `trading-bot status`)\n")
