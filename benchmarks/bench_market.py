"""The whole Binance USDⓈ-M market in one process: 400 symbols × 7 timeframes = 2,800 paper bots.

    PYTHONPATH=src .venv/bin/python benchmarks/bench_market.py        # table + results/market.json
    PYTHONPATH=src .venv/bin/python benchmarks/bench_market.py --profile ready|hour   # cProfile top 30

Targets (issue #12, 2-core machine, synthetic market, warm cache of 1000 candles per series):
process start → ready ≤ 3 s, peak RSS ≤ 400 MiB, every bot decided within 1 s of its close at the
top of the hour (1m, 5m, 15m, 30m and 1h close together: 2,000 series), CPU < 25 % of one core
between closes (the idle heartbeats every HEARTBEAT_SECONDS).

How: each run is a fresh process (its memory is its own) on a copy of one warm cache written for a
chosen instant. The daemon gets a ReplayClock that the benchmark moves by hand (`simulated = False`:
status.json and the heartbeat line every tick, as on the wall clock) and the real SyntheticSource,
so a tick at a chosen instant fetches exactly the candles that closed by then. The sequence, with
H a top of the hour that is no 4h close: start at H − 4 min + 0.1 s → 5 idle heartbeats (5 s apart)
→ three ticks with only 1m due (H − 3, −2, −1 min, + 0.1 s; 400 new candles) → H + 0.1 s (2,000).
"ready" is timed by the parent from the child's start (interpreter, imports, Daemon.start()). The
warm cache holds each CSV's binary copy (marketdata/candle_binary.py), as a daemon that ran before
leaves it; the "first start" runs delete the copies first (the CSVs are parsed, as before the copies
existed, and the idle heartbeats write copies).
Profiles and their findings: results/market_profile.md. Figures are medians; the machine is shared.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_report import print_table, save_results

ROOT = Path(__file__).resolve().parents[1]
TIMEFRAMES = ("1m", "5m", "15m", "30m", "1h", "4h", "1d")
SYMBOLS = tuple(f"S{i:03d}/USDT:USDT" for i in range(1, 401))
MINUTE = 60_000
HOUR = 3_600_000
DAY = 86_400_000
GRACE_MS = 100  # the live clock wakes 100 ms after a close (engine/clock.py CLOSE_GRACE_MS)
IDLE_TICKS = 5
HEARTBEAT_S = 5.0  # Settings.heartbeat_seconds' default


def top_of_hour() -> int:
    """02:00 UTC yesterday: a 1h close that is not a 4h or 1d close, nor a funding time."""
    return (int(time.time() * 1000) // DAY) * DAY - DAY + 2 * HOUR


def start_ms() -> int:
    return top_of_hour() - 4 * MINUTE + GRACE_MS


def rss_mib() -> tuple[float, float]:
    """(current, peak) resident memory of this process in MiB (/proc/self/status)."""
    fields = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        fields[key] = value.strip()
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


def settings_for(work: Path):  # -> Settings (imported late: the worktree's code)
    from trading_bot.settings import Settings

    return Settings(symbols=SYMBOLS, timeframes=TIMEFRAMES, data_dir=work / "data",
                    strategy_config=work / "none.json", market_data="synthetic", max_open_positions=10_000)


def write_warm_cache(work: Path, candles: int = 1000) -> None:
    """Every series ends at its last closed candle as of start_ms(): nothing is due at start."""
    from trading_bot.domain.timeframes import last_closed_open_ms, timeframe_ms
    from trading_bot.marketdata.candle_binary import renew_copy
    from trading_bot.marketdata.candle_csv import append_candles, cache_file_name
    from trading_bot.marketdata.synthetic import synthetic_candles

    settings = settings_for(work)
    now = start_ms()
    for symbol in SYMBOLS:
        for tf in TIMEFRAMES:
            tf_ms = timeframe_ms(tf)
            first = last_closed_open_ms(now, tf_ms) - (candles - 1) * tf_ms
            path = settings.synthetic_dir / cache_file_name(symbol, tf)
            append_candles(path, synthetic_candles(symbol, tf_ms, first, candles, None, settings.synthetic_seed))
            assert renew_copy(path, settings.history_candles)


# --- the child: one run ---------------------------------------------------------------------------


async def one_run(work: Path, profile: str | None) -> dict[str, object]:
    from trading_bot.engine.clock import ReplayClock
    from trading_bot.engine.daemon import Daemon
    from trading_bot.marketdata.sources import SyntheticSource

    settings = settings_for(work)
    clock = ReplayClock(start_ms())
    clock.simulated = False  # behave like the wall clock: status and heartbeat line every tick
    daemon = Daemon(settings, clock=clock, source=SyntheticSource(settings.synthetic_seed), install_signals=False)
    profiler = _profiler() if profile == "ready" else None
    await daemon.start()
    if profiler is not None:
        _report(profiler)
    print("READY", flush=True)
    ready_rss = rss_mib()[0]
    mdm = daemon.parts.mdm

    async def tick_at(at_ms: int) -> tuple[float, float, float, float, int]:
        """(compute ms, cycle ms, whole tick ms, CPU ms) of one tick at the instant, and its new candles."""
        clock._now = at_ms
        wall, cpu = time.perf_counter(), time.process_time()
        await daemon.tick()
        mdm.next_due_ms()  # the loop asks this after every tick
        f = daemon.figures
        return (f.compute_ms, f.cycle_ms, (time.perf_counter() - wall) * 1000, (time.process_time() - cpu) * 1000,
                f.new_candles)

    start = start_ms()
    idle = [await tick_at(start + int(k * HEARTBEAT_S * 1000)) for k in range(1, IDLE_TICKS + 1)]
    assert all(t[4] == 0 for t in idle), idle
    hour = top_of_hour()
    minute = [await tick_at(hour - m * MINUTE + GRACE_MS) for m in (3, 2, 1)]
    assert all(t[4] == len(SYMBOLS) for t in minute), minute
    profiler = _profiler() if profile == "hour" else None
    top = await tick_at(hour + GRACE_MS)
    if profiler is not None:
        _report(profiler)
    assert top[4] == 5 * len(SYMBOLS), top
    current, peak = rss_mib()
    trades = daemon.parts.broker.wallet.trades
    await daemon.shutdown()
    idle_cpu = statistics.median(t[3] for t in idle)
    return {
        "bots": len(settings.bot_keys), "ready_rss_mib": ready_rss,
        "idle_tick_ms": statistics.median(t[2] for t in idle), "idle_cpu_ms": idle_cpu,
        "idle_cpu_pct_of_core": 100 * idle_cpu / (HEARTBEAT_S * 1000),
        "minute_compute_ms": statistics.median(t[0] for t in minute),
        "minute_tick_ms": statistics.median(t[2] for t in minute),
        "hour_compute_ms": top[0], "hour_cycle_ms": top[1], "hour_tick_ms": top[2],
        "rss_mib": current, "peak_rss_mib": peak, "paper_trades": trades,
    }


def _profiler():
    import cProfile

    profiler = cProfile.Profile()
    profiler.enable()
    return profiler


def _report(profiler) -> None:
    import pstats

    profiler.disable()
    for order in ("tottime", "cumulative"):
        pstats.Stats(profiler, stream=sys.stderr).sort_stats(order).print_stats(30)


# --- the parent -----------------------------------------------------------------------------------


def run_once(base: Path, profile: str | None = None, copies: bool = True) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp) / "run"
        shutil.copytree(base, work)
        if not copies:
            for copy in work.rglob("*.csv.bin"):
                copy.unlink()
        started = time.perf_counter()
        args = [sys.executable, __file__, "--child", str(work)] + (["--profile", profile] if profile else [])
        # The child inherits PYTHONPATH: it runs the same (worktree's) code as this process.
        proc = subprocess.Popen(args, stdout=subprocess.PIPE, text=True)
        assert proc.stdout is not None
        ready_s, last = None, ""
        for line in proc.stdout:
            if ready_s is None and line.startswith("READY"):
                ready_s = time.perf_counter() - started
            last = line
        if proc.wait() != 0 or ready_s is None:
            raise RuntimeError(f"the run failed (exit {proc.returncode})")
        return {"ready_s": ready_s, **json.loads(last)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--profile", choices=["ready", "hour"], help="one run, cProfile's top 30 on stderr")
    parser.add_argument("--no-save", action="store_true", help="print the table only")
    args = parser.parse_args()
    if args.child:
        import logging

        logging.disable(logging.INFO)
        print(json.dumps(asyncio.run(one_run(Path(args.child), args.profile))))
        return

    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp) / "base"
        t0 = time.perf_counter()
        write_warm_cache(base)
        print(f"warm cache: {len(SYMBOLS) * len(TIMEFRAMES)} series in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
        if args.profile:
            run_once(base, args.profile)
            return
        runs, first_starts = [], []
        for _ in range(args.runs):  # interleaved: the machine's noise hits both kinds alike
            runs.append(run_once(base))
            first_starts.append(run_once(base, copies=False))

    def med(name: str, of: list[dict[str, object]] = runs) -> float:
        return statistics.median(float(r[name]) for r in of)  # type: ignore[arg-type]

    rows = [
        ("2,800 bots: process start → ready (warm cache)", f"{med('ready_s'):.2f} s", "≤ 3 s"),
        ("  first start: no binary copies yet (the CSVs parsed)", f"{med('ready_s', first_starts):.2f} s", ""),
        ("  first start: idle heartbeat CPU while copies are written",
         f"{med('idle_cpu_pct_of_core', first_starts):.2f} %", ""),
        ("heartbeat, only 1m new (400 candles): compute", f"{med('minute_compute_ms'):.0f} ms", ""),
        ("heartbeat, only 1m new: whole tick", f"{med('minute_tick_ms'):.0f} ms", ""),
        ("top of the hour (2,000 candles): compute = decided after", f"{med('hour_compute_ms'):.0f} ms",
         "≤ 900 ms (+ 100 ms grace)"),
        ("top of the hour: whole tick (journal, state, status)", f"{med('hour_tick_ms'):.0f} ms", ""),
        ("idle heartbeat: whole tick", f"{med('idle_tick_ms'):.1f} ms", ""),
        ("idle heartbeat: CPU, % of one core at 5 s heartbeats", f"{med('idle_cpu_pct_of_core'):.2f} %", "< 25 %"),
        ("RSS after ready", f"{med('ready_rss_mib'):.0f} MiB", ""),
        ("peak RSS", f"{med('peak_rss_mib'):.0f} MiB", "≤ 400 MiB"),
    ]
    print_table(rows, "result", f"measure (median of {len(runs)} runs)")
    if args.no_save:
        return
    results = {"machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
               "medians": {k: med(k) for k in runs[0] if k not in ("bots", "paper_trades")},
               "paper_trades": [r["paper_trades"] for r in runs], "runs": runs,
               "first_start_medians": {k: med(k, first_starts) for k in first_starts[0]
                                       if k not in ("bots", "paper_trades")},
               "first_start_runs": first_starts}
    print(f"saved {save_results('market.json', results)}")


if __name__ == "__main__":
    main()
