"""`trading-bot analyze`'s portfolio section: the chosen parameters on one wallet over the test period,
with the settings' costs, limits and balance, next to the standalone figures and the current params."""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import cli_settings_env, make_settings
from trading_bot.backtest.analyzer import load_history
from trading_bot.backtest.portfolio import PortfolioSeries, backtest_portfolio, portfolio_metrics
from trading_bot.backtest.reference import series_scores
from trading_bot.cli.main import main
from trading_bot.domain.candles import TS
from trading_bot.domain.funding_settlement import FundingSettlement
from trading_bot.domain.params import default_config
from trading_bot.domain.sizing import RiskLimits
from trading_bot.domain.trades import Costs
from trading_bot.marketdata.candle_csv import append_candles, cache_file_name
from trading_bot.marketdata.synthetic import synthetic_candles

SYMBOLS = ("BTC/USDT:USDT", "ETH/USDT:USDT", "SOL/USDT:USDT")
ARGS = ["analyze", "--sl", "0.005,0.01", "--rr", "1,2", "--min-trades", "5", "--workers", "1", "--dry-run"]
SETTINGS = {"MAX_OPEN_POSITIONS": "1", "INITIAL_BALANCE": "5000", "FEE_RATE": "0.0005", "SLIPPAGE": "0.0001",
            "RISK_PER_TRADE": "0.02", "LEVERAGE": "1.5"}  # the leverage cap binds


def _setup(monkeypatch, tmp_path, counts=(2500, 2500, 2500)):
    cli_settings_env(monkeypatch, tmp_path, SYMBOLS, "5m", **SETTINGS)
    settings = make_settings(tmp_path)
    for seed, (symbol, count) in enumerate(zip(SYMBOLS, counts, strict=True)):
        append_candles(settings.candles_dir / cache_file_name(symbol, "5m"),
                       synthetic_candles(symbol, 300_000, 1_700_000_000_000, count, None, seed))
    return settings


def test_json_portfolio_is_the_settings_portfolio_over_the_analyzers_test_period(tmp_path, monkeypatch, capsys):
    settings = _setup(monkeypatch, tmp_path, counts=(2500, 3000, 2800))
    assert main(["--env-file", str(tmp_path / "none.env"), *ARGS, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    results = {r["symbol"]: r for r in out["results"]}
    report = out["portfolio"]
    assert set(report) == {"from_ms", "to_ms", "max_open_positions", "objective", "bots", "chosen", "current",
                           "better", "warning", "left_out"}
    assert report["max_open_positions"] == 1 and report["left_out"] == []
    assert set(report["chosen"]) == {"portfolio", "skipped_entries", "signals", "open_positions"}
    assert set(report["bots"]) == {f"{s}|5m" for s in SYMBOLS}
    for symbol in SYMBOLS:
        bot = report["bots"][f"{symbol}|5m"]
        assert bot["test_from_ts"] == results[symbol]["folds"][-1]["test_from_ts"]
        assert bot["standalone"] == results[symbol]["test"] and bot["params"] == "chosen"
    assert report["from_ms"] == min(b["test_from_ts"] for b in report["bots"].values())

    # Independently: the chosen params on the test candles, the settings' costs, limits and balance.
    series = []
    for symbol in SYMBOLS:  # the settings' order
        candles = load_history(str(settings.candles_dir / cache_file_name(symbol, "5m")))
        params = default_config().params_for(symbol, "5m")
        start = int(np.searchsorted(candles[:, TS], results[symbol]["folds"][-1]["test_from_ts"]))
        chosen = type(params)(params.weights, **results[symbol]["chosen"])
        series.append(PortfolioSeries(symbol, "5m", candles[start:], chosen, series_scores(candles, params)[start:]))
    # With funding at the default rate (no history cached), as the daemon would book it.
    expected = backtest_portfolio(series, Costs(0.0005, 0.0001), RiskLimits(0.02, 1.5, 1), 5000.0, report["from_ms"],
                                  None, FundingSettlement({}))
    assert expected.wallet.funding != 0
    chosen = report["chosen"]
    assert chosen["portfolio"] == portfolio_metrics(expected).portfolio.as_json()
    assert chosen["portfolio"]["trades"] == len(expected.trades) > 0
    closed = 5000.0 + sum(t.pnl + t.funding for t in expected.trades)  # the wallet also has what open ones paid
    assert chosen["portfolio"]["final_equity"] == pytest.approx(closed, rel=1e-12)
    assert chosen["skipped_entries"] == expected.skipped_entries > 0  # the cap binds ...
    assert chosen["portfolio"]["trades"] < sum(r["test"]["trades"] for r in results.values())  # ... and costs trades
    assert sum(b["in_portfolio"]["trades"] for b in report["bots"].values()) == chosen["portfolio"]["trades"]
    assert report["current"]["portfolio"] != chosen["portfolio"]


def test_the_table_shows_the_portfolio_section_under_the_per_bot_table(tmp_path, monkeypatch, capsys):
    _setup(monkeypatch, tmp_path, counts=(2500, 2500, 50))  # SOL: too short to analyze, it keeps its params
    assert main(["--env-file", str(tmp_path / "none.env"), *ARGS]) == 0
    out = capsys.readouterr().out
    per_bot, portfolio = out.split("portfolio over the test period: ")
    assert "BTC/USDT:USDT 5m" in per_bot and "only 50 candles" in per_bot
    assert portfolio.startswith("every bot on one wallet, MAX_OPEN_POSITIONS=1, ")
    lines = portfolio.splitlines()
    assert any(line.startswith("SOL/USDT:USDT 5m       current*") for line in lines)
    assert any(line.startswith("* no choice") for line in lines)
    assert any(line.startswith("portfolio, chosen params ") for line in lines)
    assert any(line.startswith("portfolio, current params ") for line in lines)
    assert any(line.startswith("signals skipped at MAX_OPEN_POSITIONS=1: ") for line in lines)
    assert any(line.startswith("for the whole account the chosen params are ") for line in lines)
    warnings = [line for line in lines if line.startswith("warning: ")]
    assert len(warnings) == 1 and "MAX_OPEN_POSITIONS=1 skipped" in warnings[0]
