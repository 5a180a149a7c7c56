"""Funding of perpetual futures: when it is paid, at which rate, and how much.

Binance charges funding every 8 hours (00:00, 08:00 and 16:00 UTC; some symbols every 4 hours) on
the position held at that moment: a long pays a short when the rate is positive. A symbol's
`FundingSchedule` lists those moments from the rates the exchange recorded (the funding CSV cache);
outside the stretch its history covers it falls back to the 8-hour grid at DEFAULT_FUNDING_RATE,
and every event says which of the two it came from.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Iterable
from dataclasses import dataclass
from typing import NamedTuple

from trading_bot.domain.formatting import format_ms

# Binance's rate is the premium index plus clamp(interest rate − premium index, −0.05 %, +0.05 %),
# with an interest rate of 0.03 % a day, 0.01 % per 8 hours. While the premium stays inside that
# band the clamp returns exactly the interest rate, so 0.01 % is the rate most 8-hour periods
# settle at, and the least surprising one to assume where no history is cached.
DEFAULT_FUNDING_RATE = 0.0001


FUNDING_INTERVAL_MS = 8 * 3_600_000  # the default grid: 00:00, 08:00, 16:00 UTC


MINUTE_MS = 60_000


class FundingEvent(NamedTuple):
    time_ms: int  # the funding moment, floored to the minute
    rate: float  # fraction of the position's notional; positive: longs pay shorts
    from_history: bool  # False: the default grid and rate (no recorded rate covers this moment)


def funding_payment(side: int, qty: float, price: float, rate: float) -> float:
    """What one funding event credits to the wallet (negative: paid) for a position of `side`
    (LONG 1, SHORT -1) and `qty` at the mark `price`: a long pays when the rate is positive."""
    return -side * qty * price * rate


def floor_to_minute(time_ms: int) -> int:
    """Binance stamps funding a few ms after the moment (…00:00.007); the moment is the minute."""
    return time_ms // MINUTE_MS * MINUTE_MS


def default_funding_times(after_ms: int, until_ms: int) -> list[int]:
    """The 8-hour grid's moments T with after_ms < T ≤ until_ms."""
    first = (after_ms // FUNDING_INTERVAL_MS + 1) * FUNDING_INTERVAL_MS
    return list(range(first, until_ms + 1, FUNDING_INTERVAL_MS))


@dataclass(frozen=True)
class FundingSchedule:
    """One symbol's funding moments. Build it with `from_records`; `times` are ascending minutes
    without duplicates and `rates` the rate at each."""

    symbol: str
    times: tuple[int, ...] = ()
    rates: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        if len(self.times) != len(self.rates):
            raise ValueError("times and rates differ in length")
        if any(b <= a for a, b in zip(self.times, self.times[1:])):
            raise ValueError("funding times must be ascending without duplicates")

    @classmethod
    def from_records(cls, symbol: str, records: Iterable[tuple[int, float]]) -> FundingSchedule:
        """From (funding_time_ms, rate) pairs as the exchange recorded them, in any order. Times are
        floored to the minute; of two records of one minute the later in `records` wins."""
        by_minute: dict[int, float] = {}
        for time_ms, rate in records:
            if not math.isfinite(rate):
                raise ValueError(f"{symbol}: funding rate {rate!r} at {time_ms} is not a number")
            by_minute[floor_to_minute(int(time_ms))] = float(rate)
        times = tuple(sorted(by_minute))
        return cls(symbol, times, tuple(by_minute[t] for t in times))

    @property
    def has_history(self) -> bool:
        return bool(self.times)

    @property
    def label(self) -> str:
        """What the schedule rests on, for a report line."""
        if not self.times:
            return f"default rate {DEFAULT_FUNDING_RATE:.4%} per 8 h (no funding history cached)"
        return (f"funding history: {len(self.times):,} rates, {format_ms(self.times[0])} → "
                f"{format_ms(self.times[-1])} UTC; default rate {DEFAULT_FUNDING_RATE:.4%} per 8 h outside it")

    def events_between(self, after_ms: int, until_ms: int) -> list[FundingEvent]:
        """Every funding moment T with after_ms < T ≤ until_ms, ascending: inside the stretch the
        history covers (its first to its last recorded moment) exactly the recorded ones, outside
        it the 8-hour grid at DEFAULT_FUNDING_RATE."""
        if until_ms <= after_ms:
            return []
        if not self.times:
            return [FundingEvent(t, DEFAULT_FUNDING_RATE, False) for t in default_funding_times(after_ms, until_ms)]
        first, last = self.times[0], self.times[-1]
        before = [FundingEvent(t, DEFAULT_FUNDING_RATE, False)
                  for t in default_funding_times(after_ms, min(until_ms, first - 1))]
        lo, hi = bisect_right(self.times, after_ms), bisect_right(self.times, until_ms)
        recorded = [FundingEvent(self.times[i], self.rates[i], True) for i in range(lo, hi)]
        after = [FundingEvent(t, DEFAULT_FUNDING_RATE, False)
                 for t in default_funding_times(max(after_ms, last), until_ms)]
        return before + recorded + after

    def next_after(self, after_ms: int) -> FundingEvent:
        """The first funding moment after after_ms: the one `events_between(after_ms, …)` starts with
        (the schedule has no end: past its history, the default grid)."""
        grid = (after_ms // FUNDING_INTERVAL_MS + 1) * FUNDING_INTERVAL_MS
        times = self.times
        if times:
            if after_ms < times[0]:
                if grid < times[0]:
                    return FundingEvent(grid, DEFAULT_FUNDING_RATE, False)
                return FundingEvent(times[0], self.rates[0], True)
            if after_ms < times[-1]:
                i = bisect_right(times, after_ms)
                return FundingEvent(times[i], self.rates[i], True)
            grid = (times[-1] // FUNDING_INTERVAL_MS + 1) * FUNDING_INTERVAL_MS if grid <= times[-1] else grid
        return FundingEvent(grid, DEFAULT_FUNDING_RATE, False)
