"""The analyzer's choice on the whole account: the portfolio backtest over the analyzer's own test
period, with the chosen and with the current parameters."""

from __future__ import annotations

import json

import numpy as np
import pytest

from trading_bot.backtest.analyzer import AnalysisOptions, Grid, TestSegment, jobs_for, load_history, run_jobs
from trading_bot.backtest.metrics import compute_metrics
from trading_bot.backtest.portfolio_check import CheckedBot, PortfolioCheck, PortfolioRun, check_portfolio, checked_bots
from trading_bot.backtest.reference import series_scores
from trading_bot.domain.params import default_config, parse_config_bytes
from trading_bot.marketdata.candle_csv import append_candles, cache_file_name
from trading_bot.marketdata.synthetic import synthetic_candles

SMALL = AnalysisOptions(grid=Grid(sl=(0.005, 0.01), rr=(1.0, 2.0)), min_trades=5)
SYMBOLS = ("BTC/USDT:USDT", "ETH/USDT:USDT", "SOL/USDT:USDT")


def write_series(directory, symbol, count, seed):
    append_candles(directory / cache_file_name(symbol, "5m"),
                   synthetic_candles(symbol, 300_000, 1_700_000_000_000, count, None, seed))


def analyzed(tmp_path, options, symbols=SYMBOLS, count=2500, config=None):
    config = config or default_config()
    for i, symbol in enumerate(symbols):
        write_series(tmp_path, symbol, count, seed=i)
    jobs = jobs_for([(s, "5m") for s in symbols], tmp_path, config)
    results = run_jobs(jobs, options, None)
    bots, left_out = checked_bots(jobs, results, config)
    return results, bots, left_out


@pytest.mark.parametrize("folds", [1, 3])
def test_the_test_period_is_the_analyzers(tmp_path, folds):
    """The last fold's test candles, scored over the whole history (the earlier candles warm it)."""
    options = AnalysisOptions(grid=SMALL.grid, min_trades=3, folds=folds, train_fraction=0.6)
    results, bots, left_out = analyzed(tmp_path, options, symbols=SYMBOLS[:1], count=2000)
    last, segment = results[0].folds[-1], bots[0].segment
    assert left_out == [] and len(bots) == 1
    assert segment.start == last["train_candles"] == (1200 if folds == 1 else 1500)
    assert segment.from_ts == last["test_from_ts"] and segment.candles.shape[0] == last["test_candles"]
    history = load_history(str(tmp_path / cache_file_name(SYMBOLS[0], "5m")))
    assert np.array_equal(segment.candles, history[segment.start:])
    assert np.array_equal(segment.scores, series_scores(history, bots[0].current)[segment.start:], equal_nan=True)


def test_one_bot_in_the_portfolio_trades_as_it_does_alone(tmp_path):
    """Nothing to share: the portfolio over the test period is the grid search's test figure."""
    _, bots, _ = analyzed(tmp_path, SMALL, symbols=SYMBOLS[:1])
    check = check_portfolio(bots, SMALL)
    alone, together = bots[0].standalone, check.chosen.per_bot[bots[0].key]
    assert alone is not None and alone.trades >= 5
    assert (together.trades, together.total_return, together.sharpe) == (alone.trades, alone.total_return, alone.sharpe)
    assert check.chosen.portfolio.final_equity == alone.final_equity and check.chosen.skipped_entries == 0
    assert check.start_ms == bots[0].segment.from_ts


def test_each_series_trades_from_its_own_split(tmp_path):
    """Histories of different lengths split at different times; with slots to spare every bot makes
    its standalone trades (sizes follow the shared wallet, entries and exits do not), none from
    before its own split although the wallet's period starts at the earliest one."""
    for symbol, count, seed in (("BTC/USDT:USDT", 2500, 0), ("ETH/USDT:USDT", 3200, 1)):
        write_series(tmp_path, symbol, count, seed)
    config = default_config()
    jobs = jobs_for([("BTC/USDT:USDT", "5m"), ("ETH/USDT:USDT", "5m")], tmp_path, config)
    bots, _ = checked_bots(jobs, run_jobs(jobs, SMALL, None), config)
    check = check_portfolio(bots, SMALL)
    assert bots[0].segment.from_ts < bots[1].segment.from_ts and check.start_ms == bots[0].segment.from_ts
    assert [check.chosen.per_bot[b.key].trades for b in bots] == [b.standalone.trades for b in bots if b.standalone]
    assert check.chosen.skipped_entries == 0


