"""Time from SIGTERM to exit of a running paper daemon (21 bots), and the crash test at full size.

    .venv/bin/python benchmarks/bench_shutdown.py      # prints a table, writes results/shutdown.json
"""

from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def sigterm_to_exit(runs: int) -> list[float]:
    times = []
    for _ in range(runs):
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
            times.append(time.perf_counter() - sent)
            assert proc.returncode == 0
    return times


def main() -> None:
    times = sigterm_to_exit(10)
    started = time.perf_counter()
    crash = subprocess.run([sys.executable, "-m", "pytest", "-q", "tests/test_crash.py"], cwd=ROOT,
                           env={**os.environ, "CRASH_ITERATIONS": "50"}, capture_output=True, text=True)
    results = {"sigterm_to_exit_s": {"median": statistics.median(times), "max": max(times), "runs": times},
               "crash_test_50_kills": {"passed": crash.returncode == 0, "seconds": time.perf_counter() - started}}
    print(f"SIGTERM → exit (21 paper bots): median {results['sigterm_to_exit_s']['median'] * 1000:.0f} ms, "
          f"max {results['sigterm_to_exit_s']['max'] * 1000:.0f} ms  (target: within 5 s)")
    print(f"crash test, 50 SIGKILLs: {'passed' if crash.returncode == 0 else 'FAILED'} "
          f"in {results['crash_test_50_kills']['seconds']:.0f} s")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "shutdown.json").write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
