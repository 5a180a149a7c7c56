"""The tests' one clock: the daemon under test and the fake exchange read it; the test moves it."""

from __future__ import annotations

from trading_bot.engine.clock import ReplayClock

JAN_1_2026_MS = 1_767_225_600_000  # 2026-01-01 00:00 UTC


class SharedClock(ReplayClock):
    """Simulated time with wall-clock semantics (`simulated = False`: the daemon runs heartbeats, not
    candle jumps). Callable, so it can be a FakeBinance's `now_ms`. With `wake_every_ms`, the loop's
    every sleep moves time on by that much (one simulated minute per tick, say); without, the loop
    sleeps until the next candle is due, as in a replay."""

    simulated = False

    def __init__(self, start_ms: int, wake_every_ms: int | None = None) -> None:
        super().__init__(start_ms)
        self.wake_every_ms = wake_every_ms

    def __call__(self) -> int:
        return self._now

    def advance(self, ms: int) -> None:
        self._now += ms

    def next_wake_ms(self, now_ms: int, next_due_ms: int, heartbeat_ms: int) -> int:
        if self.wake_every_ms is not None:
            return now_ms + self.wake_every_ms
        return super().next_wake_ms(now_ms, next_due_ms, heartbeat_ms)