def test_under_a_binding_cap_the_portfolio_differs_from_the_standalone_figures(tmp_path):
    options = AnalysisOptions(grid=SMALL.grid, min_trades=5, max_open_positions=1)
    _, bots, _ = analyzed(tmp_path, options)
    check = check_portfolio(bots, options)
    assert all(b.chosen is not None and b.standalone is not None for b in bots)
    run = check.chosen
    assert run.skipped_entries > 0
    assert run.portfolio.trades == sum(m.trades for m in run.per_bot.values())
    assert run.portfolio.trades < sum(b.standalone.trades for b in bots if b.standalone)
    assert run.signals == run.portfolio.trades + run.open_positions + run.skipped_entries
    assert run.skipped_entries > run.signals / 3  # this data: 25 of 35
    assert f"skipped {run.skipped_entries} of {run.signals} signals" in (check.warning() or "")


def test_the_current_parameters_are_the_other_run(tmp_path):
    """With the chosen parameters already in the config, both runs are one; with the defaults they differ."""
    results, bots, _ = analyzed(tmp_path, SMALL, symbols=SYMBOLS[:2])
    check = check_portfolio(bots, SMALL)
    assert check.current != check.chosen
    doc = {"version": 1, "bots": {r.symbol: {r.timeframe: r.chosen} for r in results}}
    config = parse_config_bytes(json.dumps(doc).encode(), "test")
    same, _ = checked_bots(jobs_for([(s, "5m") for s in SYMBOLS[:2]], tmp_path, config), results, config)
    again = check_portfolio(same, SMALL)
    assert again.current == again.chosen == check.chosen and again.better() == "equal"
    assert check.better() == ("chosen" if check.chosen.portfolio.sharpe > check.current.portfolio.sharpe else "current")


def test_a_bot_without_a_choice_keeps_its_current_parameters_and_a_missing_one_is_left_out(tmp_path):
    write_series(tmp_path, "BTC/USDT:USDT", 2500, seed=0)
    write_series(tmp_path, "ETH/USDT:USDT", 50, seed=1)  # too short to analyze (the grid search says so)
    config = default_config()
    keys = [("BTC/USDT:USDT", "5m"), ("ETH/USDT:USDT", "5m"), ("XRP/USDT:USDT", "5m")]
    jobs = jobs_for(keys, tmp_path, config)
    bots, left_out = checked_bots(jobs, run_jobs(jobs, SMALL, None), config)
    assert [b.symbol for b in bots] == ["BTC/USDT:USDT", "ETH/USDT:USDT"]
    assert bots[1].chosen is None and bots[1].standalone is None and bots[1].segment.start == int(50 * 0.7)
    assert len(left_out) == 1 and left_out[0].startswith("XRP/USDT:USDT 5m: ")
    report = check_portfolio(bots, SMALL, left_out).as_json()
    assert report["bots"]["ETH/USDT:USDT|5m"]["params"] == "current" and report["left_out"] == left_out


def _run(trades_pnl, skipped, open_positions=0, per_bot=None):
    m = compute_metrics(trades_pnl, 1000.0, 86_400_000.0)
    return PortfolioRun(per_bot or {"A|5m": m}, m, skipped, open_positions)


def _check(run, standalone_return):
    bot = CheckedBot("A", "5m", TestSegment(1, np.zeros((1, 6)), np.zeros(1)), default_config().params_for("A", "5m"), None,
                     compute_metrics([1000.0 * standalone_return], 1000.0, 86_400_000.0))
    return PortfolioCheck((bot,), (), "sharpe", 2, 0, 1, run, run)


def test_the_warning_names_what_the_cap_cost():
    assert _check(_run([10.0, 10.0, -5.0], skipped=1), 0.015).warning() is None  # 1 of 4 skipped, +1.5 % as alone
    skipped = _check(_run([10.0, 10.0, -5.0], skipped=2), 0.015).warning()  # 2 of 5
    assert skipped is not None and "MAX_OPEN_POSITIONS=2 skipped 2 of 5 signals" in skipped and "return" not in skipped
    short = _check(_run([10.0, -5.0], skipped=0), 0.04).warning()  # +0.5 % together, +4 % alone
    assert short is not None and "+0.50% where their standalone test returns add up to +4.00%" in short
    assert "\n" not in short
