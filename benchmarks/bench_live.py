"""Live-trading benchmark against the loopback fake exchange (real ccxt client, real HTTP).

    .venv/bin/python benchmarks/bench_live.py         # prints a table, writes results/live.json

1. Entry latency: signal candle close → entry order acknowledged, p50/p99, with 0 ms and 50 ms of
   injected round trip on every exchange answer (and half of it on each websocket message), the
   daemon's own loop running: candles pushed over websockets (CANDLE_FEED=websocket: the close event
   wakes the loop) and polled (rest: the loop wakes 100 ms after the close, then fetches klines).
   The clock is the fake's and the bot's shared time; it is stepped to 30 ms before a close and runs
   in real time from there. The fake's pump reads its clock every 10 ms, so a push leaves 0–10 ms
   after the close (Binance's own publication delay is not modelled).
   Exit booking latency: the price crosses the stop at the exchange → the trade in the journal.
2. Requests per heartbeat at steady state (5 s heartbeats over one simulated hour), 21 and 504 bots:
   only due series are fetched.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from bench_report import save_results

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT / "tests")]

from fakes.fake_binance import FakeBinance, add_markets  # noqa: E402
from trading_bot.engine.clock import CLOSE_GRACE_MS, LiveClock, ReplayClock  # noqa: E402
from trading_bot.engine.daemon import Daemon  # noqa: E402
from trading_bot.exchange.budget import WeightBudget  # noqa: E402
from trading_bot.persistence.strategy_config_file import write_config  # noqa: E402
from trading_bot.settings import Secret, Settings  # noqa: E402

START_MS = 1_767_225_600_000
TIMEFRAMES = ("1m", "5m", "15m", "30m", "1h", "4h", "1d")


class SteppedClock(ReplayClock):
    """Simulated time that also runs in real time between steps."""

    simulated = False

    def __init__(self, start_ms: int) -> None:
        super().__init__(start_ms)
        self._stepped_at = time.perf_counter()

    def now_ms(self) -> int:
        return self._now + int((time.perf_counter() - self._stepped_at) * 1000)

    def step_to(self, ms: int) -> None:
        self._now = ms
        self._stepped_at = time.perf_counter()


class RunningClock(SteppedClock):
    """A SteppedClock the daemon's own loop sleeps on in real time (as on the wall clock)."""

    def next_wake_ms(self, now_ms: int, next_due_ms: int, heartbeat_ms: int) -> int:
        return LiveClock.next_wake_ms(LiveClock(), now_ms, next_due_ms, heartbeat_ms)

    async def sleep_until(self, wake_ms: int, stop: asyncio.Event) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), max(0.0, (wake_ms - self.now_ms()) / 1000))


def settings_for(work: Path, fake: FakeBinance, symbols: tuple[str, ...], timeframes: tuple[str, ...],
                 live: bool, **changes: object) -> Settings:
    settings = Settings(
        dry_run=not live, live_confirmed=live, symbols=symbols, timeframes=timeframes, data_dir=work / "data",
        strategy_config=work / "strategy.json", exchange_url=fake.url, api_key=Secret(fake.api_key),
        api_secret=Secret(fake.api_secret), market_data="exchange", max_open_positions=10, heartbeat_seconds=5,
    )
    return dataclasses.replace(settings, **changes)  # type: ignore[arg-type]


async def _until(condition: Callable[[], bool], timeout_s: float) -> bool:
    deadline = time.perf_counter() + timeout_s
    while not condition():
        if time.perf_counter() > deadline:
            return False
        await asyncio.sleep(0.001)
    return True


