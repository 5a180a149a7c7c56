"""The retry policy and the request-weight budget, exactly (seeded jitter, fake clocks)."""

from __future__ import annotations

import asyncio
import random

import ccxt
import pytest

from trading_bot.exchange.budget import WeightBudget
from trading_bot.exchange.retry import RetryPolicy, is_transient


def policy(attempts=4, seed=7):
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    return RetryPolicy(attempts=attempts, base_delay=0.5, max_delay=4.0, rng=random.Random(seed), sleep=sleep), slept


async def test_transient_errors_are_retried_with_seeded_full_jitter():
    retry, slept = policy()
    calls = []

    async def flaky():
        calls.append(1)
        if len(calls) < 3:
            raise ccxt.RequestTimeout("slow")
        return "ok"

    assert await retry.run(flaky) == "ok"
    expected_rng = random.Random(7)
    assert slept == [expected_rng.uniform(0, 0.5), expected_rng.uniform(0, 1.0)]


async def test_exchange_errors_are_not_retried():
    retry, slept = policy()
    calls = []

    async def refused():
        calls.append(1)
        raise ccxt.InsufficientFunds("no margin")

    with pytest.raises(ccxt.InsufficientFunds):
        await retry.run(refused)
    assert len(calls) == 1 and slept == []


async def test_gives_up_after_the_last_attempt():
    retry, slept = policy(attempts=3)

    async def down():
        raise ccxt.ExchangeNotAvailable("503")

    with pytest.raises(ccxt.ExchangeNotAvailable):
        await retry.run(down)
    assert len(slept) == 2
    assert all(0 <= s <= 4.0 for s in slept)


async def test_cancellation_is_never_swallowed():
    retry = RetryPolicy()

    async def forever():
        await asyncio.sleep(10)

    task = asyncio.create_task(retry.run(forever))
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


def test_what_counts_as_transient():
    assert is_transient(ccxt.NetworkError("x")) and is_transient(ccxt.RateLimitExceeded("x"))
    assert is_transient(ccxt.DDoSProtection("x")) and is_transient(ccxt.ExchangeNotAvailable("x"))
    assert not is_transient(ccxt.ExchangeError("x")) and not is_transient(ccxt.InvalidOrder("x"))
    assert not is_transient(ccxt.InvalidNonce("x"))  # handled by a clock resync, not a blind retry
    assert not is_transient(ValueError("x"))


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_budget_never_exceeds_capacity_in_any_minute(monkeypatch):
    clock = FakeClock()
    waits: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        waits.append(seconds)
        clock.now += seconds

    monkeypatch.setattr("trading_bot.exchange.budget.asyncio.sleep", fake_sleep)
    budget = WeightBudget(limit_per_minute=100, headroom=1.0, clock=clock)
    stamps: list[tuple[float, int]] = []
    for i in range(60):
        weight = 5 if i % 3 == 0 else 2
        async with budget.take(weight):
            stamps.append((clock.now, weight))
        clock.now += 0.1
    for t0, _ in stamps:
        assert sum(w for t, w in stamps if t0 <= t < t0 + 60) <= 100
    assert waits, "the budget made callers wait"


async def test_pause_holds_every_caller(monkeypatch):
    clock = FakeClock()

    async def fake_sleep(seconds: float) -> None:
        clock.now += seconds

    monkeypatch.setattr("trading_bot.exchange.budget.asyncio.sleep", fake_sleep)
    budget = WeightBudget(limit_per_minute=2400, clock=clock)
    budget.pause(12.0, "exchange answered 429")
    start = clock.now
    async with budget.take(1):
        pass
    assert clock.now - start == pytest.approx(12.0)
    assert budget.paused_for == 0


def test_server_usage_raises_our_count():
    budget = WeightBudget(limit_per_minute=2400, headroom=0.8, clock=FakeClock())
    budget.observe_server_usage(1500)
    assert budget.used() == 1500
    budget.observe_server_usage(10)
    assert budget.used() == 1500
