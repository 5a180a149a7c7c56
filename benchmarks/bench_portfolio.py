"""Portfolio backtest benchmark: every bot on one wallet, under one cap, in the daemon's order of events.

    .venv/bin/python benchmarks/bench_portfolio.py       # prints a table, writes results/portfolio.json

Target (issue 11 §2, 2-core machine): 21 series × 100,000 synthetic candles within a few seconds, with
the default cap (MAX_OPEN_POSITIONS=10, which binds) and a small one. Scoring (features and the
weighted score of every candle) is timed apart from the event loop. Medians of several runs.
"""

from __future__ import annotations

import itertools
import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from trading_bot.backtest.portfolio import PortfolioSeries, backtest_portfolio  # noqa: E402
from trading_bot.backtest.reference import series_scores  # noqa: E402
from trading_bot.domain.params import default_config  # noqa: E402
from trading_bot.domain.sizing import RiskLimits  # noqa: E402
from trading_bot.domain.timeframes import timeframe_ms  # noqa: E402
from trading_bot.domain.trades import Costs  # noqa: E402
from trading_bot.marketdata.synthetic import synthetic_candles  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
SYMBOLS = ("BTC/USDT:USDT", "ETH/USDT:USDT", "SOL/USDT:USDT")
TIMEFRAMES = ("1m", "5m", "15m", "30m", "1h", "4h", "1d")
CANDLES = 100_000
WARMUP = 200


def main() -> None:
    runs = 3
    config = default_config()
    history = {(s, tf): synthetic_candles(s, timeframe_ms(tf), 1_000_000_000_000, CANDLES, None, 5)
               for s, tf in itertools.product(SYMBOLS, TIMEFRAMES)}
    t0 = time.perf_counter()
    series = [PortfolioSeries(s, tf, c, config.params_for(s, tf), series_scores(c, config.params_for(s, tf)))
              for (s, tf), c in history.items()]
    scoring_s = time.perf_counter() - t0
    # Every series opens at the same time; trading starts once the shortest timeframe is warm, so every
    # candle after it is traded (a longer series scores NaN, never signalling, until it is warm too).
    start_ms = min(int(c[WARMUP, 0]) + timeframe_ms(tf) for (_, tf), c in history.items())
    figures: dict[str, dict[str, float | int]] = {}
    for cap in (10, 2):
        limits = RiskLimits(0.01, 5.0, cap)
        times, result = [], None
        for _ in range(runs):
            started = time.perf_counter()
            result = backtest_portfolio(series, Costs(0.0004, 0.0002), limits, 10_000.0, start_ms)
            times.append(time.perf_counter() - started)
        assert result is not None
        figures[f"cap_{cap}"] = {"seconds_median": statistics.median(times), "trades": len(result.trades),
                                 "skipped_entries": result.skipped_entries}
    traded = sum(int((c[:, 0] + timeframe_ms(tf) > start_ms).sum()) for (_, tf), c in history.items())
    results = {"machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
               "series": len(series), "candles_per_series": CANDLES, "candles_traded": traded,
               "scoring_seconds": scoring_s, **figures}
    print(f"{'measure':<72} {'median':>9}  target")
    print(f"{'scoring 21 series × 100k candles (features + score)':<72} {scoring_s:>7.2f} s")
    for cap in (10, 2):
        f = figures[f"cap_{cap}"]
        label = f"portfolio backtest, MAX_OPEN_POSITIONS={cap} ({f['trades']} trades, {f['skipped_entries']} skipped)"
        print(f"{label:<72} {f['seconds_median']:>7.2f} s  a few s")
    print(f"{'total, cap 10 (scoring + backtest)':<72} {scoring_s + float(figures['cap_10']['seconds_median']):>7.2f} s")
    RESULTS.mkdir(parents=True, exist_ok=True)
    tmp = RESULTS / "portfolio.json.tmp"
    tmp.write_text(json.dumps(results, indent=2) + "\n")
    tmp.replace(RESULTS / "portfolio.json")


if __name__ == "__main__":
    main()
