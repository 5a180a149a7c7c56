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


async def _admitted(budget: WeightBudget, weight: int, admitted: list[int], release: asyncio.Event) -> None:
    async with budget.take(weight):
        admitted.append(weight)
        await release.wait()


_yield = asyncio.sleep  # the real one: some tests replace asyncio.sleep with a fake clock's


async def _settle() -> None:
    for _ in range(20):
        await _yield(0)


async def test_the_exchange_count_plus_our_requests_in_flight_bound_what_goes_out(monkeypatch):
    clock = FakeClock()
    slept: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        slept.append(seconds)
        clock.now += seconds

    monkeypatch.setattr("trading_bot.exchange.budget.asyncio.sleep", fake_sleep)
    budget = WeightBudget(limit_per_minute=100, headroom=0.8, clock=clock)
    budget.observe_server_usage(90)  # other clients on our IP: 90 of 100 used, fresh
    admitted: list[int] = []
    first, second = asyncio.Event(), asyncio.Event()
    tasks = [asyncio.create_task(_admitted(budget, 6, admitted, first)),
             asyncio.create_task(_admitted(budget, 6, admitted, second))]
    await _settle()
    assert admitted == [6], "90 + 6 in flight + 6 would pass the exchange's limit"
    assert budget.used() == 96
    budget.observe_server_usage(40)  # an answer overtaken by a later one cannot lower the count
    assert budget.used() == 96
    budget.observe_server_usage(96)  # the first request's answer
    first.set()
    await _settle()
    second.set()
    await asyncio.wait_for(tasks[1], 1)
    assert admitted == [6, 6]
    assert slept == [pytest.approx(60.0)], "the second waited for the exchange's count to age out"
    await asyncio.gather(*tasks)


async def test_an_old_count_lets_one_request_out_and_the_rest_wait_for_its_answer():
    clock = FakeClock()
    budget = WeightBudget(limit_per_minute=100, clock=clock)
    budget.observe_server_usage(1)
    clock.now += budget.fresh_s  # since then other clients may have used anything
    admitted: list[int] = []
    probe, rest = asyncio.Event(), asyncio.Event()
    tasks = [asyncio.create_task(_admitted(budget, 1, admitted, probe))]
    tasks += [asyncio.create_task(_admitted(budget, 1, admitted, rest)) for _ in range(5)]
    await _settle()
    assert admitted == [1]
    budget.observe_server_usage(97)  # the probe's answer: other clients left 3
    probe.set()
    await _settle()
    assert admitted == [1] * 4, "as many as the exchange's count has room for, in flight at once"
    rest.set()
    clock.now += 60
    await _settle()
    await asyncio.gather(*tasks)
    assert admitted == [1] * 6


async def test_a_pause_that_starts_while_requests_wait_holds_them_all(monkeypatch):
    clock = FakeClock()
    slept: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        slept.append(seconds)
        clock.now += seconds

    budget = WeightBudget(limit_per_minute=100, clock=clock)
    admitted: list[int] = []
    probe, rest = asyncio.Event(), asyncio.Event()
    tasks = [asyncio.create_task(_admitted(budget, 1, admitted, probe))]
    tasks += [asyncio.create_task(_admitted(budget, 1, admitted, rest)) for _ in range(3)]
    await _settle()
    assert admitted == [1], "no count from the exchange yet: one request alone"
    monkeypatch.setattr("trading_bot.exchange.budget.asyncio.sleep", fake_sleep)
    budget.pause(5.0, "exchange answered 429")  # the probe's answer
    budget.observe_server_usage(100)
    probe.set()
    rest.set()
    await asyncio.gather(*tasks)
    assert slept and slept[0] == pytest.approx(5.0), "the waiting ones waited out Retry-After first"
    assert admitted == [1] * 4 and clock.now >= 1005.0


async def test_a_request_of_weight_0_counts_nothing_but_still_waits_out_a_pause(monkeypatch):
    clock = FakeClock()

    async def fake_sleep(seconds: float) -> None:
        clock.now += seconds

    monkeypatch.setattr("trading_bot.exchange.budget.asyncio.sleep", fake_sleep)
    budget = WeightBudget(limit_per_minute=10, headroom=1.0, clock=clock)
    start = clock.now
    for _ in range(50):  # Binance's funding-rate history weighs 0 (it has a limit of its own)
        async with budget.take(0):
            pass
    assert budget.used() == 0 and clock.now == start and budget.requests == 50  # never waited
    budget.pause(3.0, "exchange answered 429")
    async with budget.take(0):
        pass
    assert clock.now - start == pytest.approx(3.0)


def test_the_funding_endpoints_share_a_limit_of_their_own():
    from trading_bot.exchange.client import WEIGHTS, ExchangeClient

    client = ExchangeClient("binanceusdm")
    own = client._own_budget("fetch_funding_rate_history")
    assert own is not None and own is client._own_budget("fetch_funding_intervals")  # one limit for both
    assert (own.limit, own.capacity, own.window_s) == (500, 400, 300.0)  # 500 per 5 minutes, with our headroom
    assert client._own_budget("fetch_ohlcv") is None and client._own_budget("fetch_funding_history") is None
    assert WEIGHTS["fetch_funding_rate_history"] == 0 and WEIGHTS["fetch_funding_history"] == 30
