"""Reconciliation of the live books with the exchange, which is the truth: gather one snapshot,
plan (reconcile_plan.py, a pure function), carry the plan out through the broker's public parts,
and say what was done.

Run at startup (after loading local state), every 10 minutes, after a network outage of a minute or
more, after an order whose outcome stayed unknown, and after every reconnect of the user data stream
(the events of the gap are lost) (the daemon decides when). Whatever cannot be
put right (the exchange refuses a stop, the exchange holds another size) halts new entries: the
reason shows in the log and in STATUS, and existing positions stay protected as far as the exchange
allows.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol

from trading_bot.domain.intents import OrderIntent
from trading_bot.execution.live.broker import LiveBroker
from trading_bot.execution.live.fills import ExchangePosition
from trading_bot.execution.live.reconcile_plan import (
    Action,
    Adopt,
    AttachProtection,
    BookExit,
    BookOpenedAndClosed,
    CancelOrphan,
    DropIntent,
    ExchangeSnapshot,
    Halt,
    IntentAction,
    LeaveAlone,
    Protect,
    ReconcilePlan,
    ReconcileReport,
    TakeOverEntry,
    adopted_line,
    left_alone_line,
    plan_reconciliation,
    resolved_line,
    settles_at,
    symbols_to_check,
)

if TYPE_CHECKING:
    from trading_bot.domain.params import StrategyConfig

log = logging.getLogger(__name__)


class ExchangeReads(Protocol):
    """What gathering the snapshot asks of the exchange (the order gateway)."""

    @property
    def recv_window_ms(self) -> int: ...

    async def open_triggers(self, symbol: str) -> list[dict[str, Any]]: ...

    async def positions(self, symbols: list[str]) -> dict[str, ExchangePosition]: ...

    async def lookup(self, symbol: str, client_id: str, trigger: bool) -> dict[str, Any] | None: ...


async def reconcile(broker: LiveBroker, config: StrategyConfig, adopt_unknown: bool = True) -> ReconcileReport:
    mark = broker.reconcile_mark()  # before anything is asked: a reconnect after this needs another round
    symbols = symbols_to_check(broker.symbols, broker.open_positions(), broker.intents.values())
    snapshot = await gather_snapshot(broker.orders, broker.intents, symbols, broker.now_ms, broker.sleep_until_ms)
    plan = plan_reconciliation(broker.books, broker.intents, broker.keys, snapshot, params_for=config.params_for,
                               adopt_unknown=adopt_unknown, round_price=broker.orders.round_price, now_ms=broker.now_ms())
    report = await carry_out(broker, plan)
    broker.reconciled(mark)
    await finish(broker, report)
    return report


async def gather_snapshot(exchange: ExchangeReads, intents: Mapping[str, OrderIntent], symbols: list[str],
                          now_ms: Callable[[], int], sleep_until_ms: Callable[[int], Awaitable[None]]) -> ExchangeSnapshot:
    """One snapshot of the exchange, asked in the order ExchangeSnapshot says, for these symbols."""
    # An order sent moments ago (a quick restart) may still be executed until its recvWindow has
    # passed; only after that does "not found" mean "never". Wait before looking at anything.
    settled = settles_at(intents.values(), exchange.recv_window_ms)
    if intents and now_ms() < settled:
        log.info("waiting %.1f s for orders sent just before the restart to settle", (settled - now_ms()) / 1000)
        await sleep_until_ms(settled)
    open_triggers = {symbol: await exchange.open_triggers(symbol) for symbol in symbols}
    positions = await exchange.positions(symbols)
    lookups = {client_id: await exchange.lookup(intent.symbol, client_id, trigger=intent.protective)
               for client_id, intent in intents.items() if intent.symbol}
    return ExchangeSnapshot(open_triggers, positions, lookups)


async def carry_out(broker: LiveBroker, plan: ReconcilePlan) -> ReconcileReport:
    """Every action in turn; what the exchange answers on the way goes into the report too."""
    report = ReconcileReport()
    for action in plan.actions:
        await _carry_out(broker, action, report)
    return report


async def _carry_out(broker: LiveBroker, action: Action, report: ReconcileReport) -> None:
    match action:
        case DropIntent() | TakeOverEntry() | BookOpenedAndClosed() | AttachProtection():
            await _resolve_intent(broker, action, report)
        case BookExit(symbol, timeframe):
            report.exits_booked.append(await broker.exits.book_and_close(broker.book(symbol, timeframe)))
        case Halt(problem):
            report.problems.append(problem)
        case Protect():
            await _protect(broker, action, report)
        case Adopt(position):
            broker.take_over(position)
            report.adopted.append(adopted_line(position))
        case LeaveAlone(held):
            report.left_alone.append(left_alone_line(held))
        case CancelOrphan(symbol, order_id):
            if await broker.orders.cancel_trigger(symbol, order_id):
                report.orphans_cancelled.append(f"{symbol} {order_id}")


async def _resolve_intent(broker: LiveBroker, action: IntentAction, report: ReconcileReport) -> None:
    broker.ledger.forget(action.intent.client_id)
    if isinstance(action, TakeOverEntry):
        broker.take_over(action.position)
    elif isinstance(action, BookOpenedAndClosed):
        report.exits_booked.append(await broker.exits.book_and_close(broker.take_over(action.position)))
    elif isinstance(action, AttachProtection):
        position = broker.book(action.intent.symbol, action.intent.timeframe).position
        if position is not None:
            broker.protection.attach(position, action.kind, action.order_id)
    report.intents_resolved.append(resolved_line(action))


async def _protect(broker: LiveBroker, action: Protect, report: ReconcileReport) -> None:
    """Place the missing orders; one the price has already passed means the trade is over: it is
    closed at market and booked."""
    book = broker.book(action.symbol, action.timeframe)
    if book.position is None:  # (the plan protects positions it keeps or adopts: always there)
        return
    outcome = await broker.protection.protect(book, book.position, action.kinds, close_if_stop_refused=False)
    report.protection_placed += [f"{action.symbol} {action.timeframe} {kind}" for kind in outcome.placed]
    report.problems += [f"{action.symbol}: the exchange refused the {kind} order{action.whose}" for kind in outcome.refused]
    if outcome.trade is not None:
        report.exits_booked.append(outcome.trade)
    elif outcome.crossed:
        report.problems.append(f"{action.symbol}: past its {outcome.crossed}, and closing it at market failed")


async def finish(broker: LiveBroker, report: ReconcileReport) -> None:
    """Balance (if trades were booked), halt or not, save, and the summary in the log."""
    if report.exits_booked:
        await broker.refresh_balance()
    broker.halted = "; ".join(report.problems) or None
    broker.reconcile_requested = False
    await broker.persist()
    summary = report.lines()
    if summary:
        log.warning("reconciled with the exchange:\n%s", "\n".join(summary))
    else:
        log.info("reconciled with the exchange: local state matches (%d open position(s))", len(broker.open_positions()))
    if broker.halted:
        log.critical("new entries halted until this is resolved: %s", broker.halted)

