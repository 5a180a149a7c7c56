"""One request-weight budget for the whole process (Binance USDⓈ-M: 2400 weight per minute per IP).

Every request declares its weight and waits its turn (`async with budget.take(weight)`), so 500 bots
starting together cannot trip a 429 or a 418 ban. Two counts must both leave room:

- our own: a sliding 60-second log, kept under `headroom` of the limit in every minute, whichever
  way the exchange aligns its windows;
- the exchange's: the IP's used weight it reports on every answer (X-MBX-USED-WEIGHT-1M), which
  includes other clients on our IP. Each report holds for a window after it arrived; our requests
  in flight are added to it, since the report may not include them yet. When the last report is
  older than FRESH_S, other clients may have used anything since, so one request goes out alone and
  the rest wait for its answer (one round trip at a candle close, instead of a burst into a full
  minute: the requests in flight all get 429 and the exchange bans the IP). An answer slow in coming
  lets one more out each FRESH_S, so one hung request cannot stop the pool.

A 429/418 answer pauses every request, the waiting ones included, for the exchange's Retry-After.
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


FRESH_S = 1.0  # a report of the exchange's count older than this may miss other clients' requests


class WeightBudget:
    def __init__(self, limit_per_minute: int = 2400, headroom: float = 0.8,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = max(1, limit_per_minute)
        # Headroom: other clients on the same IP (the launcher's status, a second instance) share it.
        self.capacity = max(1, int(limit_per_minute * headroom))
        self.clock = clock
        self.window_s = WINDOW_S
        self.fresh_s = FRESH_S
        self._log: deque[tuple[float, int]] = deque()
        self._used = 0
        # The exchange's reports, (arrived, used): a sliding maximum, so an answer overtaken by a later
        # one (a smaller count) cannot lower the estimate within the window.
        self._reports: deque[tuple[float, int]] = deque()
        self._last_report = float("-inf")
        self._in_flight = 0  # weight admitted and not answered yet
        self._last_admitted = float("-inf")
        self._answered = asyncio.Event()
        self._paused_until = 0.0
        self._lock = asyncio.Lock()
        self.waited_s = 0.0
        self.requests = 0

    def used(self) -> int:
        """The weight counted against this minute: ours, or the exchange's count if higher."""
        now = self.clock()
        self._expire(now)
        return max(self._used, self._server_used())

    def _expire(self, now: float) -> None:
        while self._log and self._log[0][0] <= now - self.window_s:
            self._used -= self._log.popleft()[1]
        while self._reports and self._reports[0][0] <= now - self.window_s:
            self._reports.popleft()

    def _server_used(self) -> int:
        """The exchange's latest-known count plus our requests it may not have counted yet."""
        return (self._reports[0][1] if self._reports else 0) + self._in_flight

    def _wait_needed(self, weight: int, now: float) -> tuple[float, bool]:
        """(seconds to wait, whether an answer to a request in flight may end the wait sooner)."""
        if now < self._paused_until:
            return self._paused_until - now, False
        self._expire(now)
        if self._in_flight and now - self._last_report >= self.fresh_s:
            # The exchange's count may be out of date: one request at a time.
            wait = self._last_admitted + self.fresh_s - now
            if wait > 0:
                return wait, True
        if self._reports and self._server_used() + weight > self.limit:
            # The exchange says the room is not there: wait for a newer count or for this one to age
            # out of its window (then one request goes out alone to look again).
            return self._reports[0][0] + self.window_s - now, self._in_flight > 0
        if self._used + weight <= self.capacity or not self._log:
            return 0.0, False
        # Wait until enough of the oldest entries fall out of the window.
        freed, needed = 0, self._used + weight - self.capacity
        for stamp, w in self._log:
            freed += w
            if freed >= needed:
                return stamp + self.window_s - now, False
        return self.window_s, False

    @contextlib.asynccontextmanager
    async def take(self, weight: int = 1) -> AsyncIterator[None]:
        weight = min(max(0, weight), self.capacity)  # 0: counted under a limit of its own, still paused by a 429
        async with self._lock:  # first come, first served
            while True:
                now = self.clock()
                wait, an_answer_may_end_it = self._wait_needed(weight, now)
                if wait <= 0:
                    break
                if an_answer_may_end_it:
                    self._answered.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._answered.wait(), wait)
                    self.waited_s += self.clock() - now
                else:
                    self.waited_s += wait
                    await asyncio.sleep(wait)  # a pause that starts meanwhile is seen on waking
            self._last_admitted = self.clock()
            self._log.append((self._last_admitted, weight))
            self._used += weight
            self._in_flight += weight
            self.requests += 1
        try:
            yield
        finally:
            self._in_flight -= weight
            self._answered.set()

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
        while self._reports and self._reports[-1][1] <= used:
            self._reports.pop()
        self._reports.append((now, used))
        self._last_report = now

    @property
    def paused_for(self) -> float:
        return max(0.0, self._paused_until - self.clock())
