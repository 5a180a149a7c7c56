"""Clocks: the wall clock for live and paper runs, a simulated one for replay. Only the clock and
the candle source differ between a live run and a replay; the heartbeat loop is the same."""

from __future__ import annotations

import asyncio
import time
from typing import Protocol

# Wake this long after a candle closes: the exchange needs a moment to publish the closed candle.
CLOSE_GRACE_MS = 100


class Clock(Protocol):
    simulated: bool

    def now_ms(self) -> int: ...

    def next_wake_ms(self, now_ms: int, next_due_ms: int, heartbeat_ms: int) -> int: ...

    async def sleep_until(self, wake_ms: int, stop: asyncio.Event) -> None: ...


async def _wait(stop: asyncio.Event, seconds: float) -> None:
    if seconds <= 0:
        await asyncio.sleep(0)
        return
    try:
        await asyncio.wait_for(stop.wait(), seconds)
    except TimeoutError:
        pass


class LiveClock:
    simulated = False

    def now_ms(self) -> int:
        return int(time.time() * 1000)

    def next_wake_ms(self, now_ms: int, next_due_ms: int, heartbeat_ms: int) -> int:
        """The next heartbeat, or sooner if a candle closes first (entries right after the close)."""
        return min(now_ms + heartbeat_ms, max(now_ms, next_due_ms + CLOSE_GRACE_MS))

    async def sleep_until(self, wake_ms: int, stop: asyncio.Event) -> None:
        await _wait(stop, (wake_ms - self.now_ms()) / 1000)


class FastClock(LiveClock):
    """The wall clock run `speed` times faster from `origin_ms` (an epoch ms at which both agree).
    For demos on the synthetic market and tests against a local fake exchange: two processes given
    the same speed and origin read the same time without talking to each other."""

    def __init__(self, speed: float, origin_ms: int | None = None) -> None:
        self.speed = speed
        self.origin_ms = int(time.time() * 1000) if origin_ms is None else origin_ms

    def now_ms(self) -> int:
        return fast_time_ms(self.speed, self.origin_ms)

    async def sleep_until(self, wake_ms: int, stop: asyncio.Event) -> None:
        await _wait(stop, (wake_ms - self.now_ms()) / 1000 / self.speed)


def fast_time_ms(speed: float, origin_ms: int) -> int:
    """Epoch ms on a clock that agrees with the wall clock at origin_ms and runs `speed` times faster."""
    return origin_ms + int((time.time() * 1000 - origin_ms) * speed)


def wall_clock(speed: float = 1.0, origin_ms: int | None = None) -> LiveClock:
    return LiveClock() if speed == 1.0 else FastClock(speed, origin_ms)


class ReplayClock:
    """Simulated time: jumps straight to the next candle close (speed None = as fast as possible),
    or sleeps the simulated gap divided by `speed`."""

    simulated = True

    def __init__(self, start_ms: int, speed: float | None = None) -> None:
        self._now = start_ms
        self.speed = speed

    def now_ms(self) -> int:
        return self._now

    def next_wake_ms(self, now_ms: int, next_due_ms: int, heartbeat_ms: int) -> int:
        return max(now_ms + 1, next_due_ms)

    async def sleep_until(self, wake_ms: int, stop: asyncio.Event) -> None:
        if self.speed:
            await _wait(stop, (wake_ms - self._now) / 1000 / self.speed)
        else:
            await asyncio.sleep(0)
        if not stop.is_set():
            self._now = max(self._now, wake_ms)

