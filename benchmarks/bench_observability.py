"""What seeing the daemon costs: the metrics (and the status page on their port) and the notifications.

    .venv/bin/python benchmarks/bench_observability.py          # prints a table, writes results/observability.json
    .venv/bin/python benchmarks/bench_observability.py --baseline-src /path/to/older/checkout/src

1. Off costs nothing: start → ready and the peak RSS of the 21-bot paper daemon (`trading-bot run`,
   synthetic market, warm cache) with every option off, and which optional modules it loaded (none of
   prometheus_client, the notifications, matplotlib). With --baseline-src, the same for an older
   checkout (the commit before these features), run alternately so both see the same machine noise.
2. On costs nothing a tick can feel: heartbeat durations (21 bots, one simulated minute per tick, so
   the 1m series get a candle every tick and the others when due) with everything off, with the metrics
   on and a scraper asking every 100 ms, and with the notifications on too, sent to a dead endpoint (a
   port that accepts connections and never answers) so every message waits out its timeout. Each mode
   in its own process, the modes alternated over rounds; p50 and p99 of the tick, medians over rounds.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_daemon import DEFAULT_SYMBOLS, TIMEFRAMES, write_warm_cache
from bench_report import print_table, save_results

ROOT = Path(__file__).resolve().parents[1]
OPTIONAL = ("prometheus_client", "trading_bot.engine.metrics", "trading_bot.engine.notifications", "matplotlib")
MODES = ("off", "metrics", "metrics+notify")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


# --- 1. off: start to ready, RSS, modules -----------------------------------------------------------

READY_CHILD = """
import sys, time
from trading_bot.cli.main import main
rc = main(['run', '--cycles', '3'])
status = dict(line.split(':', 1) for line in open('/proc/self/status').read().splitlines() if ':' in line)
print('RESULT', rc, int(status['VmHWM'].split()[0]), ','.join(m for m in {optional!r} if m in sys.modules))
"""


def start_to_ready(src: Path, work: Path) -> dict[str, float | str]:
    env = {k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "JOURNAL_STREAM", "METRICS_PORT")}
    env.update(PYTHONPATH=str(src), MARKET_DATA="synthetic", DATA_DIR=str(work / "data"), HEARTBEAT_SECONDS="0.05",
               STRATEGY_CONFIG=str(work / "none.json"), TRADING_SYMBOLS=",".join(DEFAULT_SYMBOLS),
               TRADING_TIMEFRAMES=",".join(TIMEFRAMES))
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", READY_CHILD.format(optional=OPTIONAL)], cwd=work, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    ready_at, result = None, None
    for line in proc.stdout:
        if ready_at is None and " ready: " in line:
            ready_at = time.perf_counter() - started
        if line.startswith("RESULT "):
            result = line.split(maxsplit=3)
    proc.wait()
    if ready_at is None or result is None or result[1] != "0":
        raise RuntimeError(f"{src}: no ready line or a failed run (exit {proc.returncode})")
    loaded = result[3].strip() if len(result) > 3 else ""
    return {"ready_s": ready_at, "peak_rss_mib": int(result[2]) / 1024, "optional_loaded": loaded}


def off_costs(sources: dict[str, Path], runs: int) -> dict[str, dict[str, object]]:
    out: dict[str, dict[str, object]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        write_warm_cache(work / "data" / "synthetic", DEFAULT_SYMBOLS)
        samples: dict[str, list[dict[str, float | str]]] = {name: [] for name in sources}
        for _ in range(runs):
            for name, src in sources.items():  # alternated: both see the same noise
                samples[name].append(start_to_ready(src, work))
        for name, runs_of in samples.items():
            out[name] = {"ready_s_median": statistics.median(float(r["ready_s"]) for r in runs_of),
                         "peak_rss_mib_median": statistics.median(float(r["peak_rss_mib"]) for r in runs_of),
                         "optional_loaded": sorted({str(r["optional_loaded"]) for r in runs_of} - {""}), "runs": runs}
    return out


# --- 2. on: heartbeat durations ---------------------------------------------------------------------


@contextlib.contextmanager
def dead_endpoint():
    """A port that accepts connections (the kernel's backlog) and never answers."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(64)
        yield f"http://127.0.0.1:{server.getsockname()[1]}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def mode_settings(mode: str, dead_url: str) -> dict[str, object]:
    changes: dict[str, object] = {}
    if mode != "off":
        changes["metrics_port"] = free_port()
    if mode == "metrics+notify":
        changes.update(notification_settings(dead_url))
    return changes


def notification_settings(dead_url: str) -> dict[str, object]:
    from trading_bot.settings import Secret

    return {"telegram_bot_token": Secret("123456:bench-token"), "telegram_chat_ids": (42,),
            "telegram_api_url": dead_url, "webhook_url": Secret(dead_url + "/hook")}


async def scraper(port: int, paths: tuple[str, ...], every_s: float, stop: asyncio.Event) -> int:
    import aiohttp

    scrapes = 0
    async with aiohttp.ClientSession() as session:
        while not stop.is_set():
            for path in paths:
                with contextlib.suppress(aiohttp.ClientError):
                    async with session.get(f"http://127.0.0.1:{port}{path}") as answer:
                        await answer.read()
                        scrapes += answer.status == 200
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), every_s)
    return scrapes


