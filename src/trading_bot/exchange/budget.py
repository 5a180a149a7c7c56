"""One request-weight budget for the whole process (Binance USDⓈ-M: 2400 weight per minute per IP).

Every request declares its weight and waits its turn (`async with budget.take(weight)`), so 500 bots
starting together cannot trip a 429 or a 418 ban. A sliding 60-second log guarantees the budget in
every minute, whichever way the exchange aligns its windows. A 429/418 answer pauses the whole
pool for the exchange's Retry-After, not just the bot that saw it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Callable

log = logging.getLogger(__name__)


WINDOW_S = 60.0


class WeightBudget:
    def __init__(self, limit_per_minute: int = 2400, headroom: float = 0.8,
                 clock: Callable[[], float] = time.monotonic) -> None:
        # Headroom: other clients on the same IP (the launcher's status, a second instance) share it.
        self.capacity = max(1, int(limit_per_minute * headroom))
        self.clock = clock
        self.window_s = WINDOW_S
        self._log: deque[tuple[float, int]] = deque()
        self._used = 0
        self._paused_until = 0.0
        self._lock = asyncio.Lock()
        self.waited_s = 0.0
        self.requests = 0

    def used(self) -> int:
        self._expire(self.clock())
        return self._used

    def _expire(self, now: float) -> None:
        while self._log and self._log[0][0] <= now - self.window_s:
            self._used -= self._log.popleft()[1]

    def _wait_needed(self, weight: int, now: float) -> float:
        if now < self._paused_until:
            return self._paused_until - now
        self._expire(now)
        if self._used + weight <= self.capacity or not self._log:
            return 0.0
        # Wait until enough of the oldest entries fall out of the window.
        freed, needed = 0, self._used + weight - self.capacity
        for stamp, w in self._log:
            freed += w
            if freed >= needed:
                return stamp + self.window_s - now
        return self.window_s

    @contextlib.asynccontextmanager
    async def take(self, weight: int = 1) -> AsyncIterator[None]:
        weight = min(max(1, weight), self.capacity)
        async with self._lock:  # first come, first served
            while True:
                now = self.clock()
                wait = self._wait_needed(weight, now)
                if wait <= 0:
                    break
                self.waited_s += wait
                await asyncio.sleep(wait)
            self._log.append((self.clock(), weight))
            self._used += weight
            self.requests += 1
        yield

    def pause(self, seconds: float, reason: str) -> None:
        """Stop every request for `seconds` (the exchange's Retry-After)."""
        until = self.clock() + seconds
        if until > self._paused_until:
            log.warning("%s: pausing every exchange request for %.1fs", reason, seconds)
            self._paused_until = until

    def observe_server_usage(self, used: int) -> None:
        """The exchange's own count (X-MBX-USED-WEIGHT-1M) includes other clients on our IP."""
        now = self.clock()
        self._expire(now)
        if used > self._used:
            self._log.append((now, used - self._used))
            self._used = used

    @property
    def paused_for(self) -> float:
        return max(0.0, self._paused_until - self.clock())

