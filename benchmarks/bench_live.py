"""Live-trading benchmark against the loopback fake exchange (real ccxt client, real HTTP).

    .venv/bin/python benchmarks/bench_live.py         # prints a table, writes results/live.json

1. Entry latency: signal candle close → entry order acknowledged, p50/p99, with 0 ms and 50 ms of
   injected round trip on every exchange answer. The clock is the fake's and the bot's shared time;
   it is stepped to 100 ms after a candle close (when the live heartbeat wakes) and then runs in real
   time, so the figure is the wake delay plus the real work: klines fetch, features, scoring, order.
2. Requests per heartbeat at steady state (5 s heartbeats over one simulated hour), 21 and 504 bots:
   only due series are fetched.
"""

from __future__ import annotations

import asyncio
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bench_report import save_results

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT / "tests")]

from fakes.fake_binance import FakeBinance, add_markets  # noqa: E402
from trading_bot.engine.clock import CLOSE_GRACE_MS, ReplayClock  # noqa: E402
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


def settings_for(work: Path, fake: FakeBinance, symbols: tuple[str, ...], timeframes: tuple[str, ...],
                 live: bool) -> Settings:
    settings = Settings(
        dry_run=not live, live_confirmed=live, symbols=symbols, timeframes=timeframes, data_dir=work / "data",
        strategy_config=work / "strategy.json", exchange_url=fake.url, api_key=Secret(fake.api_key),
        api_secret=Secret(fake.api_secret), market_data="exchange", max_open_positions=10, heartbeat_seconds=5,
    )
    return settings


async def entry_latency(round_trip_ms: int, samples: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        clock = SteppedClock(START_MS + CLOSE_GRACE_MS)
        fake = await FakeBinance(now_ms=clock.now_ms).start()
        try:
            settings = settings_for(Path(tmp), fake, ("BTC/USDT:USDT",), ("1m",), live=True)
            write_config(settings.strategy_config,
                         {"version": 1, "defaults": {"threshold": 0.0001, "sl_pct": 0.01, "rr_ratio": 2}})
            daemon = Daemon(settings, clock=clock, install_signals=False)
            await daemon.start()
            fake.latency_ms = round_trip_ms
            close = START_MS
            try:
                while len(daemon.parts.broker.latency.samples) < samples:
                    close += 60_000
                    clock.step_to(close + CLOSE_GRACE_MS)  # the heartbeat wakes just after the close
                    await daemon.tick()
                    for position in daemon.parts.broker.open_positions():  # take it out so the next candle can enter
                        fake.set_price("BTCUSDT", position.stop * (1 - 0.001 * position.side))
                        clock.step_to(close + 5_000)
                        await daemon.tick()
            finally:
                await daemon.shutdown()
            values = list(daemon.parts.broker.latency.samples)
        finally:
            await fake.stop()
    return {"round_trip_ms": round_trip_ms, "orders": len(values), "p50_ms": statistics.median(values),
            "p99_ms": float(sorted(values)[max(0, int(len(values) * 0.99) - 1)]), "max_ms": max(values)}


async def requests_per_heartbeat(bots: int, hours: float) -> dict[str, float]:
    symbols = ("BTC/USDT:USDT", "ETH/USDT:USDT", "SOL/USDT:USDT") if bots <= 21 else tuple(
        f"S{i:02d}/USDT:USDT" for i in range(bots // len(TIMEFRAMES)))
    with tempfile.TemporaryDirectory() as tmp:
        clock = SteppedClock(START_MS + CLOSE_GRACE_MS)
        fake = await FakeBinance(now_ms=clock.now_ms, weight_limit=10**9).start()
        add_markets([s.split("/")[0] + "USDT" for s in symbols])
        try:
            settings = settings_for(Path(tmp), fake, symbols, TIMEFRAMES, live=False)
            daemon = Daemon(settings, clock=clock, install_signals=False)
            # Simulated hours pass in seconds here: the limiters (which count real time) would only
            # stretch the run, and this measures how many requests are made, not how fast.
            client = daemon.exchange.get()
            client.budget = WeightBudget(10**9)
            (await client.client()).enableRateLimit = False
            await daemon.start()
            before = len(fake.requests)
            ticks = int(hours * 3600 / 5)
            for i in range(1, ticks + 1):
                clock.step_to(START_MS + CLOSE_GRACE_MS + i * 5_000)
                await daemon.tick()
            requests = len(fake.requests) - before
            await daemon.shutdown()
        finally:
            await fake.stop()
    return {"bots": len(symbols) * len(TIMEFRAMES), "heartbeats": ticks, "requests": requests,
            "requests_per_heartbeat": requests / ticks}


async def main() -> None:
    logging.disable(logging.WARNING)
    results = {
        "latency_0ms": await entry_latency(0, 60),
        "latency_50ms": await entry_latency(50, 40),
        "requests_21": await requests_per_heartbeat(21, 1.0),
        "requests_504": await requests_per_heartbeat(504, 1.0),
    }
    rows = [
        ("entry latency, 0 ms round trip", results["latency_0ms"], "≤ 300 ms"),
        ("entry latency, 50 ms round trip", results["latency_50ms"], "≤ 300 ms + round trips"),
    ]
    print(f"{'measure':<36} {'p50':>9} {'p99':>9}  target")
    for name, r, target in rows:
        print(f"{name:<36} {r['p50_ms']:>7.0f}ms {r['p99_ms']:>7.0f}ms  {target}")
    for key in ("requests_21", "requests_504"):
        r = results[key]
        print(f"requests per 5 s heartbeat, {r['bots']} bots: {r['requests_per_heartbeat']:.3f} "
              f"({r['requests']} requests over {r['heartbeats']} heartbeats)")
    print(f"saved {save_results('live.json', results)}")


if __name__ == "__main__":
    asyncio.run(main())
