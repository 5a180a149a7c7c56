"""Crash test, live: the daemon trades against the fake exchange, the two sharing a time-lapse clock
(CLOCK_SPEED, CLOCK_ORIGIN_MS), while a fast price path triggers stops and targets. The daemon is
SIGKILLed at random moments, either on a timer or right after the exchange executed one of its
orders and before the answer reaches it, and is restarted each time.

After every restart (checked once the daemon has reconciled, with the price held and new entries
refused so nothing moves): every position the exchange holds is the bot's, once; each has exactly
its stop and its target; no client order id was ever used twice; no intent is left unresolved;
and the journal's PnL equals the exchange's realised PnL.

CRASH_ITERATIONS sets how many kills (default: a seeded sample of 8 for CI; the full run is 50);
CRASH_SEED picks another sample."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import time
from collections import Counter

import pytest

from fakes.live_daemon import (
    DaemonProcess,
    PricePath,
    assert_state_agrees_with_the_exchange,
    live_store,
    no_intent_in_flight,
    start_fast_market,
)

pytestmark = pytest.mark.slow  # processes: see the `slow` marker in pyproject.toml

ITERATIONS = int(os.environ.get("CRASH_ITERATIONS", "8"))
SEED = int(os.environ.get("CRASH_SEED", "20261124"))
ORDER_PATHS = ("/fapi/v1/order", "/fapi/v1/algoOrder")


class KillAfterOrder:
    """The fake's on_executed hook: SIGKILL the daemon right after the n-th order request it sends
    has been executed, before the answer is written."""

    def __init__(self, daemon: DaemonProcess, n: int) -> None:
        self.daemon, self.left, self.fired = daemon, n, False

    def __call__(self, method: str, path: str, params: dict[str, str]) -> None:
        if method in ("POST", "DELETE") and path in ORDER_PATHS and not self.fired:
            self.left -= 1
            if self.left == 0:
                self.fired = True
                self.daemon.kill()


async def test_sigkill_of_a_live_daemon_loses_and_duplicates_nothing(tmp_path):
    fake, clock = await start_fast_market(tmp_path)
    rng = random.Random(SEED)
    prices = PricePath(fake, rng)
    mover = asyncio.create_task(prices.run())
    daemon = DaemonProcess(tmp_path, fake, clock)
    store = live_store(tmp_path)
    kills: Counter[str] = Counter()
    trades = 0
    try:
        daemon.start()
        await daemon.ready()
        for _ in range(ITERATIONS):
            fake.refuse_entries, prices.moving = False, True
            if rng.random() < 0.5:
                hook = KillAfterOrder(daemon, rng.randint(1, 4))
                fake.on_executed = hook
                deadline = time.monotonic() + 8.0
                while not hook.fired and time.monotonic() < deadline:
                    await asyncio.sleep(0.01)
                fake.on_executed = None
                kills["right after an order executed" if hook.fired else "on a timer"] += 1
                daemon.kill()
            else:
                await asyncio.sleep(rng.uniform(0.2, 3.0))
                daemon.kill()
                kills["on a timer"] += 1
            await daemon.reap()
            await asyncio.sleep(rng.uniform(0.0, 1.5))  # the market moves on while the bot is down
            fake.refuse_entries, prices.moving = True, False  # hold still for the check
            daemon.start()
            await daemon.ready()
            await no_intent_in_flight(store)
            trades = assert_state_agrees_with_the_exchange(fake, store)
        daemon.kill(signal.SIGTERM)
        await daemon.reap(expect=0)
    finally:
        daemon.kill_and_wait()
        mover.cancel()
        await asyncio.gather(mover, return_exceptions=True)
        await fake.stop()
    print(f"\nlive crash test: {sum(kills.values())} kills ({dict(kills)}), {trades} trades booked, "
          f"{len(fake.trades)} fills, realised PnL {fake.realized_pnl():+.2f}, longest time a position was without "
          f"a stop or a target {fake.longest_unprotected_s():.2f} s")
    assert sum(kills.values()) == ITERATIONS
    assert trades >= ITERATIONS // 2, "the price path must actually close trades"
