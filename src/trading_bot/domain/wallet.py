"""The account as the bot books it: the wallet, the key of one bot's books, and the snapshot of
everything that survives a restart (wallet, books, live order intents, replay clock, paused, the
account rules' record)."""

from __future__ import annotations

from dataclasses import dataclass, field

from trading_bot.domain.intents import OrderIntent
from trading_bot.domain.trades import BotBook, ClosedTrade


def bot_id(symbol: str, timeframe: str) -> str:
    return f"{symbol}|{timeframe}"


@dataclass
class Wallet:
    initial_balance: float
    balance: float
    fees_paid: float = 0.0
    trades: int = 0
    wins: int = 0
    funding: float = 0.0  # funding booked (+ received, − paid); already in the balance

    def add_funding(self, amount: float) -> None:
        self.balance += amount
        self.funding += amount

    @property
    def realised_pnl(self) -> float:
        return self.balance - self.initial_balance

    def apply(self, trade: ClosedTrade) -> None:
        self.balance += trade.pnl
        self.fees_paid += trade.entry_fee + trade.exit_fee
        self.trades += 1
        self.wins += trade.pnl > 0


@dataclass
class GuardRecord:
    """What the account rules (domain/protections.py) remember, saved with the books so a restart
    changes nothing."""

    day: int | None = None  # the UTC day (days since the epoch) of the last instant seen
    day_start_balance: float | None = None
    peak_balance: float | None = None
    daily_limit_day: int | None = None  # the UTC day on which the daily loss limit was reached
    drawdown_halt: str | None = None  # why entries are halted until an operator resumes


@dataclass
class SavedState:
    wallet: Wallet
    books: dict[str, BotBook] = field(default_factory=dict)
    clock_ms: int | None = None
    mode: str = "paper"
    # Live: every order we mean to send, recorded before it is sent (client order id -> intent).
    intents: dict[str, OrderIntent] = field(default_factory=dict)
    paused: bool = False  # `trading-bot pause`: no new entries until `resume`, across restarts
    guard: GuardRecord = field(default_factory=GuardRecord)
    funding_settled_ms: int | None = None  # paper/replay: funding moments up to here are booked
