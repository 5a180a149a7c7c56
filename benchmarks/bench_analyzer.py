"""Analyzer benchmark: the whole `trading-bot analyze` process, start to written config.

    .venv/bin/python benchmarks/bench_analyzer.py        # prints a table, writes results/analyzer.json

Targets (issue #5, 2-core machine): 21 series × 100,000 candles × 270 combinations, train + test,
≤ 6 s and ≤ 400 MiB peak; one series alone ≤ 2 s. Memory is the peak of the summed proportional
set size (PSS) of the analyzer and its worker processes, sampled every 20 ms: shared pages (numba,
numpy, pandas, forked from the parent) are counted once. Also the kernel's combinations per second.
The first run after an install compiles the kernel (numba caches it on disk); the figures are for a
warm cache, as a user sees every run after the first. Medians of several runs.
"""

from __future__ import annotations

import itertools
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from bench_report import save_results

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from trading_bot.domain.timeframes import timeframe_ms  # noqa: E402
from trading_bot.marketdata.candle_csv import append_candles, cache_file_name  # noqa: E402
from trading_bot.marketdata.synthetic import synthetic_candles  # noqa: E402

SYMBOLS = ("BTC/USDT:USDT", "ETH/USDT:USDT", "SOL/USDT:USDT")
TIMEFRAMES = ("1m", "5m", "15m", "30m", "1h", "4h", "1d")
CANDLES = 100_000


def pss_kib(pid: int) -> int:
    total = 0
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                total += int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return 0
    return total + sum(pss_kib(int(child)) for child in children)


def run_analyze(work: Path, symbols: str, timeframes: str) -> tuple[float, float]:
    env = {**os.environ, "DATA_DIR": str(work / "data"), "STRATEGY_CONFIG": str(work / "config.json"),
           "TRADING_SYMBOLS": symbols, "TRADING_TIMEFRAMES": timeframes}
    peak = [0]
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "trading_bot", "analyze"], cwd=work, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def sample() -> None:
        while proc.poll() is None:
            peak[0] = max(peak[0], pss_kib(proc.pid))
            time.sleep(0.02)

    sampler = threading.Thread(target=sample)
    sampler.start()
    proc.wait()
    elapsed = time.perf_counter() - started
    sampler.join()
    if proc.returncode != 0 or not (work / "config.json").exists():
        raise RuntimeError(f"analyze failed with exit code {proc.returncode}")
    (work / "config.json").unlink()
    return elapsed, peak[0] / 1024


def kernel_rate() -> float:
    import numpy as np

    from trading_bot.backtest.analyzer import warm_kernel
    from trading_bot.backtest.kernel import simulate
    from trading_bot.backtest.reference import series_scores
    from trading_bot.domain.params import default_config
    from trading_bot.signals.scoring import signal_sides

    warm_kernel()
    candles = synthetic_candles("BTC/USDT:USDT", 300_000, 1_600_000_000_000, CANDLES, None, 5)
    scores = series_scores(candles, default_config().params_for("X/Y", "5m"))
    thresholds = np.quantile(np.abs(scores[np.isfinite(scores)]), [0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95, 0.975, 0.99])
    sides = [signal_sides(scores, float(t)) for t in thresholds]
    combos = list(itertools.product(sides, [0.005, 0.01, 0.015, 0.02, 0.025, 0.03], [1.0, 1.5, 2.0, 2.5, 3.0]))
    started = time.perf_counter()
    for s, sl, rr in combos:
        simulate(candles[:, 1], candles[:, 2], candles[:, 3], s, 0, CANDLES, sl, rr, 0.0004, 0.0002, 0.01, 5.0, 10, 1e4)
    return len(combos) / (time.perf_counter() - started)


def main() -> None:
    runs = 3
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for symbol, tf in itertools.product(SYMBOLS, TIMEFRAMES):
            append_candles(work / "data" / "candles" / cache_file_name(symbol, tf),
                           synthetic_candles(symbol, timeframe_ms(tf), 1_000_000_000_000, CANDLES, None, 5))
        run_analyze(work, SYMBOLS[0], "5m")  # warm numba's on-disk cache, as after any first run
        all_runs = [run_analyze(work, ",".join(SYMBOLS), ",".join(TIMEFRAMES)) for _ in range(runs)]
        one_runs = [run_analyze(work, SYMBOLS[0], "5m") for _ in range(runs)]
    results = {
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
        "series_21": {"seconds_median": statistics.median(r[0] for r in all_runs),
                      "peak_pss_mib_median": statistics.median(r[1] for r in all_runs), "runs": all_runs},
        "series_1": {"seconds_median": statistics.median(r[0] for r in one_runs),
                     "peak_pss_mib_median": statistics.median(r[1] for r in one_runs), "runs": one_runs},
        "kernel_combinations_per_second": kernel_rate(),
        "candles_per_series": CANDLES, "combinations_per_series": 270,
    }
    print(f"{'measure':<58} {'median':>10}  target")
    print(f"{'21 series × 100k candles × 270 combos, whole process':<58} {results['series_21']['seconds_median']:>8.2f} s  ≤ 6 s")
    peak = results["series_21"]["peak_pss_mib_median"]
    print(f"{'21 series, peak memory (PSS, all processes)':<58} {peak:>6.0f} MiB  ≤ 400 MiB")
    print(f"{'1 series alone, whole process':<58} {results['series_1']['seconds_median']:>8.2f} s  ≤ 2 s")
    print(f"{'kernel: combinations per second (100k candles each)':<58} {results['kernel_combinations_per_second']:>10.0f}")
    print(f"saved {save_results('analyzer.json', results)}")


if __name__ == "__main__":
    main()