async def heartbeats(mode: str, ticks: int) -> dict[str, object]:
    from trading_bot.engine.clock import ReplayClock
    from trading_bot.engine.daemon import Daemon
    from trading_bot.marketdata.sources import SyntheticSource
    from trading_bot.persistence.strategy_config_file import write_config
    from trading_bot.settings import Settings

    with tempfile.TemporaryDirectory() as tmp, dead_endpoint() as dead_url:
        work = Path(tmp)
        settings = Settings(symbols=DEFAULT_SYMBOLS, timeframes=TIMEFRAMES, data_dir=work / "data",
                            strategy_config=work / "config.json", market_data="synthetic",
                            **mode_settings(mode, dead_url))
        # trades often: opened/closed notifications on the dead endpoint
        write_config(settings.strategy_config, {"version": 1, "defaults": {"threshold": 0.0001, "sl_pct": 0.003,
                                                                            "rr_ratio": 1.5}})
        write_warm_cache(settings.synthetic_dir, DEFAULT_SYMBOLS)
        clock = ReplayClock((int(time.time() * 1000) // 60_000) * 60_000 + 1_000)
        clock.simulated = False  # as the wall clock: status.json and the heartbeat line every tick
        daemon = Daemon(settings, clock=clock, source=SyntheticSource(settings.synthetic_seed), install_signals=False)
        await daemon.start()
        await daemon.start_metrics()
        await daemon.start_notifications()  # nothing unless their settings are on
        stop = asyncio.Event()
        scrape = None
        if mode != "off":
            scrape = asyncio.create_task(scraper(settings.metrics_port, ("/metrics", "/api/status"), 0.1, stop))
        durations = []
        for _ in range(ticks):
            clock._now += 60_000
            started = time.perf_counter()
            await daemon.tick()
            durations.append((time.perf_counter() - started) * 1000)
            await asyncio.sleep(0.005)  # the loop's sleep between ticks: scrapes and sends run here
        stop.set()
        scrapes = await scrape if scrape is not None else 0
        trades = daemon.parts.broker.wallet.trades
        outboxes = {name: dataclasses.asdict(c) for name, c in (daemon.notifications.counters.items()
                                                               if daemon.notifications is not None else ())}
        await daemon.shutdown()
    return {"mode": mode, "ticks": ticks, "p50_ms": percentile(durations, 50), "p99_ms": percentile(durations, 99),
            "max_ms": max(durations), "scrapes": scrapes, "trades": trades, "outboxes": outboxes}


def run_child(mode: str, ticks: int) -> dict[str, object]:
    out = subprocess.run([sys.executable, __file__, "--child", mode, "--ticks", str(ticks)], capture_output=True,
                         text=True, check=True, env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--child", choices=MODES, help=argparse.SUPPRESS)
    parser.add_argument("--ticks", type=int, default=400)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--runs", type=int, default=7, help="start-to-ready repetitions")
    parser.add_argument("--baseline-src", type=Path, help="an older checkout's src/ to compare the off figures with")
    args = parser.parse_args()
    if args.child:
        import logging

        logging.disable(logging.INFO)
        print(json.dumps(asyncio.run(heartbeats(args.child, args.ticks))))
        return

    sources = {"this checkout": ROOT / "src"}
    if args.baseline_src:
        sources["baseline"] = args.baseline_src.resolve()
    off = off_costs(sources, args.runs)
    rounds: dict[str, list[dict[str, object]]] = {mode: [] for mode in MODES}
    for _ in range(args.rounds):
        for mode in MODES:
            rounds[mode].append(run_child(mode, args.ticks))
    on = {mode: {"p50_ms_median": statistics.median(float(r["p50_ms"]) for r in runs),
                 "p99_ms_median": statistics.median(float(r["p99_ms"]) for r in runs),
                 "p99_ms_runs": [round(float(r["p99_ms"]), 3) for r in runs],
                 "max_ms": max(float(r["max_ms"]) for r in runs),
                 "scrapes": sum(int(r["scrapes"]) for r in runs), "trades": [r["trades"] for r in runs],
                 "outboxes": [r["outboxes"] for r in runs]}
          for mode, runs in rounds.items()}
    results = {"machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]}, "off": off,
               "heartbeat_21_bots": on, "ticks_per_run": args.ticks, "rounds": args.rounds}
    rows = []
    for name, figures in off.items():
        rows.append((f"off, {name}: start → ready", f"{figures['ready_s_median']:.3f} s", "as before"))
        rows.append((f"off, {name}: peak RSS", f"{figures['peak_rss_mib_median']:.0f} MiB", "as before"))
        rows.append((f"off, {name}: optional modules loaded", ", ".join(figures["optional_loaded"]) or "none", "none"))
    base, spread = on["off"]["p99_ms_median"], on["off"]["p99_ms_runs"]
    for mode, figures in on.items():
        rows.append((f"tick p50, {mode}", f"{figures['p50_ms_median']:.2f} ms", ""))
        rows.append((f"tick p99, {mode}", f"{figures['p99_ms_median']:.2f} ms",
                     f"off's own rounds: {min(spread):.1f}–{max(spread):.1f} ms" if mode == "off"
                     else f"× {figures['p99_ms_median'] / base:.2f} of off, "
                          + ("within" if figures["p99_ms_median"] <= max(spread) else "ABOVE") + " off's spread"))
    print_table(rows)
    print(f"saved {save_results('observability.json', results)}")


if __name__ == "__main__":
    main()
