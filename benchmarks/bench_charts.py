"""HTML report benchmark: what the reports cost (issue 13 §4: a small VPS, one offline file).

    .venv/bin/python benchmarks/bench_charts.py          # prints a table, writes results/charts.json

Import of matplotlib (through trading_bot.reports.charts) in a fresh process; the trade report of
1,000 and 100,000 synthetic trades over 21 bots (size and time to render); the analyzer report of
21 bots on the default grid (6 stop-losses × 5 risk:rewards × 9 thresholds, random objective values,
the top thresholds short of min_trades in part, as real grids are). Medians of several runs.
"""

from __future__ import annotations

import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

from bench_report import print_table, save_results

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import numpy as np  # noqa: E402

from trading_bot.backtest.analyzer import AnalysisOptions, SeriesResult  # noqa: E402
from trading_bot.backtest.metrics import compute_metrics  # noqa: E402
from trading_bot.domain.trades import ClosedTrade  # noqa: E402

BOTS = [(s, tf) for s in ("BTC/USDT:USDT", "ETH/USDT:USDT", "SOL/USDT:USDT")
        for tf in ("1m", "3m", "5m", "15m", "30m", "1h", "4h")]


def import_seconds(runs: int = 3) -> float:
    code = "import time; t = time.perf_counter(); import trading_bot.reports.charts; print(time.perf_counter() - t)"
    env = {"PYTHONPATH": str(ROOT / "src")}
    return statistics.median(float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                                  check=True, env=env).stdout) for _ in range(runs))


def trades(count: int) -> list[ClosedTrade]:
    rng = random.Random(1)
    out, ts = [], 1_700_000_000_000
    for k in range(count):
        symbol, timeframe = BOTS[k % len(BOTS)]
        ts += rng.randint(60_000, 3_600_000)
        pnl = rng.gauss(2.0, 40.0)
        out.append(ClosedTrade(symbol, timeframe, rng.choice((1, -1)), 0.1, 30_000.0, ts - 600_000, ts - 660_000,
                               30_100.0, ts, rng.choice(("stop", "target")), 1.2, 1.2, pnl + 2.4, pnl,
                               rng.gauss(0.0, 0.5)))
    return out


def analyzer_results(options: AnalysisOptions) -> list[SeriesResult]:
    rng = np.random.default_rng(0)
    results = []
    for symbol, timeframe in BOTS:
        surface = rng.normal(0.5, 1.0, (9, len(options.grid.sl), len(options.grid.rr)))
        surface[7:, :2, :] = np.nan
        t, i, j = np.unravel_index(np.nanargmax(surface), surface.shape)
        thresholds = [float(x) for x in np.linspace(0.1, 0.5, 9)]
        metrics = compute_metrics(rng.normal(1.0, 10.0, 200), 10_000.0, 86_400_000.0 * 90).as_json()
        results.append(SeriesResult(symbol, timeframe, 100_000, 1_700_000_000_000, 1_706_000_000_000,
                                    chosen={"threshold": thresholds[t], "sl_pct": options.grid.sl[i],
                                            "rr_ratio": options.grid.rr[j]},
                                    train=metrics, test=metrics, thresholds=thresholds, surface=surface))
    return results


def timed(render, runs: int) -> tuple[float, int]:
    seconds, size = [], 0
    for _ in range(runs):
        started = time.perf_counter()
        size = len(render().encode())
        seconds.append(time.perf_counter() - started)
    return statistics.median(seconds), size


def main() -> None:
    from trading_bot.reports.analyzer_report import render_analyzer_report
    from trading_bot.reports.journal_report import ReportSource, render_trade_report

    source = ReportSource("Trade report", "benchmark")
    results: dict[str, dict[str, float]] = {"import_matplotlib_s": {"median": import_seconds()}}
    for count in (1_000, 100_000):
        journal = trades(count)
        s, size = timed(lambda j=journal: render_trade_report(j, 10_000.0, source), 3)
        results[f"trade_report_{count}"] = {"seconds": s, "kb": size / 1024}
    options = AnalysisOptions()
    bots = analyzer_results(options)
    s, size = timed(lambda: render_analyzer_report(bots, options), 1)
    results["analyzer_report_21_bots_270_cells"] = {"seconds": s, "kb": size / 1024}
    rows = [("import matplotlib (reports.charts), fresh process", f"{results['import_matplotlib_s']['median']:.2f} s", "")]
    for name, value in results.items():
        if "kb" in value:
            rows.append((name.replace("_", " "), f"{value['seconds']:.2f} s, {value['kb']:.0f} KB", ""))
    print_table(rows)
    print(f"wrote {save_results('charts.json', results)}")


if __name__ == "__main__":
    main()
