"""Protection: a reduce-only STOP_MARKET and TAKE_PROFIT_MARKET on the exchange for every position,
stop first, so a position is protected even while the bot is down. A position is never left without
a stop: one the price has already passed (Binance -2021, "would immediately trigger") is done at
market, and on the entry path a stop the exchange refuses closes the position at market too."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Literal

from trading_bot.domain.intents import OrderIntent
from trading_bot.domain.trades import PROTECTIVE_KINDS, BotBook, ClosedTrade, Position
from trading_bot.exchange.exceptions import BaseError, OperationFailed, OrderImmediatelyFillable
from trading_bot.execution.live.exits import ExitBooker
from trading_bot.execution.live.gateway import OrderGateway
from trading_bot.execution.live.intent_ledger import PROTECTIVE_POLICY, IntentLedger
from trading_bot.execution.live.orders import ORDER_SIDE, new_client_id

log = logging.getLogger(__name__)


Placement = Literal["placed", "refused", "crossed"]




@dataclass
class Protected:
    """What placing a position's protective orders came to."""

    placed: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    crossed: str | None = None  # the kind the price had already passed
    closed_at_market: bool = False  # tried to close the position (crossed, or its stop refused)
    trade: ClosedTrade | None = None  # the close at market, booked (None: it failed, or none was tried)


class Protection:
    def __init__(self, orders: OrderGateway, ledger: IntentLedger, exits: ExitBooker,
                 persist: Callable[[], Awaitable[None]], now_ms: Callable[[], int]) -> None:
        self.orders = orders
        self.ledger = ledger
        self.exits = exits
        self._persist = persist
        self.now_ms = now_ms

    async def protect(self, book: BotBook, position: Position, kinds: tuple[str, ...] = PROTECTIVE_KINDS, *,
                      close_if_stop_refused: bool) -> Protected:
        """Place each kind in turn. One the price has passed means the trade is over: the position is
        closed at market and booked, and nothing more is placed. close_if_stop_refused: a stop the
        exchange refuses closes the position too (else it is reported, and the target still placed)."""
        outcome = Protected()
        for kind in kinds:
            placed = await self.place(position, kind)
            if placed == "placed":
                outcome.placed.append(kind)
                continue
            if placed == "refused":
                outcome.refused.append(kind)
                if kind != "stop" or not close_if_stop_refused:
                    continue
                log.critical("%s %s: COULD NOT PLACE THE STOP: closing the position at market now", position.symbol,
                             position.timeframe)
            else:
                outcome.crossed = kind
            outcome.closed_at_market = True
            outcome.trade = await self.close_at_market(book, position)
            break
        return outcome

    async def place(self, position: Position, kind: str) -> Placement:
        """One reduce-only trigger order (kind "stop" or "target") for the position: "placed", "refused",
        or "crossed" (the price is already beyond it: the order would trigger at once)."""
        order_type, price = ("STOP_MARKET", position.stop) if kind == "stop" else ("TAKE_PROFIT_MARKET", position.target)
        intent = OrderIntent(new_client_id("s" if kind == "stop" else "t"), "stop" if kind == "stop" else "target",
                             position.symbol, position.timeframe, -position.side, position.qty, price, self.now_ms())
        params = {"triggerPrice": price, "reduceOnly": True, "clientOrderId": intent.client_id,
                  "workingType": "MARK_PRICE"}
        try:
            async with self.ledger.in_flight(intent, PROTECTIVE_POLICY):
                order = await self.orders.submit(position.symbol, order_type, ORDER_SIDE[-position.side], position.qty,
                                                 params, intent.client_id, trigger=True)
                position.orders[kind] = str(order.get("id"))
                position.orders[f"{kind}_client"] = intent.client_id
        except OrderImmediatelyFillable:
            log.warning("%s %s: the price is already beyond the %s (%s): closing at market", position.symbol,
                        position.timeframe, kind, price)
            return "crossed"
        except BaseError as exc:
            # (An order whose outcome stayed unknown may exist after all: the exit cancels every
            # protective order of ours on the symbol, so it cannot outlive this position; its intent
            # is kept and the next heartbeat's reconciliation attaches it or places what is missing.)
            what = "got no clear answer on" if isinstance(exc, OperationFailed) else "refused"
            log.error("%s %s: the exchange %s the %s order (%s)", position.symbol, position.timeframe, what, kind,
                      str(exc)[:200])
            return "refused"
        return "placed"

    @staticmethod
    def attach(position: Position, kind: str, order_id: str) -> None:
        """A stop or target placed before a crash, never recorded: now the position's."""
        position.orders[kind] = order_id

    async def close_at_market(self, book: BotBook, position: Position, reason: str | None = None) -> ClosedTrade | None:
        """Close the position with a reduce-only market order and book the trade (with `reason`, if
        given); None if that failed."""
        intent = OrderIntent(new_client_id("x"), "close", position.symbol, position.timeframe, -position.side,
                             position.qty, None, self.now_ms())
        try:
            async with self.ledger.in_flight(intent, PROTECTIVE_POLICY):
                await self.orders.submit(position.symbol, "market", ORDER_SIDE[-position.side], position.qty,
                                         {"reduceOnly": True, "clientOrderId": intent.client_id}, intent.client_id,
                                         trigger=False)
        except BaseError as exc:
            log.critical("%s: closing the position at market FAILED (%s): act by hand", position.symbol, exc)
            return None
        trade = await self.exits.book_exit(position, reason=reason)
        await self.exits.close_book(book, trade)
        await self._persist()
        return trade
