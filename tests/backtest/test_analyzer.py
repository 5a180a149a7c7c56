"""The analyzer: the split never leaks, the config is rewritten atomically keeping other bots, the
CLI end to end, and results independent of the worker count."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from conftest import subprocess_env
from trading_bot.backtest.analyzer import AnalysisOptions, Grid, SeriesJob, analyze_series, parse_range, run_jobs
from trading_bot.marketdata.candle_csv import append_candles, cache_file_name
from trading_bot.marketdata.synthetic import synthetic_candles
from trading_bot.persistence.strategy_config_file import load_config, write_config

SMALL = AnalysisOptions(grid=Grid(sl=(0.005, 0.01), rr=(1.0, 2.0)), min_trades=5)


def write_series(directory, symbol, timeframe, count, seed=3):
    candles = synthetic_candles(symbol, 300_000, 1_700_000_000_000, count, None, seed)
    path = directory / cache_file_name(symbol, timeframe)
    append_candles(path, candles)
    return path, candles


def test_parse_range():
    assert parse_range("0.005:0.03:0.005", "--sl") == (0.005, 0.01, 0.015, 0.02, 0.025, 0.03)
    assert parse_range("1:3:0.5", "--rr") == (1.0, 1.5, 2.0, 2.5, 3.0)
    assert parse_range("0.1,0.2", "--thresholds") == (0.1, 0.2)
    with pytest.raises(ValueError, match="--sl"):
        parse_range("a:b", "--sl")
    with pytest.raises(ValueError, match="positive"):
        parse_range("-1,2", "--rr")


def test_default_grid_is_270():
    assert Grid().size == 270


def test_the_test_segment_never_influences_the_choice(tmp_path):
    """Two histories with the same training part and opposite test parts: the choice is identical,
    only the reported test metrics differ."""
    base = synthetic_candles("BTC/USDT:USDT", 300_000, 1_700_000_000_000, 6000, None, 11)
    other = base.copy()
    split = int(len(base) * 0.7)
    # Mirror the later prices: whatever did well there now does badly, and vice versa.
    pivot = base[split - 1, 4]
    other[split:, 1:5] = pivot * pivot / base[split:, 1:5]
    other[split:, 2], other[split:, 3] = other[split:, 3].copy(), other[split:, 2].copy()
    a = tmp_path / "a.csv"
    b = tmp_path / "b.csv"
    append_candles(a, base)
    append_candles(b, other)
    weights = (0.25, 0.25, 0.2, 0.15, 0.15)
    ra = analyze_series(SeriesJob("BTC/USDT:USDT", "5m", str(a), weights), SMALL)
    rb = analyze_series(SeriesJob("BTC/USDT:USDT", "5m", str(b), weights), SMALL)
    assert ra.chosen is not None and ra.chosen == rb.chosen and ra.thresholds == rb.thresholds
    assert ra.train == rb.train
    assert ra.test != rb.test


def test_walk_forward_folds(tmp_path):
    path, _ = write_series(tmp_path, "ETH/USDT:USDT", "5m", 6000)
    result = analyze_series(SeriesJob("ETH/USDT:USDT", "5m", str(path), (0.25, 0.25, 0.2, 0.15, 0.15)),
                            AnalysisOptions(grid=SMALL.grid, min_trades=3, folds=3))
    assert len(result.folds) == 3
    assert [f["train_candles"] for f in result.folds] == [1500, 3000, 4500]
    assert [f["test_candles"] for f in result.folds] == [1500, 1500, 1500]


WORKER_COUNT_CHECK = """
import json, sys
from trading_bot.backtest.analyzer import AnalysisOptions, Grid, SeriesJob, make_executor, run_jobs
options = AnalysisOptions(grid=Grid(sl=(0.005, 0.01), rr=(1.0, 2.0)), min_trades=5)
jobs = [SeriesJob(symbol, "5m", path, (0.25, 0.25, 0.2, 0.15, 0.15)) for symbol, path in json.loads(sys.argv[1])]
serial = run_jobs(jobs, options, None)
executor = make_executor(2)
try:
    parallel = run_jobs(list(reversed(jobs)), options, executor)
finally:
    executor.shutdown()
