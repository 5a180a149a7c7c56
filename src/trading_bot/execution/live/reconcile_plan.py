"""Reconciliation as a plan: what to do to put the local books right against one snapshot of the
exchange (the truth), decided by a pure function, and the report of what was done.

The plan's steps, in the order they are carried out:

1. every intent whose outcome we never heard, by the lookup of its client order id: an entry that
   reached the exchange becomes the bot's position (or, opened and closed while the bot was down,
   its trade is booked); a stop or target placed before a crash is attached to its position; the
   rest are dropped;
2. every local position against the exchange's: one the exchange no longer holds has its exit
   booked; a size that differs halts new entries; a missing stop or target is placed;
3. exchange positions nobody here knows: adopted by the symbol's first bot and protected with the
   current config's stop and target (or, with ADOPT_UNKNOWN_POSITIONS=false, left alone);
4. protective orders of ours that no position references: cancelled.

What is only known while carrying the plan out (the exchange refuses a stop; the price has already
passed it, so the position is closed at market and booked) adds to the report as it happens.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar, TypeVar

from trading_bot.domain.intents import OrderIntent
from trading_bot.domain.params import StrategyParams
from trading_bot.domain.trades import LONG, PROTECTIVE_KINDS, SHORT, SIDE_NAMES, BotBook, ClosedTrade, Position
from trading_bot.domain.wallet import bot_id
from trading_bot.execution.live.fills import ExchangePosition, RoundPrice, position_from_exchange
from trading_bot.execution.live.orders import is_ours

SETTLE_MARGIN_MS = 1000


def symbols_to_check(traded: Iterable[str], positions: Iterable[Position], intents: Iterable[OrderIntent]) -> list[str]:
    """The traded symbols, and those of positions and intents kept from bots not running this time
    (a symbol taken out of TRADING_SYMBOLS keeps its position, its stop and its target)."""
    return sorted(set(traded) | {p.symbol for p in positions} | {i.symbol for i in intents if i.symbol})


def settles_at(intents: Iterable[OrderIntent], recv_window_ms: int) -> int:
    """When every intent's order has either executed or been refused by the exchange (an order sent
    moments ago, before a quick restart, may still execute until its recvWindow has passed)."""
    return max((i.created_ms for i in intents), default=0) + recv_window_ms + SETTLE_MARGIN_MS


@dataclass(frozen=True)
class ExchangeSnapshot:
    """What the exchange said, asked in this order: open trigger orders first (a stop that fires in
    between then shows as a closed position, never as a missing stop on a flat one), then positions,
    then the lookup of every intent's client order id (once their recvWindow has passed)."""

    open_triggers: Mapping[str, Sequence[dict[str, Any]]]  # symbol -> its open trigger orders
    positions: Mapping[str, ExchangePosition]  # symbol -> its open position
    lookups: Mapping[str, dict[str, Any] | None]  # client order id -> the order, None if not on the exchange


# --- the actions ------------------------------------------------------------------------------


@dataclass(frozen=True)
class DropIntent:
    intent: OrderIntent
    outcome: str  # what the lookup found, for the report


@dataclass(frozen=True)
class TakeOverEntry:
    """The entry filled and its position is open: the bot's position from now on."""

    intent: OrderIntent
    position: Position
    outcome: ClassVar[str] = "its entry had filled: position taken over"


@dataclass(frozen=True)
class BookOpenedAndClosed:
    """The entry filled, and its stop or target closed it while the bot was down: book the trade."""

    intent: OrderIntent
    position: Position
    outcome: ClassVar[str] = "opened and closed while the bot was down: trade booked"


@dataclass(frozen=True)
class AttachProtection:
    """A stop or target placed before a crash, never recorded: the position's."""

    intent: OrderIntent
    kind: str
    order_id: str
    outcome: ClassVar[str] = "placed before a crash: attached to the position"


@dataclass(frozen=True)
class BookExit:
    """The exchange no longer holds the bot's position (or holds the other side)."""

    symbol: str
    timeframe: str


@dataclass(frozen=True)
class Halt:
    """New entries stop until a person has looked."""

    problem: str


