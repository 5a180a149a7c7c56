"""`trading-bot backtest`: the portfolio backtest over the cached candles, per bot and for the wallet."""

from __future__ import annotations

import json

import pytest

from conftest import cli_settings_env, make_settings, write_synthetic_cache
from trading_bot.backtest.portfolio import PortfolioSeries, backtest_portfolio
from trading_bot.cli.main import main
from trading_bot.domain.params import default_config
from trading_bot.domain.sizing import RiskLimits
from trading_bot.domain.trades import Costs
from trading_bot.engine.candle_source import open_funding, replay_start_ms

SYMBOLS = ("BTC/USDT:USDT", "ETH/USDT:USDT")


def _env(monkeypatch, tmp_path, **extra):
    cli_settings_env(monkeypatch, tmp_path, SYMBOLS, "1m,5m", **extra)


def test_backtest_prints_each_bot_and_the_portfolio(tmp_path, monkeypatch, capsys):
    _env(monkeypatch, tmp_path, MAX_OPEN_POSITIONS="1")
    settings = make_settings(tmp_path)
    history = {(s, tf): write_synthetic_cache(settings.candles_dir, s, tf, 1200, seed=4, end_ms=1_700_000_100_000)
               for s in SYMBOLS for tf in ("1m", "5m")}
    assert main(["--env-file", str(tmp_path / "none.env"), "backtest", "--timeframes", "1m,5m"]) == 0
    table = capsys.readouterr().out
    assert "BTC/USDT:USDT 5m" in table and "portfolio (one wallet)" in table and "MAX_OPEN_POSITIONS=1" in table

    assert main(["--env-file", str(tmp_path / "none.env"), "backtest", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    params = default_config().params_for(SYMBOLS[0], "1m")
    expected = backtest_portfolio([PortfolioSeries(s, tf, history[(s, tf)], params) for (s, tf) in history],
                                  Costs(settings.fee_rate, settings.slippage),
                                  RiskLimits(settings.risk_per_trade, settings.leverage, 1), settings.initial_balance,
                                  replay_start_ms(history), None, open_funding(settings, list(SYMBOLS)))
    assert report["portfolio"]["trades"] == len(expected.trades) > 0
    # The equity curve sums the closed trades with their funding (the wallet also has what open ones paid).
    closed = settings.initial_balance + sum(t.pnl + t.funding for t in expected.trades)
    assert report["portfolio"]["final_equity"] == pytest.approx(closed, rel=1e-12)
    assert report["funding"]["total"] == expected.wallet.funding < 0, "longs pay the default rate"
    assert all("default rate" in label for label in report["funding"]["basis"].values())
    assert report["skipped_entries"] == expected.skipped_entries > 0
    assert sum(b["trades"] for b in report["bots"].values()) == len(expected.trades)


def test_backtest_without_cached_candles_is_one_line_and_exit_2(tmp_path, monkeypatch, capsys):
    _env(monkeypatch, tmp_path)
    assert main(["--env-file", str(tmp_path / "none.env"), "backtest"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "backtest needs more than 200 cached candles" in err[0] and "trading-bot fetch" in err[0]
