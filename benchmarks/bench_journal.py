"""The first trade a daemon closes after a start with a long journal: before it appends, the state
store looks through the journal for a repeat (a trade a crash made it close twice). Measured here:
that first append's time, the longest stall of the event loop meanwhile (a task that wants to run
every millisecond: the websockets, the metrics, the other bots), and the memory it keeps.

    .venv/bin/python benchmarks/bench_journal.py [--trades 100000] [--runs 5] [--baseline-src OLD/src]

Each run is a child process on a fresh copy of a journal of --trades closed trades over a year, with
the books saved at the last one (as a daemon leaves them); --baseline-src runs the same in an older
checkout's code. Results: benchmarks/results/journal.json."""

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
import tracemalloc
from pathlib import Path

from bench_report import print_table, save_results

ROOT = Path(__file__).resolve().parents[1]
YEAR_MS = 365 * 86_400_000
START_MS = 1_735_689_600_000  # 2025-01-01


def write_journal(directory: Path, trades: int) -> None:
    from trading_bot.domain.trades import LONG, ClosedTrade
    from trading_bot.domain.wallet import SavedState, Wallet
    from trading_bot.persistence.state_store import StateStore

    store = StateStore(directory)
    directory.mkdir(parents=True, exist_ok=True)
    step = YEAR_MS // trades
    with store.trades_path.open("w") as journal:
        for k in range(trades):
            exit_ts = START_MS + k * step
            trade = ClosedTrade(f"S{k % 2800}/USDT:USDT", "5m", LONG, 0.5, 100.0 + k % 7, exit_ts - 600_000,
                                exit_ts - 900_000, 101.0, exit_ts, "target", 0.02, 0.03, 0.55, 0.5, 0.0)
            journal.write(json.dumps(trade.to_json()) + "\n")
    last = START_MS + (trades - 1) * step
    asyncio.run(store.save(SavedState(Wallet(10_000.0, 10_000.0), {}, clock_ms=last), 0, "synthetic"))


async def first_append(directory: Path, trace: bool) -> dict[str, float]:
    from trading_bot.domain.trades import LONG, ClosedTrade
    from trading_bot.persistence.state_store import StateStore

    store = StateStore(directory)
    store.load()
    now = START_MS + YEAR_MS
    trade = ClosedTrade("NEW/USDT:USDT", "5m", LONG, 0.5, 100.0, now - 600_000, now - 900_000, 101.0, now, "target",
                        0.02, 0.03, 0.55, 0.5, 0.0)
    stalls: list[float] = []
    done = False

    async def ticker() -> None:  # wants the loop every millisecond
        last = time.perf_counter()
        while not done:
            await asyncio.sleep(0.001)
            now_s = time.perf_counter()
            stalls.append(now_s - last)
            last = now_s

    task = asyncio.create_task(ticker())
    await asyncio.sleep(0.01)
    if trace:  # a run of its own: tracing slows Python down several times
        tracemalloc.start()
    start = time.perf_counter()
    assert await store.append_trade(trade)
    took = time.perf_counter() - start
    done = True
    await task
    if trace:
        kept, peak = tracemalloc.get_traced_memory()
        return {"kept_mib": kept / 2**20, "peak_mib": peak / 2**20}
    return {"first_append_s": took, "loop_stall_ms": max(stalls) * 1000}


def run_child(src: Path, journal: Path, trace: bool = False) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as work:
        copy = Path(work) / "state"
        shutil.copytree(journal, copy)
        env = {**os.environ, "PYTHONPATH": f"{src}{os.pathsep}{ROOT / 'benchmarks'}"}
        out = subprocess.run([sys.executable, __file__, "--child", str(copy), *(["--trace"] if trace else [])],
                             env=env, capture_output=True,
                             text=True, check=True, timeout=900)
        return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--trace", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--trades", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--baseline-src", type=Path, help="an older checkout's src/ to compare with")
    args = parser.parse_args()
    if args.child:
        print(json.dumps(asyncio.run(first_append(args.child, args.trace))))
        return
    sys.path.insert(0, str(ROOT / "src"))
    sources = {"this checkout": ROOT / "src"}
    if args.baseline_src:
        sources["baseline"] = args.baseline_src.resolve()
    with tempfile.TemporaryDirectory() as work:
        journal = Path(work) / "state"
        write_journal(journal, args.trades)
        size_mb = (journal / "trades.jsonl").stat().st_size / 1e6
        runs = {name: [run_child(src, journal) for _ in range(args.runs)] for name, src in sources.items()}
        memory = {name: run_child(src, journal, trace=True) for name, src in sources.items()}
    figures = {name: {**{key: statistics.median(r[key] for r in rs) for key in rs[0]}, **memory[name]}
               for name, rs in runs.items()}
    rows = [("journal", f"{args.trades:,} trades, {size_mb:.0f} MB", "")]
    for name, f in figures.items():
        rows += [(f"{name}: first append", f"{f['first_append_s'] * 1000:.1f} ms", ""),
                 (f"{name}: longest loop stall meanwhile", f"{f['loop_stall_ms']:.1f} ms",
                  "well under a heartbeat (the loop runs on)"),
                 (f"{name}: memory kept after it", f"{f['kept_mib']:.1f} MiB", ""),
                 (f"{name}: memory at its peak", f"{f['peak_mib']:.1f} MiB", "")]
    print_table(rows)
    results = {"machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]}, "trades": args.trades,
               "journal_mb": round(size_mb, 1), "runs": args.runs, "medians": figures, "all": runs, "memory": memory}
    print(f"saved {save_results('journal.json', results)}")


if __name__ == "__main__":
    main()