@dataclass(frozen=True)
class Protect:
    """Place the position's missing stop and/or target (stop first)."""

    symbol: str
    timeframe: str
    kinds: tuple[str, ...]
    whose: str = ""  # appended to a refusal in the report


@dataclass(frozen=True)
class Adopt:
    """An exchange position nobody here knows, taken by the symbol's first bot (Protect follows)."""

    position: Position


@dataclass(frozen=True)
class LeaveAlone:
    held: ExchangePosition


@dataclass(frozen=True)
class CancelOrphan:
    """A protective order of ours that no position references."""

    symbol: str
    order_id: str


IntentAction = DropIntent | TakeOverEntry | BookOpenedAndClosed | AttachProtection
Action = IntentAction | BookExit | Halt | Protect | Adopt | LeaveAlone | CancelOrphan


A = TypeVar("A")


@dataclass(frozen=True)
class ReconcilePlan:
    actions: tuple[Action, ...]

    def of(self, kind: type[A]) -> list[A]:
        return [a for a in self.actions if isinstance(a, kind)]


# The report's wording of each planned action (what only carrying it out tells is added then).


def resolved_line(action: IntentAction) -> str:
    return f"{action.intent.client_id} {action.intent.kind} {action.intent.symbol}: {action.outcome}"


def adopted_line(position: Position) -> str:
    return (f"{position.symbol} {SIDE_NAMES[position.side]} {position.qty} @ {position.entry_price} "
            f"by the {position.timeframe} bot")


def left_alone_line(held: ExchangePosition) -> str:
    return f"{held.symbol} {SIDE_NAMES[held.side]} {held.contracts}"


# --- the plan -----------------------------------------------------------------------------------


@dataclass
class _Planning:
    """The books as the plan leaves them so far (copies: the plan changes nothing)."""

    positions: dict[str, Position | None]
    snapshot: ExchangeSnapshot
    params_for: Callable[[str, str], StrategyParams]
    round_price: RoundPrice
    now_ms: int
    actions: list[Action] = field(default_factory=list)

    def from_exchange(self, held: ExchangePosition, timeframe: str, order: dict[str, Any] | None,
                      signal_ts: int | None = None) -> Position:
        return position_from_exchange(held, timeframe, self.params_for(held.symbol, timeframe), order, signal_ts,
                                      round_price=self.round_price, now_ms=self.now_ms)

    def open_positions(self) -> list[Position]:
        return [p for p in self.positions.values() if p is not None]


def plan_reconciliation(books: Mapping[str, BotBook], intents: Mapping[str, OrderIntent],
                        traded: Sequence[tuple[str, str]], snapshot: ExchangeSnapshot, *,
                        params_for: Callable[[str, str], StrategyParams], adopt_unknown: bool,
                        round_price: RoundPrice, now_ms: int) -> ReconcilePlan:
    """The plan for these books (key -> book, in the broker's order), these intents and the traded
    (symbol, timeframe) pairs against this snapshot. params_for: the current config's parameters
    (stop and target of a position built from the exchange's)."""
    planning = _Planning({key: _copy(book.position) for key, book in books.items()}, snapshot, params_for,
                         round_price, now_ms)
    for intent in intents.values():
        planning.actions.append(_resolve_intent(planning, intent, snapshot.lookups.get(intent.client_id)))
    _check_positions(planning)
    _find_unknown(planning, traded, adopt_unknown)
    _cancel_orphans(planning)
    return ReconcilePlan(tuple(planning.actions))


def _copy(position: Position | None) -> Position | None:
    return None if position is None else replace(position, orders=dict(position.orders))


