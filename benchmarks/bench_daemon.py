"""Daemon core benchmark: start-to-ready, heartbeat compute and memory for 21 and 500 bots.

    .venv/bin/python benchmarks/bench_daemon.py            # prints a table, writes results/daemon.json

Targets (issue #2, 2-core machine): 21 bots on a warm cache of 1000 candles: ready ≤ 1.0 s,
heartbeat without a new candle ≤ 5 ms, with a new candle on every series ≤ 50 ms, RSS ≤ 180 MiB;
504 bots (72 symbols × 7 timeframes): heartbeat with a new candle on every series ≤ 1 s, RSS ≤ 260 MiB.
Each scenario runs in a fresh process so its memory is its own. Figures are medians.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_report import print_table, save_results

ROOT = Path(__file__).resolve().parents[1]
TIMEFRAMES = ("1m", "5m", "15m", "30m", "1h", "4h", "1d")
DEFAULT_SYMBOLS = ("BTC/USDT:USDT", "ETH/USDT:USDT", "SOL/USDT:USDT")


def rss_mib() -> tuple[float, float]:
    """(current, peak) resident memory of this process in MiB."""
    fields = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        fields[key] = value.strip()
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


def symbols_for(bots: int) -> tuple[str, ...]:
    if bots <= 21:
        return DEFAULT_SYMBOLS
    return tuple(f"SYM{i:02d}/USDT:USDT" for i in range(bots // len(TIMEFRAMES)))


def write_warm_cache(directory: Path, symbols: tuple[str, ...], candles: int = 1000) -> None:
    """Fresh caches (last candle = the last closed one) so no fetch is due at start."""
    sys.path.insert(0, str(ROOT / "src"))
    from trading_bot.domain.timeframes import last_closed_open_ms, timeframe_ms
    from trading_bot.marketdata.candle_csv import append_candles, cache_file_name
    from trading_bot.marketdata.synthetic import synthetic_candles

    now = int(time.time() * 1000) + 120_000  # still fresh if a minute turns during the run
    for symbol in symbols:
        for tf in TIMEFRAMES:
            tf_ms = timeframe_ms(tf)
            last = last_closed_open_ms(now, tf_ms)
            append_candles(directory / cache_file_name(symbol, tf), synthetic_candles(symbol, tf_ms, last - (candles - 1) * tf_ms,
                                                                                      candles, None, 1))


# --- scenario: process start to "ready" ----------------------------------------------------------


def start_to_ready(market_data: str, runs: int) -> dict[str, float]:
    times = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        cache = work / "data" / ("synthetic" if market_data == "synthetic" else "candles")
        write_warm_cache(cache, DEFAULT_SYMBOLS)
        env = {k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "JOURNAL_STREAM")}
        env.update(MARKET_DATA=market_data, DATA_DIR=str(work / "data"), HEARTBEAT_SECONDS="0.05",
                   STRATEGY_CONFIG=str(work / "none.json"))
        for _ in range(runs):
            started = time.perf_counter()
            proc = subprocess.Popen([sys.executable, "-m", "trading_bot", "run", "--cycles", "1"], cwd=work, env=env,
                                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            assert proc.stdout is not None
            ready_at = None
            for line in proc.stdout:
                if ready_at is None and " ready: " in line:
                    ready_at = time.perf_counter() - started
            proc.wait()
            if ready_at is None or proc.returncode != 0:
                raise RuntimeError(f"no ready line (exit {proc.returncode})")
            times.append(ready_at)
    return {"ready_s_median": statistics.median(times), "ready_s_min": min(times), "ready_s_max": max(times),
            "runs": runs}


# --- scenario: heartbeats in-process --------------------------------------------------------------


async def heartbeats(bots: int, ticks: int) -> dict[str, float]:
    sys.path.insert(0, str(ROOT / "src"))
    from trading_bot.engine.clock import ReplayClock
    from trading_bot.engine.daemon import Daemon
    from trading_bot.marketdata.sources import FetchResult, SyntheticSource
    from trading_bot.marketdata.synthetic import synthetic_candles
    from trading_bot.settings import Settings

    class OneCandlePerFetch(SyntheticSource):
        """Every fetch yields exactly the next candle, whatever the clock says: a new candle on
        every series each tick."""

        async def fetch(self, symbol, timeframe, tf_ms, since_ms, now_ms, limit, last_close):
            if since_ms is None:
                return await super().fetch(symbol, timeframe, tf_ms, since_ms, now_ms, limit, last_close)
            candle = synthetic_candles(symbol, tf_ms, since_ms, 1, last_close, self.seed)
            return FetchResult(candle, float(candle[-1, 4]), since_ms + tf_ms)

    symbols = symbols_for(bots)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        settings = Settings(symbols=symbols, timeframes=TIMEFRAMES, data_dir=work / "data",
                            strategy_config=work / "none.json", market_data="synthetic", max_open_positions=10_000)
        write_warm_cache(settings.synthetic_dir, symbols)
        day = 86_400_000
        start = (int(time.time() * 1000) // day) * day + 1_000
        clock = ReplayClock(start)
        clock.simulated = False  # behave like the wall clock: status and heartbeat line every tick
        daemon = Daemon(settings, clock=clock, source=OneCandlePerFetch(settings.synthetic_seed), install_signals=False)
        t0 = time.perf_counter()
        await daemon.start()
        startup_s = time.perf_counter() - t0
        quiet_compute, quiet_cycle, busy_compute, busy_cycle = [], [], [], []
        for _ in range(ticks):
            clock._now += 1  # nothing closes: the steady state between candles
            await daemon.tick()
            quiet_compute.append(daemon.figures.compute_ms)
            quiet_cycle.append(daemon.figures.cycle_ms)
        for _ in range(ticks):
            clock._now += day  # every series is due; each gets exactly one new candle
            await daemon.tick()
            assert daemon.figures.new_candles == len(daemon.settings.bot_keys), daemon.figures.new_candles
            busy_compute.append(daemon.figures.compute_ms)
            busy_cycle.append(daemon.figures.cycle_ms)
        current, peak = rss_mib()
        trades = daemon.parts.broker.wallet.trades
        await daemon.shutdown()
    return {
        "bots": len(daemon.settings.bot_keys), "startup_in_process_s": startup_s,
        "quiet_compute_ms_median": statistics.median(quiet_compute), "quiet_cycle_ms_median": statistics.median(quiet_cycle),
        "busy_compute_ms_median": statistics.median(busy_compute), "busy_cycle_ms_median": statistics.median(busy_cycle),
        "busy_compute_ms_max": max(busy_compute), "rss_mib": current, "peak_rss_mib": peak, "ticks": ticks,
        "paper_trades": trades,
    }


def run_child(args: list[str]) -> dict:
    out = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--child", choices=["heartbeats"], help=argparse.SUPPRESS)
    parser.add_argument("--bots", type=int, default=21)
    parser.add_argument("--ticks", type=int, default=30)
    parser.add_argument("--runs", type=int, default=7, help="start-to-ready repetitions")
    args = parser.parse_args()
    if args.child == "heartbeats":
        import logging

        logging.disable(logging.INFO)
        print(json.dumps(asyncio.run(heartbeats(args.bots, args.ticks))))
        return

    results = {
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
        "start_to_ready_synthetic": start_to_ready("synthetic", args.runs),
        "start_to_ready_exchange_cache": start_to_ready("auto", args.runs),
        "heartbeat_21": run_child(["--child", "heartbeats", "--bots", "21", "--ticks", str(args.ticks)]),
        "heartbeat_504": run_child(["--child", "heartbeats", "--bots", "504", "--ticks", str(max(5, args.ticks // 3))]),
    }
    h21, h504 = results["heartbeat_21"], results["heartbeat_504"]
    rows = [
        ("21 bots: start → ready (synthetic cache)", f"{results['start_to_ready_synthetic']['ready_s_median']:.3f} s", "≤ 1.0 s"),
        ("21 bots: start → ready (exchange cache)", f"{results['start_to_ready_exchange_cache']['ready_s_median']:.3f} s",
         "≤ 1.0 s"),
        ("21 bots: heartbeat compute, no new candle", f"{h21['quiet_compute_ms_median']:.3f} ms", "≤ 5 ms"),
        ("21 bots: whole tick (state, config check), no new candle", f"{h21['quiet_cycle_ms_median']:.3f} ms", ""),
        ("21 bots: heartbeat compute, new candle everywhere", f"{h21['busy_compute_ms_median']:.2f} ms", "≤ 50 ms"),
        ("21 bots: whole tick (journal, state save), new candles", f"{h21['busy_cycle_ms_median']:.2f} ms", ""),
        ("21 bots: peak RSS", f"{h21['peak_rss_mib']:.0f} MiB", "≤ 180 MiB"),
        ("504 bots: heartbeat compute, new candle everywhere", f"{h504['busy_compute_ms_median']:.0f} ms", "≤ 1000 ms"),
        ("504 bots: whole tick (journal, state save), new candles", f"{h504['busy_cycle_ms_median']:.0f} ms", ""),
        ("504 bots: heartbeat compute, no new candle", f"{h504['quiet_compute_ms_median']:.2f} ms", ""),
        ("504 bots: peak RSS", f"{h504['peak_rss_mib']:.0f} MiB", "≤ 260 MiB"),
    ]
    print_table(rows)
    print(f"saved {save_results('daemon.json', results)}")


if __name__ == "__main__":
    main()
