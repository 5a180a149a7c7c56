"""Funding on the open positions (pure), as paper, the replay and the portfolio backtest book it.

At the start of an instant t (domain/instant.py, phase 0) every funding moment T with
last instant < T ≤ t is settled on the positions held then, moment by moment, each moment's
positions in the bots' order: payment = −side × qty × entry price × rate (domain/funding.py), into
the position's `funding` and the wallet, then the account limits are checked. The entry price
stands in for Binance's mark price at T, which no candle series holds for every bot and moment; over
an 8-hour period the difference is the price move times 0.01 %. Live books the exchange's own
figures instead (its income history).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from trading_bot.domain.funding import FundingSchedule, funding_payment
from trading_bot.domain.protections import AccountGuard
from trading_bot.domain.trades import BotBook


@dataclass(frozen=True)
class FundingPaid:
    symbol: str
    timeframe: str
    time_ms: int
    rate: float
    amount: float  # credited to the wallet (negative: paid)
    from_history: bool


class FundingSettlement:
    def __init__(self, schedules: Mapping[str, FundingSchedule], settled_ms: int | None = None) -> None:
        self.schedules = dict(schedules)
        self.settled_ms = settled_ms  # funding moments up to here are booked (None: nothing yet)

    def schedule(self, symbol: str) -> FundingSchedule:
        schedule = self.schedules.get(symbol)
        if schedule is None:
            schedule = self.schedules[symbol] = FundingSchedule(symbol)  # the default grid and rate
        return schedule

    def settle(self, until_ms: int, books: Sequence[BotBook], guard: AccountGuard) -> list[FundingPaid]:
        """Book every funding moment in (settled_ms, until_ms] on the positions held now. The first
        call only marks the start: nothing was held before it."""
        after = self.settled_ms
        if after is not None and until_ms <= after:
            return []
        self.settled_ms = until_ms
        if after is None:
            return []
        due = []
        for order, book in enumerate(books):
            if book.position is not None:
                due += [(event.time_ms, order, event) for event in self.schedule(book.symbol).events_between(after, until_ms)]
        paid = []
        for time_ms, order, event in sorted(due, key=lambda d: (d[0], d[1])):
            book = books[order]
            position = book.position
            assert position is not None
            amount = funding_payment(position.side, position.qty, position.entry_price, event.rate)
            guard.fund(position, amount)
            paid.append(FundingPaid(book.symbol, book.timeframe, time_ms, event.rate, amount, event.from_history))
        return paid

    def next_moment_after(self, after_ms: int, symbols: Sequence[str], until_ms: int) -> int | None:
        """The first funding moment of any of `symbols` after after_ms (and ≤ until_ms), if any."""
        window = 8 * 3_600_000
        start = after_ms
        while start < until_ms:
            end = min(until_ms, start + window)
            firsts = [events[0].time_ms for events in
                      (self.schedule(symbol).events_between(start, end) for symbol in symbols) if events]
            if firsts:
                return min(firsts)
            start, window = end, window * 4
        return None

    def labels(self, symbols: Sequence[str]) -> dict[str, str]:
        """Per symbol: what its funding rests on (the history's span, or the default rate)."""
        return {symbol: self.schedule(symbol).label for symbol in symbols}
