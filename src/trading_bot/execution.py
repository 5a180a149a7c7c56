"""Execution: the Broker seam the heartbeat talks to, the books both brokers keep, and the
PaperBroker (DRY_RUN, the default). The LiveBroker is in live_broker.py.

The PaperBroker decides nothing itself: every fill, stop and target comes from trading_rules, the
same code the backtest runs, so paper trades and backtest trades agree. It only keeps the books
and the simulated USDT wallet; the Bot persists them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from trading_bot.candle_cache import HIGH, LOW, OPEN, TS
from trading_bot.risk import RiskLimits, may_open, position_size
from trading_bot.state import SavedState, Wallet, bot_id
from trading_bot.strategy_config import StrategyParams
from trading_bot.trading_rules import (
    BotBook,
    CandleOutcome,
    ClosedTrade,
    Costs,
    Position,
    fill_pending,
    on_closed_candle,
)


@dataclass
class BrokerEvents:
    opened: list[Position] = field(default_factory=list)
    closed: list[ClosedTrade] = field(default_factory=list)
    rejected: int = 0

    def add(self, outcome: CandleOutcome) -> None:
        if outcome.closed is not None:
            self.closed.append(outcome.closed)
        if outcome.opened is not None:
            self.opened.append(outcome.opened)
        if outcome.rejected is not None:
            self.rejected += 1

    def __bool__(self) -> bool:
        return bool(self.opened or self.closed or self.rejected)


class Broker(Protocol):
    name: str
    mode: str

    async def process_candles(self, symbol: str, timeframe: str, candles: np.ndarray, scores: np.ndarray,
                              params: StrategyParams) -> BrokerEvents: ...

    async def fill_at_open(self, symbol: str, timeframe: str, open_price: float, candle_ts: int,
                           params: StrategyParams) -> BrokerEvents: ...

    async def sync(self) -> BrokerEvents: ...

    def book(self, symbol: str, timeframe: str) -> BotBook: ...

    def open_positions(self) -> list[Position]: ...

    def pending_count(self) -> int: ...

    def snapshot(self) -> SavedState: ...


class Books:
    """The books of every bot and the wallet, as both brokers keep them."""

    mode = "paper"

    def __init__(self, keys: list[tuple[str, str]], initial_balance: float, limits: RiskLimits,
                 saved: SavedState | None) -> None:
        self.limits = limits
        self.wallet = saved.wallet if saved else Wallet(initial_balance, initial_balance)
        self.intents: dict[str, dict[str, Any]] = dict(saved.intents) if saved else {}
        self.books: dict[str, BotBook] = {}
        saved_books = saved.books if saved else {}
        for symbol, timeframe in keys:
            key = bot_id(symbol, timeframe)
            self.books[key] = saved_books.get(key) or BotBook(symbol, timeframe)
        # Books of bots not running this time are kept (and saved) so their positions are not lost.
        for key, book in saved_books.items():
            self.books.setdefault(key, book)

    def book(self, symbol: str, timeframe: str) -> BotBook:
        return self.books[bot_id(symbol, timeframe)]

    def open_positions(self) -> list[Position]:
        return [b.position for b in self.books.values() if b.position is not None]

    def pending_count(self) -> int:
        return sum(1 for b in self.books.values() if b.pending is not None)

    def entry_allowed(self, extra_pending: int = 0) -> bool:
        return may_open(len(self.open_positions()), self.pending_count() + extra_pending, self.limits)

    def snapshot(self) -> SavedState:
        return SavedState(self.wallet, self.books, mode=self.mode, intents=self.intents)

    async def sync(self) -> BrokerEvents:
        return BrokerEvents()


class PaperBroker(Books):
    name = "paper"

    def __init__(self, keys: list[tuple[str, str]], initial_balance: float, costs: Costs, limits: RiskLimits,
                 saved: SavedState | None = None) -> None:
        super().__init__(keys, initial_balance, limits, saved)
        self.costs = costs
        self.mode = saved.mode if saved else "paper"

    def _size(self, side: int, entry: float, stop: float) -> float:
        return position_size(self.wallet.balance, entry, stop, self.limits)

    async def process_candles(self, symbol: str, timeframe: str, candles: np.ndarray, scores: np.ndarray,
                              params: StrategyParams) -> BrokerEvents:
        """Run the rules over newly closed candles in order. Only the newest candle may signal an
        entry: older ones in the batch are catch-up after downtime, checked for exits only.
        (No await inside: bots evaluated together still run one after another, deterministically.)"""
        book = self.book(symbol, timeframe)
        events = BrokerEvents()
        last = candles.shape[0] - 1
        for i in range(candles.shape[0]):
            ts = int(candles[i, TS])
            if book.last_candle_ts is not None and ts <= book.last_candle_ts:
                continue
            outcome = on_closed_candle(
                book, ts, float(candles[i, OPEN]), float(candles[i, HIGH]), float(candles[i, LOW]),
                float(scores[i]), params.threshold, params.sl_pct, params.rr_ratio, self.costs, self._size,
                allow_entry=i == last and self.entry_allowed(),
            )
            if outcome.closed is not None:
                self.wallet.apply(outcome.closed)
            events.add(outcome)
        return events

    async def fill_at_open(self, symbol: str, timeframe: str, open_price: float, candle_ts: int,
                           params: StrategyParams) -> BrokerEvents:
        """The candle after the signal has opened: fill now rather than when it closes (same price)."""
        book = self.book(symbol, timeframe)
        events = BrokerEvents()
        if book.pending is None or book.last_candle_ts is None or candle_ts <= book.last_candle_ts:
            return events
        outcome = CandleOutcome()
        fill_pending(book, open_price, candle_ts, params.sl_pct, params.rr_ratio, self.costs, self._size, outcome)
        events.add(outcome)
        return events