def _percentiles(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {"p50_ms": statistics.median(values), "p99_ms": float(ordered[max(0, int(len(values) * 0.99) - 1)]),
            "max_ms": max(values)}


async def entry_latency(round_trip_ms: int, samples: int, feed: str) -> dict[str, object]:
    """The daemon's loop running (run()), one 1m bot with a hair-trigger threshold: each close signals."""
    with tempfile.TemporaryDirectory() as tmp:
        clock = RunningClock(START_MS + CLOSE_GRACE_MS)
        fake = await FakeBinance(now_ms=clock.now_ms).start()
        try:
            settings = settings_for(Path(tmp), fake, ("BTC/USDT:USDT",), ("1m",), live=True, candle_feed=feed)
            write_config(settings.strategy_config,
                         {"version": 1, "defaults": {"threshold": 0.0001, "sl_pct": 0.01, "rr_ratio": 2}})
            daemon = Daemon(settings, clock=clock, install_signals=False)
            runner = asyncio.create_task(daemon.run())
            await _until(lambda: bool(daemon.figures.ready_ms), 30)
            fake.latency_ms = round_trip_ms
            journal = daemon.parts.store.trades_path
            close, exits = START_MS, []
            try:
                while len(daemon.parts.broker.latency.samples) < samples:
                    close += 60_000
                    count = len(daemon.parts.broker.latency.samples)
                    clock.step_to(close - 30)
                    daemon.wake_event.set()  # time jumped: the loop's sleep is recomputed
                    await _until(lambda n=count: len(daemon.parts.broker.latency.samples) > n, 5)
                    await _until(lambda: not daemon.parts.broker.pending_count(), 2)
                    for position in daemon.parts.broker.open_positions():  # out, so the next close can enter
                        await _until(lambda p=position: {"stop", "target"} <= set(p.orders), 5)  # protected
                        lines = _lines(journal)
                        clock.step_to(close + 2_000)
                        triggered = time.perf_counter()
                        fake.set_price("BTCUSDT", position.stop * (1 - 0.001 * position.side))
                        if await _until(lambda n=lines: _lines(journal) > n, 12):
                            exits.append((time.perf_counter() - triggered) * 1000)
                        await _until(lambda: not daemon.parts.broker.open_positions(), 12)
                        fake.clear_price("BTCUSDT")  # the next entry at the market's own price again
                        # the exit's tick ends with a balance request: let it answer before the clock
                        # jumps, or the jump puts it outside recvWindow (a -1021 and a resync in the next entry)
                        await asyncio.sleep(0.3)
            finally:
                daemon.request_stop()
                await runner
            values = list(daemon.parts.broker.latency.samples)
        finally:
            await fake.stop()
    return {"feed": feed, "round_trip_ms": round_trip_ms, "orders": len(values), **_percentiles(values),
            "exit_booking": {"exits": len(exits), **(_percentiles(exits) if exits else {})}}


def _lines(path: Path) -> int:
    return path.read_bytes().count(b"\n") if path.exists() else 0


async def requests_per_heartbeat(bots: int, hours: float, feed: str) -> dict[str, object]:
    """Steady state after start: requests and request weight per minute (the fake's own weights), on
    pushed or polled candles. Simulated hours pass in seconds: each 5 s heartbeat steps the clock."""
    symbols = ("BTC/USDT:USDT", "ETH/USDT:USDT", "SOL/USDT:USDT") if bots <= 21 else tuple(
        f"S{i:03d}/USDT:USDT" for i in range(bots // len(TIMEFRAMES)))
    with tempfile.TemporaryDirectory() as tmp:
        clock = SteppedClock(START_MS + CLOSE_GRACE_MS)
        add_markets([s.split("/")[0] + "USDT" for s in symbols])  # before the fake: it lists its markets at start
        fake = await FakeBinance(now_ms=clock.now_ms, weight_limit=10**9).start()
        try:
            settings = settings_for(Path(tmp), fake, symbols, TIMEFRAMES, live=False, candle_feed=feed,
                                    fetch_concurrency=32)
            daemon = Daemon(settings, clock=clock, install_signals=False)
            # Only the count matters here: the limiters (which count real time) would only stretch the run.
            client = daemon.exchange.get()
            client.budget = WeightBudget(10**9)
            (await client.client()).enableRateLimit = False
            await daemon.start()
            if feed == "websocket":
                await _until(lambda: len(fake.ws.subscriptions()) >= len(symbols) * len(TIMEFRAMES), 60)
                await asyncio.sleep(0.2)
            before = len(fake.requests)
            ticks = int(hours * 3600 / 5)
            for i in range(1, ticks + 1):
                clock.step_to(START_MS + CLOSE_GRACE_MS + i * 5_000)
                if feed == "websocket":
                    await asyncio.sleep(0.03)  # the fake's pump (every 10 ms) pushes what closed
                await daemon.tick()
            made = fake.requests[before:]
            feed_state = daemon.parts.mdm.feed()
            await daemon.shutdown()
        finally:
            await fake.stop()
    minutes = hours * 60
    return {"bots": len(symbols) * len(TIMEFRAMES), "feed": feed, "feed_state": feed_state, "heartbeats": ticks,
            "requests": len(made), "requests_per_minute": len(made) / minutes,
            "weight_per_minute": sum(r.weight for r in made) / minutes}


async def main() -> None:
    logging.disable(logging.WARNING)
    results: dict[str, dict] = {}
    for feed, samples in (("websocket", 30), ("rest", 12)):
        for round_trip in (0, 50):
            results[f"latency_{feed}_{round_trip}ms"] = await entry_latency(round_trip, samples, feed)
    for bots, hours in ((21, 1.0), (504, 1.0), (2_800, 0.25)):
        for feed in ("websocket", "rest"):
            results[f"requests_{bots}_{feed}"] = await requests_per_heartbeat(bots, hours, feed)
    print(f"{'measure':<44} {'p50':>9} {'p99':>9}  target")
    for key, r in results.items():
        if not key.startswith("latency_"):
            continue
        rtt = r["round_trip_ms"]
        target = f"p99 ≤ {rtt + 30} ms (one round trip + 30)" if r["feed"] == "websocket" else "(polling, for comparison)"
        print(f"{'entry, ' + r['feed'] + f', {rtt} ms round trip':<44} {r['p50_ms']:>7.0f}ms {r['p99_ms']:>7.0f}ms  {target}")
        booked = r["exit_booking"]
        if booked["exits"]:
            print(f"{'  exit booked, trigger → journal':<44} {booked['p50_ms']:>7.0f}ms {booked['p99_ms']:>7.0f}ms  "
                  f"({booked['exits']} exits)")
    for key, r in results.items():
        if key.startswith("requests_"):
            print(f"{r['bots']:>5} bots, {r['feed']:<9} ({r['feed_state']}): {r['requests_per_minute']:8.1f} requests "
                  f"and {r['weight_per_minute']:8.1f} weight per minute (Binance: 2,400 weight/min per IP)")
    print(f"saved {save_results('live.json', results)}")


if __name__ == "__main__":
    asyncio.run(main())