print(json.dumps([[{k: v for k, v in r.as_json().items() if k != "seconds"} for r in rs] for rs in (serial, parallel)]))
"""


def test_results_do_not_depend_on_the_worker_count(tmp_path):
    # In a process of its own, as the analyzer runs: its pool forks, and a fork of a test worker (with
    # pytest-xdist's threads in it) could inherit a lock held by one of them and wait on it for good.
    series = []
    for i, symbol in enumerate(("BTC/USDT:USDT", "ETH/USDT:USDT", "SOL/USDT:USDT")):
        path, _ = write_series(tmp_path, symbol, "5m", 3000, seed=i)
        series.append((symbol, str(path)))
    child = subprocess.run([sys.executable, "-c", WORKER_COUNT_CHECK, json.dumps(series)], capture_output=True,
                           text=True, timeout=300, env=subprocess_env(tmp_path))
    assert child.returncode == 0, child.stderr[-3000:]
    serial, parallel = json.loads(child.stdout)
    assert len(serial) == 3 and serial == parallel


@pytest.mark.slow
def test_cli_end_to_end_rewrites_the_config_keeping_other_bots(tmp_path):
    env = subprocess_env(tmp_path, TRADING_SYMBOLS="BTC/USDT:USDT", TRADING_TIMEFRAMES="5m,1h")
    candles_dir = tmp_path / "data" / "candles"
    write_series(candles_dir, "BTC/USDT:USDT", "5m", 5000)
    write_series(candles_dir, "BTC/USDT:USDT", "1h", 5000, seed=4)
    config_path = tmp_path / "config" / "strategy_config.json"
    write_config(config_path, {"version": 1, "bots": {"DOGE/USDT:USDT": {"1m": {"threshold": 0.42}}}})
    result = subprocess.run([sys.executable, "-m", "trading_bot", "analyze", "--sl", "0.005,0.01", "--rr", "1,2",
                             "--min-trades", "5", "--json", "--workers", "1"], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    table = json.loads(result.stdout)
    assert [r["timeframe"] for r in table["results"]] == ["1h", "5m"] and table["grid_size"] == 36
    doc = json.loads(config_path.read_text())
    assert doc["bots"]["DOGE/USDT:USDT"]["1m"]["threshold"] == 0.42  # untouched
    entry = doc["bots"]["BTC/USDT:USDT"]["5m"]
    assert {"threshold", "sl_pct", "rr_ratio", "weights", "metrics", "provenance"} <= set(entry)
    assert entry["provenance"]["candles"] == 5000 and entry["metrics"]["train"]["trades"] >= 5
    assert load_config(config_path, [("BTC/USDT:USDT", "5m")]).params_for("BTC/USDT:USDT", "5m").sl_pct in (0.005, 0.01)
    assert list(config_path.parent.iterdir()) == [config_path]  # no temp file left behind


@pytest.mark.slow
def test_cli_dry_run_writes_nothing_and_bad_arguments_exit_2(tmp_path):
    env = subprocess_env(tmp_path, TRADING_SYMBOLS="BTC/USDT:USDT", TRADING_TIMEFRAMES="5m")
    write_series(tmp_path / "data" / "candles", "BTC/USDT:USDT", "5m", 3000)
    dry = subprocess.run([sys.executable, "-m", "trading_bot", "analyze", "--dry-run", "--sl", "0.01", "--rr", "2",
                          "--min-trades", "3"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert dry.returncode == 0, dry.stderr
    assert "BTC/USDT:USDT 5m" in dry.stdout and not (tmp_path / "config").exists()
    for args, message in ((["--train", "2"], "--train"), (["--sl", "x"], "--sl"), (["--objective", "luck"], "--objective")):
        bad = subprocess.run([sys.executable, "-m", "trading_bot", "analyze", *args], cwd=tmp_path, env=env,
                             capture_output=True, text=True, timeout=60)
        assert bad.returncode == 2 and message in bad.stderr and "Traceback" not in bad.stderr
    empty = subprocess.run([sys.executable, "-m", "trading_bot", "analyze"], cwd=tmp_path,
                           env={**env, "TRADING_SYMBOLS": "XRP/USDT:USDT"}, capture_output=True, text=True, timeout=60)
    assert empty.returncode == 2 and "trading-bot fetch" in empty.stderr
    assert empty.stderr.startswith("trading-bot: error: ") and empty.stderr.count("\n") == 1  # one line, no traceback


def test_the_same_jobs_run_on_a_dask_cluster(tmp_path):
    from distributed import Client, LocalCluster

    jobs = []
    for i, symbol in enumerate(("BTC/USDT:USDT", "ETH/USDT:USDT")):
        path, _ = write_series(tmp_path, symbol, "5m", 3000, seed=i)
        jobs.append(SeriesJob(symbol, "5m", str(path), (0.25, 0.25, 0.2, 0.15, 0.15)))
    serial = run_jobs(jobs, SMALL, None)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        on_dask = run_jobs(jobs, SMALL, client.get_executor())
    strip = [{k: v for k, v in r.as_json().items() if k != "seconds"} for r in serial]
    assert strip == [{k: v for k, v in r.as_json().items() if k != "seconds"} for r in on_dask]


@pytest.mark.slow
def test_cli_dask_address_that_does_not_answer_is_one_line(tmp_path):
    env = subprocess_env(tmp_path, TRADING_SYMBOLS="BTC/USDT:USDT", TRADING_TIMEFRAMES="5m")
    write_series(tmp_path / "data" / "candles", "BTC/USDT:USDT", "5m", 3000)
    result = subprocess.run([sys.executable, "-m", "trading_bot", "analyze", "--dask", "tcp://127.0.0.1:9",
                             "--dask-timeout", "1"],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "cannot reach the Dask scheduler" in result.stderr
    assert "Traceback" not in result.stderr
