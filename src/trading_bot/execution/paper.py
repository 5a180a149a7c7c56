"""PaperBroker (DRY_RUN, the default): decides nothing itself. Every fill, stop and target comes from
domain.rules, the same code the backtest runs, so paper trades and backtest trades agree; it only
keeps the books and the simulated USDT wallet."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from trading_bot.domain.candles import HIGH, LOW, OPEN, TS
from trading_bot.domain.funding_settlement import FundingSettlement
from trading_bot.domain.instant import Account, ClosingCandle, OpeningCandle, run_instant
from trading_bot.domain.params import StrategyParams
from trading_bot.domain.protections import ProtectionLimits
from trading_bot.domain.rules import close_position, on_closed_candle
from trading_bot.domain.sizing import RiskLimits, position_size
from trading_bot.domain.timeframes import timeframe_ms
from trading_bot.domain.trades import Costs
from trading_bot.domain.wallet import SavedState, bot_id
from trading_bot.execution.broker import Books, BrokerEvents


@dataclass(frozen=True)
class NewCandles:
    """One bot's newly closed candles (the newest closes now) and their scores."""

    symbol: str
    timeframe: str
    candles: np.ndarray
    scores: np.ndarray
    params: StrategyParams


@dataclass(frozen=True)
class Forming:
    """A bot's candle now forming: a signal waiting fills at its open."""

    symbol: str
    timeframe: str
    open: float
    ts: int
    params: StrategyParams


class PaperBroker(Books):
    name = "paper"

    def __init__(self, keys: list[tuple[str, str]], initial_balance: float, costs: Costs, limits: RiskLimits,
                 saved: SavedState | None = None, mode: str = "paper",
                 protections: ProtectionLimits | None = None, funding: FundingSettlement | None = None) -> None:
        super().__init__(keys, initial_balance, limits, saved, protections)
        self.costs = costs
        self.mode = mode  # "paper" or "replay": saved with the books, shown in status
        if funding is not None and saved is not None:
            funding.settled_ms = saved.funding_settled_ms
        self.account = Account(self.guard, list(self.books.values()), funding)

    def add_bots(self, keys: list[tuple[str, str]]) -> None:
        super().add_bots(keys)
        self.account.books = list(self.books.values())  # funding is settled over every book

    def _size(self, side: int, entry: float, stop: float) -> float:
        return position_size(self.wallet.balance, entry, stop, self.limits)

    async def process_candles(self, symbol: str, timeframe: str, candles: np.ndarray, scores: np.ndarray,
                              params: StrategyParams) -> BrokerEvents:
        """One bot's newly closed candles: the instant of the newest close, this bot alone."""
        return await self.process_instant(self.clock_of(candles, timeframe),
                                          [NewCandles(symbol, timeframe, candles, scores, params)], [])

    @staticmethod
    def clock_of(candles: np.ndarray, timeframe: str) -> int:
        return int(candles[-1, TS]) + timeframe_ms(timeframe) if candles.shape[0] else 0

    async def process_instant(self, now_ms: int, new: Sequence[NewCandles], forming: Sequence[Forming]) -> BrokerEvents:
        """One heartbeat's candles, every bot at once, in domain/instant.py's order of events (the
        portfolio backtest runs the same function). Older candles in a bot's batch are catch-up after
        downtime: checked for exits first (each at its own instant), never signalling.
        (No await inside: the instant is applied whole, deterministically.)"""
        events = BrokerEvents()
        closing: list[ClosingCandle] = []
        account, guard = self.account, self.guard
        for bot in new:
            book = self.book(bot.symbol, bot.timeframe)
            p = bot.params
            tf_ms = timeframe_ms(bot.timeframe)
            rows = [i for i in range(bot.candles.shape[0])
                    if book.last_candle_ts is None or int(bot.candles[i, TS]) > book.last_candle_ts]
            for i in rows[:-1]:
                c = bot.candles[i]
                account.open_instant(int(c[TS]) + tf_ms)
                outcome = on_closed_candle(book, int(c[TS]), float(c[OPEN]), float(c[HIGH]), float(c[LOW]),
                                           float(bot.scores[i]), p.threshold, p.sl_pct, p.rr_ratio, self.costs,
                                           self._size, allow_entry=False)
                if outcome.closed is not None:
                    guard.book(book, outcome.closed)
                events.add(outcome)
            if rows:
                i = rows[-1]
                c = bot.candles[i]
                closing.append(ClosingCandle(book, int(c[TS]), float(c[OPEN]), float(c[HIGH]), float(c[LOW]),
                                             float(bot.scores[i]), p.threshold, p.sl_pct, p.rr_ratio))
        opening = [OpeningCandle(self.book(f.symbol, f.timeframe), f.ts, f.open, f.params.sl_pct, f.params.rr_ratio)
                   for f in forming]
        for outcome in run_instant(now_ms, closing, opening, self.costs, self._size, self.entry_allowed, account):
            events.add(outcome)
        events.funding = account.take_funding_paid()
        return events

    def snapshot(self) -> SavedState:
        state = super().snapshot()
        funding = self.account.funding
        state.funding_settled_ms = funding.settled_ms if funding is not None else None
        return state

    async def fill_at_open(self, symbol: str, timeframe: str, open_price: float, candle_ts: int,
                           params: StrategyParams) -> BrokerEvents:
        """The candle after the signal has opened: fill now rather than when it closes (same price)."""
        return await self.process_instant(candle_ts, [], [Forming(symbol, timeframe, open_price, candle_ts, params)])

    async def flatten(self, symbols: set[str] | None, marks: dict[str, float], now_ms: int) -> BrokerEvents:
        """`trading-bot flatten`: close at the last close (plus the exit fee, as every paper exit)."""
        events = BrokerEvents()
        for book in self.held(symbols):
            position = book.position
            assert position is not None
            price = marks.get(bot_id(book.symbol, book.timeframe), position.entry_price)
            trade = close_position(position, "flatten", price, now_ms, self.costs)
            book.position = None
            self.guard.book(book, trade)
            events.closed.append(trade)
        return events
