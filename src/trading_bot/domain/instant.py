"""The order of events within one instant, across all bots on one wallet (pure).

The paper broker (through the heartbeat) and the portfolio backtest (backtest/portfolio.py) both run
`run_instant`, so a replay and the portfolio backtest make the same trades, sizes included, with any
number of bots and any MAX_OPEN_POSITIONS. At an instant t, with the bots in their fixed order (the
settings' symbol × timeframe order):

0. the account first: funding due at moments up to t is booked on the positions held
   (domain/funding_settlement.py), then the account rules see the instant (domain/protections.py):
   a new UTC day starts from the balance before any of t's exits;
1. every bot with a candle closing at t: a signal still waiting fills at that candle's open, then the
   candle's stop/target check; an exit is booked at once (wallet, the bot's stop-out streak, then the
   daily loss and drawdown limits);
2. every such bot, in the same order: its signal at the close, unless the bot is cooling down, checked
   against the account rules and the cap (open positions plus waiting signals) as they stand, so a
   position closed at t by any bot frees its slot, and a loss booked at t can stop every bot's entry;
3. every bot whose next candle opens at t with a signal waiting: the fill at that open, sized by the
   wallet as it stands (after every exit of t).

A 5m close is also a 1m close: all timeframes closing at t are one instant. With one bot this is
exactly `rules.on_closed_candle` followed by the fill at the next open.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from trading_bot.domain.funding_settlement import FundingPaid, FundingSettlement
from trading_bot.domain.protections import AccountGuard
from trading_bot.domain.rules import CandleOutcome, EntryGate, SizeFn, fill_pending, settle_candle, take_signal
from trading_bot.domain.trades import BotBook, ClosedTrade, Costs


@dataclass
class ClosingCandle:
    """One bot's candle that closes at this instant, with its score and the bot's parameters."""

    book: BotBook
    ts: int  # open time of the candle
    open: float
    high: float
    low: float
    score: float
    threshold: float
    sl_pct: float
    rr_ratio: float
    may_signal: bool = True


@dataclass
class OpeningCandle:
    """A bot's next candle opening at this instant (its signal, if one waits, fills at this price)."""

    book: BotBook
    ts: int
    open: float
    sl_pct: float
    rr_ratio: float


@dataclass
class Account:
    """One wallet's books and rules: what phase 0 settles and the gates ask."""

    guard: AccountGuard
    books: Sequence[BotBook]  # every bot's, in the bots' order
    funding: FundingSettlement | None = None  # None: no funding in these books (live books the exchange's)
    funding_paid: list[FundingPaid] = field(default_factory=list)  # booked since the owner last took them
    record_funding: bool = True  # keep what was paid (for the log); the backtest needs only the books

    def open_instant(self, now_ms: int) -> None:
        """Phase 0: funding due up to now, then the account rules' day."""
        if self.funding is not None:
            self.funding_paid += self.funding.settle(now_ms, self.books, self.guard, self.record_funding)
        self.guard.begin(now_ms)

    def take_funding_paid(self) -> list[FundingPaid]:
        paid, self.funding_paid = self.funding_paid, []
        return paid


def run_instant(now_ms: int, closing: Sequence[ClosingCandle], opening: Sequence[OpeningCandle], costs: Costs,
                size: SizeFn, entry_allowed: EntryGate, account: Account,
                on_booked: Callable[[ClosedTrade], None] | None = None) -> list[CandleOutcome]:
    """Apply the events of the instant `now_ms` in the documented order; returns one outcome per candle
    event. `entry_allowed` is the cap (and the operator's pause); `on_booked` sees each booked exit.
    Idempotent in phase 0, so an instant may be applied in parts (the portfolio backtest does)."""
    outcomes: list[CandleOutcome] = []
    settled: list[tuple[ClosingCandle, CandleOutcome]] = []
    account.open_instant(now_ms)  # 0. funding, the account rules' day
    guard = account.guard
    for c in closing:  # 1. fills still due and exits
        outcome = CandleOutcome()
        settle_candle(c.book, c.ts, c.open, c.high, c.low, c.sl_pct, c.rr_ratio, costs, size, outcome)
        if outcome.closed is not None:
            guard.book(c.book, outcome.closed)
            if on_booked is not None:
                on_booked(outcome.closed)
        settled.append((c, outcome))
        outcomes.append(outcome)

    for c, outcome in settled:  # 2. signals, each against the account rules and the cap as they stand
        gate = guard.entry_gate(c.book, c.ts, entry_allowed)
        take_signal(c.book, c.ts, c.score, c.threshold, gate if c.may_signal else False, outcome)
    for o in opening:  # 3. fills at the open
        book = o.book
        if book.pending is None or book.last_candle_ts is None or o.ts <= book.last_candle_ts:
            continue
        outcome = CandleOutcome()
        fill_pending(book, o.open, o.ts, o.sl_pct, o.rr_ratio, costs, size, outcome)
        outcomes.append(outcome)
    return outcomes
