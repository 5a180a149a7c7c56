"""The account as the user data stream reports it, kept until the broker's next sync books it.

`receive` is the stream's sink (called from its reader, never awaits): it keeps the fills of our
reduce-only orders by order (partial fills add up; keyed by trade id, so a fill seen twice — on two
connections during a renewal — counts once), which matching-engine order each conditional order
became (ALGO_UPDATE's `ai`), and each symbol's latest position; when an event concerns a position the
books hold, it wakes the daemon. `sync` (under the trading lock, so never beside an entry or a
flatten) then asks `exits` which positions their stop or target closed, and `contradicted` whether
the stream saw a held position go flat or turn (closed by hand, liquidated: the REST check books it).

A stop or target is recognised by its client id (the position's `stop_client` / `target_client`;
Binance gives a triggered conditional order's fills the conditional order's client id) or, for a
position that recorded only the order's id, by the ALGO_UPDATE naming both.

Reconciliation is due after every connection it did not cover (events of the gap are lost), and
when the exchange rejected or expired a held position's stop or target on its own.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from trading_bot.domain.trades import PROTECTIVE_KINDS, BotBook, Position
from trading_bot.execution.live.fills import AlgoUpdate, PositionUpdate, StreamEvent, StreamFill, parse_stream_event
from trading_bot.execution.live.orders import is_our_client_id

log = logging.getLogger(__name__)




FORGET_AFTER_MS = 3_600_000  # fills no held position claims are dropped after an hour of the bot's clock


ALGO_MAP_SIZE = 10_000  # conditional orders remembered (two per position)


LOST_PROTECTION = ("REJECTED", "EXPIRED")  # the exchange ended a conditional order on its own


@dataclass
class _OrderFills:
    symbol_id: str
    client_id: str
    fills: dict[str, StreamFill] = field(default_factory=dict)  # by trade id
    last_ms: int = 0


@dataclass(frozen=True)
class StreamExit:
    """A held position its stop or target closed, with the fills that did."""

    book: BotBook
    kind: str  # "stop" or "target"
    fills: list[StreamFill]


@dataclass(frozen=True)
class ReconcileMark:
    """What a reconciliation covers: taken before it looks at the exchange."""

    connections: int
    lost_protection: frozenset[str]


class AccountEvents:
    def __init__(self, held: Callable[[], list[Position]], market_id: Callable[[str], str],
                 wake: Callable[[], None], now_ms: Callable[[], int]) -> None:
        self._held = held  # the positions the books hold now
        self._market_id = market_id  # ccxt symbol -> the exchange's id ("BTC/USDT:USDT" -> "BTCUSDT")
        self._wake = wake  # ends the daemon's sleep: the next heartbeat books it now
        self.now_ms = now_ms
        self._orders: dict[str, _OrderFills] = {}  # exchange order id -> its fills
        self._algo_of: dict[str, str] = {}  # matching-engine order id -> conditional (algo) order id
        self._algo_client: dict[str, str] = {}  # algo id -> its client id
        self._positions: dict[str, tuple[int, PositionUpdate]] = {}  # exchange symbol id -> (seq, the latest)
        self._position_seq = 0  # position updates received: a REST check settles those before it was asked
        self.lost_protection: set[str] = set()  # algo ids of held positions' orders the exchange ended
        self.connections = 0
        self._reconciled_connections = 0
        self.received = 0  # events received (all kinds)

    # --- the stream's side -------------------------------------------------------------------------

    def receive(self, event: dict[str, object]) -> None:
        self.received += 1
        concerns = False
        for item in parse_stream_event(event):
            concerns = self._keep(item) or concerns
        if concerns:
            self._wake()

    def connected(self) -> None:
        self.connections += 1
        if self.connections > self._reconciled_connections:
            self._wake()  # the reconciliation after a gap runs at the next heartbeat

    # --- the broker's side -------------------------------------------------------------------------

    @property
    def reconcile_needed(self) -> bool:
        return self.connections > self._reconciled_connections or bool(self.lost_protection)

    def mark(self) -> ReconcileMark:
        return ReconcileMark(self.connections, frozenset(self.lost_protection))

    def reconciled(self, mark: ReconcileMark) -> None:
        self._reconciled_connections = max(self._reconciled_connections, mark.connections)
        self.lost_protection -= mark.lost_protection

    def exits(self, books: list[BotBook]) -> list[StreamExit]:
        """The held positions whose stop's or target's fills, as reported, cover their size."""
        found = []
        for book in books:
            position = book.position
            if position is None:
                continue
            for kind in PROTECTIVE_KINDS:
                fills = self._fills_of(position, kind)
                if fills and sum(f.qty for f in fills) >= position.qty * (1 - 1e-9):
                    found.append(StreamExit(book, kind, fills))
                    break
        return found

    def forget(self, position: Position) -> None:
        """The position is booked: its orders' fills are done with."""
        for order_id in [o for o in self._orders if any(self._claims(position, k, o) for k in PROTECTIVE_KINDS)]:
            del self._orders[order_id]

    def contradicted(self, positions: list[Position]) -> bool:
        """The stream reported one of these positions' symbols flat or turned since the last REST check."""
        for position in positions:
            latest = self._positions.get(self._market_id(position.symbol))
            if latest is not None and latest[1].amount * position.side <= 0:
                return True
        return False

    def positions_seen(self) -> int:
        """Taken before a REST positions request: what its answer settles (see checked)."""
        return self._position_seq

    def checked(self, seen: int) -> None:
        """A REST positions check asked after the first `seen` position updates answered: those are settled
        (a later one, which came while it was in flight, stays); fills nobody claimed for an hour are dropped."""
        for symbol_id in [s for s, (seq, _) in self._positions.items() if seq <= seen]:
            del self._positions[symbol_id]
        stale = self.now_ms() - FORGET_AFTER_MS
        for order_id in [o for o, record in self._orders.items() if record.last_ms < stale]:
            del self._orders[order_id]

    # --- inside ------------------------------------------------------------------------------------

    def _keep(self, item: StreamEvent) -> bool:
        """Keep what the books may need; True when it concerns a held position."""
        held = self._held()
        if isinstance(item, StreamFill):
            if not (item.reduce_only and is_our_client_id(item.client_id)):
                return False  # entries are booked from their answer; others' orders are not ours to book
            record = self._orders.setdefault(item.order_id, _OrderFills(item.symbol_id, item.client_id))
            record.fills[item.trade_id or f"{item.time_ms}-{len(record.fills)}"] = item
            record.last_ms = max(record.last_ms, item.time_ms)
            return any(self._claims(p, kind, item.order_id) for p in held for kind in PROTECTIVE_KINDS)
        if isinstance(item, AlgoUpdate):
            self._remember_algo(item)
            holder = next((p for p in held for kind in PROTECTIVE_KINDS if p.orders.get(kind) == item.algo_id), None)
            closing = holder is not None and any(self._fills_of(holder, kind) for kind in PROTECTIVE_KINDS)
            if holder is not None and item.status in LOST_PROTECTION and not closing:  # (the sibling of a fill: expected)
                log.error("%s %s: the exchange %s its protective order %s: reconciling", holder.symbol,
                          holder.timeframe, item.status.lower(), item.algo_id)
                self.lost_protection.add(item.algo_id)
            return holder is not None and item.status not in ("NEW", "CANCELED")
        if isinstance(item, PositionUpdate):
            self._position_seq += 1
            self._positions[item.symbol_id] = (self._position_seq, item)
            return self.contradicted(held)
        return False

    def _remember_algo(self, item: AlgoUpdate) -> None:
        if item.order_id:
            self._algo_of[item.order_id] = item.algo_id
        if item.client_id:
            self._algo_client[item.algo_id] = item.client_id
        for table in (self._algo_of, self._algo_client):
            while len(table) > ALGO_MAP_SIZE:
                del table[next(iter(table))]

    def _claims(self, position: Position, kind: str, order_id: str) -> bool:
        """Whether the order's fills are the position's stop (or target) executing."""
        record = self._orders.get(order_id)
        if record is None or record.symbol_id != self._market_id(position.symbol):
            return False
        client, algo = position.orders.get(f"{kind}_client"), position.orders.get(kind)
        if client and record.client_id == client:
            return True
        return bool(algo) and (self._algo_of.get(order_id) == algo or self._algo_client.get(algo or "") == record.client_id)

    def _fills_of(self, position: Position, kind: str) -> list[StreamFill]:
        return [fill for order_id, record in self._orders.items() if self._claims(position, kind, order_id)
                for fill in record.fills.values()]