def _resolve_intent(planning: _Planning, intent: OrderIntent, found: dict[str, Any] | None) -> IntentAction:
    if found is None:
        return DropIntent(intent, "not on the exchange: dropped")
    key = bot_id(intent.symbol, intent.timeframe)
    if intent.kind == "entry":
        held = planning.snapshot.positions.get(intent.symbol)
        if planning.positions[key] is None and held is not None:
            position = planning.from_exchange(held, intent.timeframe, found, intent.signal_ts)
            planning.positions[key] = _copy(position)
            return TakeOverEntry(intent, position)
        if planning.positions[key] is None and float(found.get("filled") or 0.0):
            filled = ExchangePosition(intent.symbol, LONG if intent.side == LONG else SHORT, float(found["filled"]),
                                      float(found.get("average") or 0.0))
            return BookOpenedAndClosed(intent, planning.from_exchange(filled, intent.timeframe, found, intent.signal_ts))
        return DropIntent(intent, "found on the exchange")
    if intent.protective:
        protected = planning.positions[key] if intent.timeframe else None
        if protected is not None and found.get("status") == "open":
            protected.orders[intent.kind] = str(found.get("id"))
            return AttachProtection(intent, intent.kind, str(found.get("id")))
    return DropIntent(intent, f"found ({found.get('status')})")


def _check_positions(planning: _Planning) -> None:
    for key, position in planning.positions.items():
        if position is None:
            continue
        held = planning.snapshot.positions.get(position.symbol)
        if held is None or held.side != position.side:
            planning.actions.append(BookExit(position.symbol, position.timeframe))
            planning.positions[key] = None
            continue
        if abs(held.contracts - position.qty) > position.qty * 1e-9:
            # Traded by hand, or an entry the bot lost track of: its stop and target cover only the
            # bot's part. Say so and stop opening positions until a person has looked.
            planning.actions.append(Halt(f"{position.symbol}: the exchange holds {held.contracts:g}, "
                                         f"the bot {position.qty:g}"))
        open_ids = {str(o.get("id")) for o in planning.snapshot.open_triggers.get(position.symbol, [])}
        missing = tuple(kind for kind in PROTECTIVE_KINDS if position.orders.get(kind) not in open_ids)
        if missing:
            planning.actions.append(Protect(position.symbol, position.timeframe, missing))


def _find_unknown(planning: _Planning, traded: Sequence[tuple[str, str]], adopt_unknown: bool) -> None:
    # (A position step 2 kept is known even if protecting it closes it at market: that one is flat.)
    known = {p.symbol for p in planning.open_positions()}
    for symbol, held in planning.snapshot.positions.items():
        if symbol in known:
            continue
        # A symbol no bot trades any more is left as it is (its bot's position, if any, was kept).
        timeframe = next((tf for s, tf in traded if s == symbol), None)
        if timeframe is None:
            continue
        if not adopt_unknown:
            planning.actions.append(LeaveAlone(held))
            continue
        position = planning.from_exchange(held, timeframe, None)
        planning.positions[bot_id(symbol, timeframe)] = _copy(position)
        planning.actions += [Adopt(position), Protect(symbol, timeframe, PROTECTIVE_KINDS, " for the adopted position")]


def _cancel_orphans(planning: _Planning) -> None:
    referenced = {str(p.orders.get(k)) for p in planning.open_positions() for k in PROTECTIVE_KINDS}
    for symbol, orders in planning.snapshot.open_triggers.items():
        planning.actions += [CancelOrphan(symbol, str(o.get("id"))) for o in orders
                             if str(o.get("id")) not in referenced and is_ours(o)]


# --- the report ---------------------------------------------------------------------------------


@dataclass
class ReconcileReport:
    intents_resolved: list[str] = field(default_factory=list)
    exits_booked: list[ClosedTrade] = field(default_factory=list)
    adopted: list[str] = field(default_factory=list)
    left_alone: list[str] = field(default_factory=list)
    protection_placed: list[str] = field(default_factory=list)
    orphans_cancelled: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        """The one-screen summary (empty when nothing needed putting right)."""
        out = []
        for label, items in (("intents resolved", self.intents_resolved),
                             ("exits booked", [f"{t.symbol} {t.timeframe} {t.exit_reason} pnl={t.pnl:+.2f}"
                                               for t in self.exits_booked]),
                             ("positions adopted", self.adopted), ("positions left alone", self.left_alone),
                             ("protective orders placed", self.protection_placed),
                             ("orphan orders cancelled", self.orphans_cancelled), ("PROBLEMS", self.problems)):
            if items:
                out.append(f"  {label}: {'; '.join(items)}")
        return out
