"""Portfolio backtest benchmark: every bot on one wallet, under one cap, in the daemon's order of events.

    .venv/bin/python benchmarks/bench_portfolio.py       # prints a table, writes results/portfolio.json

Target (issue 11 §2, 2-core machine): 21 series × 100,000 synthetic candles within a few seconds, with
the default cap (MAX_OPEN_POSITIONS=10, which binds) and a small one. Scoring (features and the
weighted score of every candle) is timed apart from the event loop. Medians of several runs.

Also with the account rules on and with funding (the default rate: no history cached). 100,000 1d
candles are 274 years, so funding there books ~300,000 moments; the realistic row gives every series
the same 69 days (100,000 1m candles, 20,000 5m …; at least the 210 candles a series needs to
warm up), as cached history would be.
"""

from __future__ import annotations

import itertools
import os
import statistics
import sys
import time
from pathlib import Path

from bench_report import save_results

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from trading_bot.backtest.portfolio import PortfolioSeries, backtest_portfolio  # noqa: E402
from trading_bot.backtest.reference import series_scores  # noqa: E402
from trading_bot.domain.funding_settlement import FundingSettlement  # noqa: E402
from trading_bot.domain.params import default_config  # noqa: E402
from trading_bot.domain.protections import ProtectionLimits  # noqa: E402
from trading_bot.domain.sizing import RiskLimits  # noqa: E402
from trading_bot.domain.timeframes import timeframe_ms  # noqa: E402
from trading_bot.domain.trades import Costs  # noqa: E402
from trading_bot.marketdata.synthetic import synthetic_candles  # noqa: E402

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
    protections = ProtectionLimits(daily_loss_limit=0.03, max_drawdown=0.5, cooldown_stopouts=3, cooldown_candles=12)
    cases = {"cap_10": (10, None, False), "cap_2": (2, None, False), "cap_10_rules": (10, protections, False),
             "cap_10_funding": (10, None, True)}
    for name, (cap, rules, with_funding) in cases.items():
        figures[name] = _timed(series, start_ms, cap, rules, with_funding, runs)
    same_span = _same_span_series(config)
    same_start = min(int(s.candles[min(WARMUP, s.candles.shape[0] - 1), 0]) + timeframe_ms(s.timeframe)
                     for s in same_span)
    figures["same_69_days_funding"] = _timed(same_span, same_start, 10, None, True, runs)
    traded = sum(int((c[:, 0] + timeframe_ms(tf) > start_ms).sum()) for (_, tf), c in history.items())
    results = {"machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
               "series": len(series), "candles_per_series": CANDLES, "candles_traded": traded,
               "scoring_seconds": scoring_s, **figures}
    print(f"{'measure':<78} {'median':>9}  target")
    print(f"{'scoring 21 series × 100k candles (features + score)':<78} {scoring_s:>7.2f} s")
    labels = {"cap_10": "MAX_OPEN_POSITIONS=10", "cap_2": "MAX_OPEN_POSITIONS=2",
              "cap_10_rules": "cap 10, account rules on", "cap_10_funding": "cap 10, funding (274 years of 1d)",
              "same_69_days_funding": "cap 10, funding, series of 69 days (≥ 210 candles)"}
    for name, text in labels.items():
        f = figures[name]
        label = f"portfolio backtest, {text} ({f['trades']} trades, {f['skipped_entries']} skipped)"
        print(f"{label:<78} {f['seconds_median']:>7.2f} s  a few s")
    print(f"{'total, cap 10 (scoring + backtest)':<78} {scoring_s + float(figures['cap_10']['seconds_median']):>7.2f} s")
    save_results("portfolio.json", results)


def _timed(series: list[PortfolioSeries], start_ms: int, cap: int, rules: ProtectionLimits | None,
           with_funding: bool, runs: int) -> dict[str, float | int]:
    limits = RiskLimits(0.01, 5.0, cap)
    times, result = [], None
    for _ in range(runs):
        funding = FundingSettlement({}) if with_funding else None
        started = time.perf_counter()
        result = backtest_portfolio(series, Costs(0.0004, 0.0002), limits, 10_000.0, start_ms, rules, funding)
        times.append(time.perf_counter() - started)
    assert result is not None
    return {"seconds_median": statistics.median(times), "trades": len(result.trades),
            "skipped_entries": result.skipped_entries, "funding": result.wallet.funding,
            "refused_by_rules": sum(result.refused.values())}


def _same_span_series(config) -> list[PortfolioSeries]:
    span_ms = CANDLES * 60_000
    out = []
    for s, tf in itertools.product(SYMBOLS, TIMEFRAMES):
        count = max(WARMUP + 10, span_ms // timeframe_ms(tf))
        c = synthetic_candles(s, timeframe_ms(tf), 1_000_000_000_000, count, None, 5)
        out.append(PortfolioSeries(s, tf, c, config.params_for(s, tf), series_scores(c, config.params_for(s, tf))))
    return out


if __name__ == "__main__":
    main()
