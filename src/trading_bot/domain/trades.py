"""What a bot holds and what it has done: sides, costs, a waiting entry, an open position, a closed
trade, and one bot's books. Plain data, shared by the rules, every broker and the backtest."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

LONG = 1
SHORT = -1
SIDE_NAMES = {LONG: "long", SHORT: "short"}


@dataclass(frozen=True)
class Costs:
    fee_rate: float = 0.0004
    slippage: float = 0.0


# A live position's protective orders on the exchange, in this order: a position must never be without its stop.
PROTECTIVE_KINDS: tuple[str, ...] = ("stop", "target")


@dataclass
class Position:
    symbol: str
    timeframe: str
    side: int
    qty: float
    entry_price: float
    entry_ts: int  # open time of the fill candle (t+1)
    signal_ts: int  # open time of the signal candle (t)
    stop: float
    target: float
    entry_fee: float
    sl_pct: float
    rr_ratio: float
    funding: float = 0.0  # funding booked while open (+ received, − paid), apart from fees and trading PnL
    # Live only: exchange ids of the entry and the protective orders, and our client order ids.
    orders: dict[str, str] = field(default_factory=dict)

    def unrealised(self, price: float) -> float:
        return self.side * self.qty * (price - self.entry_price)

    def missing_protection(self) -> tuple[str, ...]:
        """The protective orders (live) this position has no exchange order for, in PROTECTIVE_KINDS' order."""
        return tuple(kind for kind in PROTECTIVE_KINDS if kind not in self.orders)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> Position:
        return cls(**{name: raw[name] for name in cls.__dataclass_fields__ if name in raw})


@dataclass(frozen=True)
class ClosedTrade:
    symbol: str
    timeframe: str
    side: int
    qty: float
    entry_price: float
    entry_ts: int
    signal_ts: int
    exit_price: float
    exit_ts: int  # open time of the candle during which the exit happened
    exit_reason: str  # "stop" | "target"
    entry_fee: float
    exit_fee: float
    gross_pnl: float
    pnl: float  # trading PnL net of both fees (funding apart: the wallet had it at each funding time)
    funding: float = 0.0  # funding booked while the position was open (+ received, − paid)

    @property
    def net(self) -> float:
        """What the trade did to the wallet: its PnL net of fees, with the funding it booked."""
        return self.pnl + self.funding

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class PendingEntry:
    side: int
    signal_ts: int
    score: float


@dataclass
class BotBook:
    """What one bot holds between candles: a signal waiting for its fill, or an open position."""

    symbol: str
    timeframe: str
    pending: PendingEntry | None = None
    position: Position | None = None
    last_candle_ts: int | None = None  # open time of the last closed candle processed
    stop_streak: int = 0  # stop-outs in a row (domain/protections.py: the cooldown)
    cooldown_until_ts: int | None = None  # no signal on a candle opening before this
