"""Funding on the open positions (pure), as paper, the replay and the portfolio backtest book it.

At the start of an instant t (domain/instant.py, phase 0) every funding moment T with
last instant < T ≤ t is settled on the positions held then, moment by moment, each moment's
positions in the bots' order: payment = −side × qty × entry price × rate (domain/funding.py), into
the position's `funding` and the wallet, then the account limits are checked (once per moment). The entry price
stands in for Binance's mark price at T, which no candle series holds for every bot and moment; over
an 8-hour period the difference is the price move times 0.01 %. Live books the exchange's own
figures instead (its income history).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from trading_bot.domain.funding import FundingEvent, FundingSchedule, funding_payment
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
        self._next_ms: int | None = None  # the first moment of any known symbol after settled_ms (cached)

    def schedule(self, symbol: str) -> FundingSchedule:
        schedule = self.schedules.get(symbol)
        if schedule is None:
            schedule = self.schedules[symbol] = FundingSchedule(symbol)  # the default grid and rate
            self._next_ms = None
        return schedule

    def next_moment(self, after_ms: int, symbols: Sequence[str]) -> int:
        return min(self.schedule(symbol).next_after(after_ms).time_ms for symbol in symbols)

    def settle(self, until_ms: int, books: Sequence[BotBook], guard: AccountGuard,
               record: bool = True) -> list[FundingPaid]:
        """Book every funding moment in (settled_ms, until_ms] on the positions held now, moment by
        moment, then the account limits once per moment. The first call only marks the start: nothing
        was held before it. `record`: also return what was paid (the backtest needs only the books)."""
        after = self.settled_ms
        if after is not None and until_ms <= after:
            return []
        self.settled_ms = until_ms
        if after is None:
            for book in books:
                self.schedule(book.symbol)
            return []
        if self._next_ms is None or self._next_ms <= after:
            self._next_ms = self.next_moment(after, list(self.schedules))
        moment = self._next_ms
        paid: list[FundingPaid] = []
        while moment <= until_ms:
            events: dict[str, FundingEvent] = {}  # each symbol's event at or after this moment
            for book in books:
                position = book.position
                if position is None:
                    continue
                event = events.get(book.symbol)
                if event is None:
                    event = events[book.symbol] = self.schedule(book.symbol).next_after(moment - 1)
                if event.time_ms != moment:
                    continue  # this symbol pays at other moments (a 4-hour one, say)
                amount = funding_payment(position.side, position.qty, position.entry_price, event.rate)
                guard.fund(position, amount)
                if record:
                    paid.append(FundingPaid(book.symbol, book.timeframe, moment, event.rate, amount, event.from_history))
            guard.check()
            moment = self.next_moment(moment, list(self.schedules))
        self._next_ms = moment
        return paid

    def labels(self, symbols: Sequence[str]) -> dict[str, str]:
        """Per symbol: what its funding rests on (the history's span, or the default rate)."""
        return {symbol: self.schedule(symbol).label for symbol in symbols}
