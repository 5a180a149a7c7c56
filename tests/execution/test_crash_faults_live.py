"""Fault rounds against a live daemon in its own process (the crash harness of test_crash_live.py): an
unknown-outcome answer (Binance's -1000, -1001, -1006 on a request that did or did not execute, an HTML
503, a connection dropped after the request was accepted, an answer later than the client's timeout)
on the entry, the stop or the target of a running daemon, or on one of the requests a daemon makes at
startup. After each: within 3 heartbeats every exchange position has exactly its stop and its target,
no client id was used twice, and the daemon's books agree with the exchange.

The fake measures how long each position went without a reduce-only stop and take-profit for its full
size; the test prints the longest across all rounds (benchmarks/bench_shutdown.py records it).

CRASH_FAULT_ROUNDS sets how many rounds (default: a seeded sample of 6 for CI, half on orders, half at
startup; "all" runs every fault on every request, 81 rounds); CRASH_SEED picks another sample."""

from __future__ import annotations

import asyncio
import os
import random
import re
import time
from collections.abc import Callable

import pytest

from fakes.fake_binance import FakeBinance, Injection
from fakes.live_daemon import (
    SPEED,
    DaemonProcess,
    PricePath,
    assert_state_agrees_with_the_exchange,
    live_store,
    start_fast_market,
)
from trading_bot.persistence.state_store import StateStore

pytestmark = pytest.mark.slow  # processes: see the `slow` marker in pyproject.toml

SEED = int(os.environ.get("CRASH_SEED", "20261124"))
FAULTS = ("-1000", "-1000_executed", "-1001", "-1001_executed", "-1006", "-1006_executed", "503_html",
          "lost_response", "timeout")
CLIENT_TIMEOUT_MS = 2_000  # the daemon's EXCHANGE_TIMEOUT_MS here; a "timeout" answers after LATE_ANSWER_S
LATE_ANSWER_S = 3.0
Target = tuple[str, str, Callable[[dict[str, str]], bool] | None]  # method, path, which requests
ORDER_TARGETS: dict[str, Target] = {
    "entry": ("POST", "/fapi/v1/order", lambda p: p.get("reduceOnly") != "true"),
    "stop": ("POST", "/fapi/v1/algoOrder", lambda p: p.get("type") == "STOP_MARKET"),
    "target": ("POST", "/fapi/v1/algoOrder", lambda p: p.get("type") == "TAKE_PROFIT_MARKET"),
}
STARTUP_TARGETS: dict[str, Target] = {
    "exchangeInfo": ("GET", "/fapi/v1/exchangeInfo", None),
    "leverage": ("POST", "/fapi/v1/leverage", None),
    "marginType": ("POST", "/fapi/v1/marginType", None),
    "account/balance": ("GET", "/fapi/v3/account", None),
    "positionRisk": ("GET", "/fapi/v3/positionRisk", None),
    "openAlgoOrders": ("GET", "/fapi/v1/openAlgoOrders", None),
}  # no openOrders: the daemon rests no plain orders, so it only lists the conditional ones (gateway.py)
HEARTBEAT_RE = re.compile(r"heartbeat \d+:")


def rounds(rng: random.Random) -> list[tuple[str, str]]:
    """(fault, target) pairs: every one, or a seeded sample, half on orders and half at startup."""
    on_orders = [(f, t) for f in FAULTS for t in ORDER_TARGETS]
    at_startup = [(f, t) for f in FAULTS for t in STARTUP_TARGETS]
    wanted = os.environ.get("CRASH_FAULT_ROUNDS", "6")
    if wanted == "all":
        return on_orders + at_startup
    n = int(wanted)
    return rng.sample(on_orders, (n + 1) // 2) + rng.sample(at_startup, n // 2)


def inject(fake: FakeBinance, fault: str, target: Target) -> Injection:
    method, path, match = target
    return fake.inject(fault, path, method=method, match=match, delay=LATE_ANSWER_S)


async def used(injection: Injection, daemon: DaemonProcess, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while injection.answered_at is None:
        assert time.monotonic() < deadline, f"no {what} request in {timeout}s:\n{daemon.log()[-3000:]}"
        await asyncio.sleep(0.02)


async def protected_within_3_heartbeats(fake: FakeBinance, store: StateStore, daemon: DaemonProcess) -> None:
    """Poll the check of test_crash_live until it holds; fail once 3 more heartbeats ended without it."""
    first = len(HEARTBEAT_RE.findall(daemon.log()))
    deadline = time.monotonic() + 60.0  # a wall-clock cap should the heartbeats stop altogether
    while True:
        done = len(HEARTBEAT_RE.findall(daemon.log())) - first >= 3
        try:
            assert_state_agrees_with_the_exchange(fake, store)
            return
        except AssertionError:
            if done or time.monotonic() > deadline:
                raise
        await asyncio.sleep(0.05)


async def test_unknown_outcomes_on_orders_and_at_startup_leave_every_position_protected(tmp_path):
    fake, clock = await start_fast_market(tmp_path)
    rng = random.Random(SEED)
    prices = PricePath(fake, rng)
    mover = asyncio.create_task(prices.run())
    daemon = DaemonProcess(tmp_path, fake, clock)
    daemon.env["EXCHANGE_TIMEOUT_MS"] = str(CLIENT_TIMEOUT_MS)
    store = live_store(tmp_path)
    plan = rounds(rng)
    worst = (0.0, "")
    try:
        daemon.start()
        await daemon.ready()
        for fault, where in plan:
            spells = len(fake.unprotected_spells)
            if where in ORDER_TARGETS:
                injection = inject(fake, fault, ORDER_TARGETS[where])
                fake.refuse_entries, prices.moving = False, True
                await used(injection, daemon, where)
            else:
                fake.refuse_entries, prices.moving = False, True
                await asyncio.sleep(rng.uniform(0.5, 3.0))  # likely holding a position when killed
                daemon.kill()
                await daemon.reap()
                injection = inject(fake, fault, STARTUP_TARGETS[where])
                fake.refuse_entries, prices.moving = True, False
                daemon.start()
                await daemon.ready()
                assert injection.times == 0, f"the daemon started without a {where} request"
            fake.refuse_entries, prices.moving = True, False  # hold still for the check
            try:
                await protected_within_3_heartbeats(fake, store, daemon)
            except AssertionError as e:
                raise AssertionError(f"round {fault} on {where}: {e}\n{daemon.log()[-4000:]}") from e
            longest = max([s for _, s in fake.unprotected_spells[spells:]], default=0.0)
            if longest > worst[0]:
                worst = (longest, f"{fault} on {where}")
        daemon.kill_and_wait()
    finally:
        daemon.kill_and_wait()
        mover.cancel()
        await asyncio.gather(mover, return_exceptions=True)
        await fake.stop()
    print(f"\nfault rounds: {len(plan)} rounds, {len(fake.trades)} fills, longest time a position was without a stop "
          f"or a target {worst[0]:.2f} s ({worst[0] * SPEED:.0f} s on the exchange clock) in round {worst[1]!r}")
