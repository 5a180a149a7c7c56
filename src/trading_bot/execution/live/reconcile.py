"""Reconciliation of the live books with the exchange, which is the truth.

Run at startup (after loading local state), every 10 minutes, and after a network outage of a
minute or more (bot.py decides when).

- an intent with no known outcome → its client order id is looked up: an entry that reached the
  exchange becomes the bot's position; one that did not is dropped;
- a local position the exchange no longer has → its exit is booked from the exchange's fills;
- an exchange position the bot does not know → adopted by the symbol's first bot and protected with
  the current config's stop and target (or, with ADOPT_UNKNOWN_POSITIONS=false, left alone and logged);
- a position missing its stop or target on the exchange → the order is placed (if the price is
  already past it, the position is closed at market and the trade booked);
- protective orders of ours for a symbol with no position → cancelled.

Whatever cannot be put right (the exchange refuses a stop) halts new entries: the reason shows in
the log and in STATUS, and existing positions stay protected as far as the exchange allows.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from trading_bot.domain.rules import protective_levels
from trading_bot.domain.trades import LONG, SHORT, BotBook, ClosedTrade, Position
from trading_bot.execution.live.broker import client_id_of

if TYPE_CHECKING:
    from trading_bot.domain.params import StrategyConfig
    from trading_bot.execution.live.broker import LiveBroker


log = logging.getLogger(__name__)


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


async def reconcile(broker: LiveBroker, config: StrategyConfig, adopt_unknown: bool = True) -> ReconcileReport:

    report = ReconcileReport()
    pool = broker.pool
    # An order sent moments ago (a quick restart) may still be executed until its recvWindow has
    # passed; only after that does "not found" mean "never". Wait before looking at anything.
    settles_at = max((int(i.get("created_ms") or 0) for i in broker.intents.values()), default=0) + pool.recv_window_ms + 1000
    if broker.intents and broker.now_ms() < settles_at:
        log.info("waiting %.1f s for orders sent just before the restart to settle", (settles_at - broker.now_ms()) / 1000)
        await broker.sleep_until_ms(settles_at)
    # The traded symbols, and those of positions and intents kept from bots not running this time
    # (a symbol taken out of TRADING_SYMBOLS keeps its position, its stop and its target).
    symbols = sorted(set(broker.symbols) | {p.symbol for p in broker.open_positions()}
                     | {str(i["symbol"]) for i in broker.intents.values() if i.get("symbol")})
    # Orders before positions: a stop that fires in between then shows as a closed position (booked),
    # never as a missing stop on a position that is already flat.
    open_triggers: dict[str, list[dict[str, Any]]] = {}
    for symbol in symbols:
        open_triggers[symbol] = await pool.call("fetch_open_orders", symbol, None, None, {"trigger": True})
    exchange_positions: dict[str, dict[str, Any]] = {}
    for p in await pool.call("fetch_positions", symbols):
        if float(p.get("contracts") or 0.0):
            exchange_positions[p["symbol"]] = p

    # 1. Intents whose outcome we never heard.
    for client_id, intent in list(broker.intents.items()):
        symbol, kind = intent.get("symbol", ""), intent.get("kind", "")
        found = await broker.lookup(symbol, client_id, trigger=kind in ("stop", "target")) if symbol else None
        broker.intents.pop(client_id, None)
        outcome = "not on the exchange: dropped"
        if found is not None and kind == "entry":
            book = broker.book(symbol, intent["timeframe"])
            if book.position is None and symbol in exchange_positions:
                book.position = _position_from_exchange(broker, config, symbol, intent["timeframe"],
                                                        exchange_positions[symbol], found, intent.get("signal_ts"))
                outcome = "its entry had filled: position taken over"
            elif book.position is None and float(found.get("filled") or 0.0):
                # Opened and closed (by its stop or target) while the bot was down: book the trade.
                held = {"side": "long" if intent.get("side") == LONG else "short", "contracts": found.get("filled"),
                        "entryPrice": found.get("average")}
                position = _position_from_exchange(broker, config, symbol, intent["timeframe"], held, found,
                                                   intent.get("signal_ts"))
                book.position = position
                trade = await broker._book_exit(position)
                await broker.close_book(book, trade)
                report.exits_booked.append(trade)
                outcome = "opened and closed while the bot was down: trade booked"
            else:
                outcome = "found on the exchange"
        elif found is not None and kind in ("stop", "target"):
            # Placed before a crash, never recorded: attach it to the position it protects.
            book = broker.book(symbol, intent["timeframe"]) if intent.get("timeframe") else None
            if book is not None and book.position is not None and found.get("status") == "open":
                book.position.orders[kind] = str(found.get("id"))
                outcome = "placed before a crash: attached to the position"
            else:
                outcome = f"found ({found.get('status')})"
        elif found is not None:
            outcome = f"found ({found.get('status')})"
        report.intents_resolved.append(f"{client_id} {kind} {symbol}: {outcome}")

    # 2. Local positions against the exchange's.
    for book in list(broker.books.values()):
        position = book.position
        if position is None:
            continue
        held = exchange_positions.get(position.symbol)
        side = LONG if held is not None and held.get("side") == "long" else SHORT
        if held is None or side != position.side:
            trade = await broker._book_exit(position)
            await broker.close_book(book, trade)
            report.exits_booked.append(trade)
            continue
        held_qty = float(held.get("contracts") or 0.0)
        if abs(held_qty - position.qty) > position.qty * 1e-9:
            # Traded by hand, or an entry the bot lost track of: its stop and target cover only the
            # bot's part. Say so and stop opening positions until a person has looked.
            report.problems.append(f"{position.symbol}: the exchange holds {held_qty:g}, the bot {position.qty:g}")
        open_ids = {str(o.get("id")) for o in open_triggers.get(position.symbol, [])}
        missing = [kind for kind in ("stop", "target") if position.orders.get(kind) not in open_ids]
        if await _protect(broker, book, missing, report, ""):
            exchange_positions.pop(position.symbol)  # closed just now: nothing left to adopt

    # 3. Exchange positions nobody here knows.
    known = {p.symbol for p in broker.open_positions()}
    for symbol, held in exchange_positions.items():
        if symbol in known:
            continue
        timeframe = next((tf for s, tf in broker.keys if s == symbol), None)
        if timeframe is None:
            continue
        if not adopt_unknown:
            report.left_alone.append(f"{symbol} {held.get('side')} {held.get('contracts')}")
            continue
        position = _position_from_exchange(broker, config, symbol, timeframe, held, None)
        book = broker.book(symbol, timeframe)
        book.position = position
        report.adopted.append(f"{symbol} {held.get('side')} {position.qty} @ {position.entry_price} by the {timeframe} bot")
        await _protect(broker, book, ["stop", "target"], report, " for the adopted position")

    # 4. Protective orders of ours for flat symbols (or not referenced by any position).
    referenced = frozenset(str(position.orders.get(k)) for position in broker.open_positions() for k in ("stop", "target"))
    for symbol, orders in open_triggers.items():
        report.orphans_cancelled += [f"{symbol} {i}" for i in await broker.cancel_our_triggers(symbol, referenced, orders)]

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
    return report


async def _protect(broker: LiveBroker, book: BotBook, kinds: list[str], report: ReconcileReport, whose: str) -> bool:
    """Place the missing protective orders; one the price has already passed means the trade is over:
    it is closed at market and booked. True if the position was closed."""
    position = book.position
    assert position is not None
    for kind in kinds:
        placed = await broker.place_protection(position, kind)
        if placed == "placed":
            report.protection_placed.append(f"{position.symbol} {position.timeframe} {kind}")
            continue
        if placed == "refused":
            report.problems.append(f"{position.symbol}: the exchange refused the {kind} order{whose}")
            continue
        trade = await broker.close_at_market(book, position)
        if trade is None:
            report.problems.append(f"{position.symbol}: past its {kind}, and closing it at market failed")
            return False
        report.exits_booked.append(trade)
        return True
    return False


def _position_from_exchange(broker: LiveBroker, config: StrategyConfig, symbol: str, timeframe: str,
                            held: dict[str, Any], order: dict[str, Any] | None, signal_ts: int | None = None) -> Position:
    """A position built from the exchange's account of it. Its entry time comes from the entry order
    when there is one, so booking the same trade twice (a crash in between) gives the same journal key."""
    side = LONG if held.get("side") == "long" else SHORT
    entry = float(held.get("entryPrice") or (order or {}).get("average") or 0.0)
    params = config.params_for(symbol, timeframe)
    stop, target = protective_levels(side, entry, params.sl_pct, params.rr_ratio)
    client = broker.client
    opened = broker.now_ms()
    orders = {"opened_ms": str(opened)}
    if order is not None:
        opened = int(order.get("timestamp") or opened)
        orders.update(entry=str(order.get("id")), entry_client=client_id_of(order), opened_ms=str(opened))
    return Position(symbol=symbol, timeframe=timeframe, side=side, qty=float(held.get("contracts") or 0.0),
                    entry_price=entry, entry_ts=opened, signal_ts=int(signal_ts or opened),
                    stop=float(client.price_to_precision(symbol, stop)),
                    target=float(client.price_to_precision(symbol, target)), entry_fee=0.0, sl_pct=params.sl_pct,
                    rr_ratio=params.rr_ratio, orders=orders)

