"""Time from SIGTERM to exit (a paper daemon with 21 bots; a live daemon holding positions against the
fake exchange), both crash tests at full size (50 SIGKILLs each), and the live fault rounds at full size
(every unknown-outcome fault on the entry, stop, target and each startup request) with the longest time a
position was without a stop or a target.

    .venv/bin/python benchmarks/bench_shutdown.py      # prints a table, writes results/shutdown.json
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_report import save_results

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT / "tests")]

from fakes.live_daemon import DaemonProcess, start_fast_market  # noqa: E402

RUNS = 10
TARGET_S = 5.0


def paper_sigterm_to_exit() -> float:
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "DATA_DIR": str(Path(tmp) / "data"), "MARKET_DATA": "synthetic",
               "HEARTBEAT_SECONDS": "0.2", "STRATEGY_CONFIG": str(Path(tmp) / "none.json")}
        proc = subprocess.Popen([sys.executable, "-m", "trading_bot", "run"], cwd=tmp, env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        assert proc.stdout is not None
        for line in proc.stdout:
            if "heartbeat 3:" in line:
                break
        sent = time.perf_counter()
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)
        assert proc.returncode == 0
        return time.perf_counter() - sent


async def live_sigterm_to_exit() -> float:
    """A live daemon (2 bots, time-lapse clock) with a protected position open, then SIGTERM."""
    with tempfile.TemporaryDirectory() as tmp:
        fake, clock = await start_fast_market(Path(tmp))
        daemon = DaemonProcess(Path(tmp), fake, clock)
        try:
            daemon.start()
            await daemon.ready()
            while not any(a["algoStatus"] == "NEW" for a in fake.algo_orders.values()):
                await asyncio.sleep(0.01)
            sent = time.perf_counter()
            daemon.kill(signal.SIGTERM)
            await daemon.reap(expect=0)
            return time.perf_counter() - sent
        finally:
            daemon.kill_and_wait()
            await fake.stop()


def crash_test(path: str) -> dict[str, object]:
    started = time.perf_counter()
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-s", "-p", "no:cacheprovider", path], cwd=ROOT,
                         env={**os.environ, "CRASH_ITERATIONS": "50", "CRASH_FAULT_ROUNDS": "all"},
                         capture_output=True, text=True)
    summary = re.search(r"(live crash test|fault rounds): .*", run.stdout)
    unprotected = re.search(r"without a stop or a target ([0-9.]+) s", summary.group(0)) if summary else None
    return {"passed": run.returncode == 0, "seconds": time.perf_counter() - started,
            "summary": summary.group(0) if summary else None,
            "longest_unprotected_s": float(unprotected.group(1)) if unprotected else None}


def main() -> None:
    paper = [paper_sigterm_to_exit() for _ in range(RUNS)]
    live = [asyncio.run(live_sigterm_to_exit()) for _ in range(RUNS)]
    results = {
        "sigterm_to_exit_s": {"median": statistics.median(paper), "max": max(paper), "runs": paper},
        "live_sigterm_to_exit_s": {"median": statistics.median(live), "max": max(live), "runs": live},
        "crash_test_50_kills": crash_test("tests/engine/test_crash_replay.py"),
        "live_crash_test_50_kills": crash_test("tests/execution/test_crash_live.py"),
        "live_fault_rounds_all": crash_test("tests/execution/test_crash_faults_live.py"),
    }
    print(f"{'measure':<52} {'median':>9} {'max':>9} {'target':>9}")
    for label, key in (("SIGTERM → exit, paper, 21 bots", "sigterm_to_exit_s"),
                       ("SIGTERM → exit, live, positions open on the fake", "live_sigterm_to_exit_s")):
        figures = results[key]
        print(f"{label:<52} {figures['median'] * 1000:>7.0f}ms {figures['max'] * 1000:>7.0f}ms {TARGET_S:>8.0f}s")
    for label, key in (("crash test, paper replay, 50 SIGKILLs", "crash_test_50_kills"),
                       ("crash test, live against the fake, 50 SIGKILLs", "live_crash_test_50_kills"),
                       ("fault rounds, live against the fake, all 81", "live_fault_rounds_all")):
        outcome = results[key]
        print(f"{label:<52} {'passed' if outcome['passed'] else 'FAILED':>9} in {outcome['seconds']:.0f} s")
        if outcome.get("summary"):
            print(f"    {outcome['summary']}")
    spells = [results[k]["longest_unprotected_s"] for k in ("live_crash_test_50_kills", "live_fault_rounds_all")]
    results["longest_unprotected_s"] = max((s for s in spells if s is not None), default=None)
    print(f"{'longest time a position had no stop or no target':<52} {results['longest_unprotected_s']} s (wall)")
    save_results("shutdown.json", results)


if __name__ == "__main__":
    main()
