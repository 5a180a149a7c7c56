"""Execution: the Broker seam the heartbeat talks to, the books both brokers keep, and the
PaperBroker (DRY_RUN, the default). The LiveBroker is in execution/live/broker.py.

The PaperBroker decides nothing itself: every fill, stop and target comes from trading_rules, the
same code the backtest runs, so paper trades and backtest trades agree. It only keeps the books
and the simulated USDT wallet; the Bot persists them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from trading_bot.domain.funding_settlement import FundingPaid
from trading_bot.domain.intents import OrderIntent
from trading_bot.domain.params import StrategyParams
from trading_bot.domain.protections import AccountGuard, ProtectionLimits, TradingState, trading_state
from trading_bot.domain.rules import CandleOutcome
from trading_bot.domain.sizing import RiskLimits, may_open
from trading_bot.domain.trades import BotBook, ClosedTrade, Position
from trading_bot.domain.universe import busy_symbols
from trading_bot.domain.wallet import SavedState, Wallet, bot_id
from trading_bot.execution.latency import LatencyStats


@dataclass
class BrokerEvents:
    opened: list[Position] = field(default_factory=list)
    closed: list[ClosedTrade] = field(default_factory=list)
    rejected: int = 0
    funding: list[FundingPaid] = field(default_factory=list)

    def add(self, outcome: CandleOutcome) -> None:
        if outcome.closed is not None:
            self.closed.append(outcome.closed)
        if outcome.opened is not None:
            self.opened.append(outcome.opened)
        if outcome.rejected is not None:
            self.rejected += 1

    def __bool__(self) -> bool:
        return bool(self.opened or self.closed or self.rejected or self.funding)


class Broker(Protocol):
    """What the heartbeat, the status report and the shutdown use of a broker (paper or live)."""

    name: str
    mode: str
    wallet: Wallet
    halted: str | None  # why new entries are refused (live: set by reconciliation)
    stopping: bool  # a stop was requested: no new entries
    paused: bool  # `trading-bot pause`: no new entries (saved with the books)
    reconcile_requested: bool  # an order's outcome is unknown: reconcile at the next heartbeat
    intents: dict[str, OrderIntent]  # orders sent whose outcome is not booked yet (live), by client id

    async def process_candles(self, symbol: str, timeframe: str, candles: np.ndarray, scores: np.ndarray,
                              params: StrategyParams) -> BrokerEvents: ...

    async def fill_at_open(self, symbol: str, timeframe: str, open_price: float, candle_ts: int,
                           params: StrategyParams) -> BrokerEvents: ...

    async def sync(self) -> BrokerEvents: ...

    async def flatten(self, symbols: set[str] | None, marks: dict[str, float], now_ms: int) -> BrokerEvents:
        """Close the open positions (of `symbols`, or all) now: paper at `marks` (bot id -> last
        close), live at market. The closed trades come back as events, for the recorder."""

    def book(self, symbol: str, timeframe: str) -> BotBook: ...

    def add_bots(self, keys: list[tuple[str, str]]) -> None: ...

    def remove_bots(self, keys: list[tuple[str, str]]) -> None: ...

    def busy_symbols(self) -> set[str]: ...

    def held(self, symbols: set[str] | None) -> list[BotBook]: ...

    def pause(self) -> int: ...

    def resume(self) -> list[str]: ...

    def trading_state(self) -> TradingState: ...

    def open_positions(self) -> list[Position]: ...

    def pending_count(self) -> int: ...

    def snapshot(self) -> SavedState: ...

    @property
    def latency(self) -> LatencyStats | None:
        """Entry latency (live only); read-only here, so a broker whose figures always exist matches."""

    @property
    def stream_state(self) -> str | None:
        """The user data stream (live only: connected, connecting, reconnecting or off); None in paper."""

    async def protect_unprotected(self) -> int: ...


class Books:
    """The books of every bot and the wallet, as both brokers keep them."""

    mode = "paper"
    latency: LatencyStats | None = None
    halted: str | None = None
    stopping = False
    reconcile_requested = False

    def __init__(self, keys: list[tuple[str, str]], initial_balance: float, limits: RiskLimits,
                 saved: SavedState | None, protections: ProtectionLimits | None = None) -> None:
        self.limits = limits
        self.wallet = saved.wallet if saved else Wallet(initial_balance, initial_balance)
        self.guard = AccountGuard(protections or ProtectionLimits(), self.wallet, saved.guard if saved else None)
        self.intents: dict[str, OrderIntent] = dict(saved.intents) if saved else {}
        self.paused = saved.paused if saved else False
        self.books: dict[str, BotBook] = {}
        self.keys: list[tuple[str, str]] = []  # the running bots (the symbol universe may change them)
        self.symbols: list[str] = []
        saved_books = saved.books if saved else {}
        for symbol, timeframe in keys:
            key = bot_id(symbol, timeframe)
            self.books[key] = saved_books.get(key) or BotBook(symbol, timeframe)
        # Books of bots not running this time are kept (and saved) so their positions are not lost.
        for key, book in saved_books.items():
            self.books.setdefault(key, book)
        self._set_keys(list(keys))

    def _set_keys(self, keys: list[tuple[str, str]]) -> None:
        self.keys = keys
        self.symbols = sorted({symbol for symbol, _ in keys})

    def add_bots(self, keys: list[tuple[str, str]]) -> None:
        """Bots of symbols the universe added: a saved book is taken up again (its cooldown with it),
        else a new one."""
        for symbol, timeframe in keys:
            self.books.setdefault(bot_id(symbol, timeframe), BotBook(symbol, timeframe))
        self._set_keys([*self.keys, *(key for key in keys if key not in self.keys)])

    def remove_bots(self, keys: list[tuple[str, str]]) -> None:
        """Flat bots the universe dropped. Their books stay and are saved, as those of a symbol taken out
        of TRADING_SYMBOLS between runs: flat, they hold only the cooldown and the last candle seen."""
        gone = set(keys)
        self._set_keys([key for key in self.keys if key not in gone])

    def busy_symbols(self) -> set[str]:
        return busy_symbols(self.books.values(), self.intents.values())

    @property
    def stream_state(self) -> str | None:
        return None  # paper: no exchange account to stream

    def book(self, symbol: str, timeframe: str) -> BotBook:
        return self.books[bot_id(symbol, timeframe)]

    def held(self, symbols: set[str] | None) -> list[BotBook]:
        """The books with an open position, of `symbols` (None: every symbol)."""
        return [b for b in self.books.values() if b.position is not None and (symbols is None or b.symbol in symbols)]

    def pause(self) -> int:
        """No new entries from now on; signals already waiting for their fill are dropped (an entry).
        Returns how many were dropped."""
        self.paused = True
        dropped = [b for b in self.books.values() if b.pending is not None]
        for book in dropped:
            book.pending = None
        return len(dropped)

    def resume(self) -> list[str]:
        """`trading-bot resume`: the operator's pause and a drawdown halt are lifted (reconciliation's
        halt stays until reconciliation clears it). Returns what was lifted."""
        lifted = ["the pause"] if self.paused else []
        self.paused = False
        halt = self.guard.resume()
        if halt:
            lifted.append(f"the halt ({halt})")
        return lifted

    def trading_state(self) -> TradingState:
        """active, reducing (no new entries; clears by itself) or halted (until someone acts), and why."""
        halts = [f"reconciliation: {self.halted}"] if self.halted else []
        halts += ["paused by the operator"] if self.paused else []
        halts += self.guard.halts()
        reductions = ["shutting down"] if self.stopping else []
        return trading_state(halts, reductions + self.guard.reductions())

    def open_positions(self) -> list[Position]:
        return [b.position for b in self.books.values() if b.position is not None]

    def pending_count(self) -> int:
        return sum(1 for b in self.books.values() if b.pending is not None)

    def entry_allowed(self, extra_pending: int = 0) -> bool:
        if not self.trading_state().allows_entries:
            return False
        return may_open(len(self.open_positions()), self.pending_count() + extra_pending, self.limits)

    def snapshot(self) -> SavedState:
        return SavedState(self.wallet, self.books, mode=self.mode, intents=self.intents, paused=self.paused,
                          guard=self.guard.record)

    async def sync(self) -> BrokerEvents:
        return BrokerEvents()

    async def protect_unprotected(self) -> int:
        """Place whatever stop or target an open position lacks; nothing to do on paper."""
        return 0

