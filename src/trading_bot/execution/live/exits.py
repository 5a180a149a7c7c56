"""Exits: a position the exchange no longer holds is booked from the exchange's fills (the REST trade
list, or the user data stream's own fills of its stop or target), and its trade is written to the
journal before the position leaves the books (so no state file on disk ever lacks both the position
and its trade: a crash between the two books it again, and the journal keeps one copy)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from trading_bot.domain.protections import AccountGuard
from trading_bot.domain.trades import PROTECTIVE_KINDS, BotBook, ClosedTrade, Position
from trading_bot.exchange.exceptions import BaseError
from trading_bot.execution.live.fills import (
    ExchangePosition,
    FillsNotVisible,
    StreamFill,
    closed_trade_from_fills,
    closed_trade_from_stream,
    fills_since_ms,
)
from trading_bot.execution.live.gateway import OrderGateway

log = logging.getLogger(__name__)


EXIT_FILL_WAITS = 3  # heartbeats to wait for a closed position's fills before booking what is there


class ExitBooker:
    def __init__(self, orders: OrderGateway, guard: AccountGuard, journal: Callable[[ClosedTrade], Awaitable[object]],
                 now_ms: Callable[[], int]) -> None:
        self.orders = orders
        self.guard = guard  # books each trade: the wallet and the account rules (domain/protections.py)
        self._journal = journal  # appends a closed trade to the journal
        self.now_ms = now_ms
        self._fill_waits: dict[str, int] = {}  # entry order id -> heartbeats spent waiting for exit fills

    async def book_exit(self, position: Position, require_fills: bool = False, reason: str | None = None) -> ClosedTrade:
        """The closed trade, from the exchange's fills (FillsNotVisible: see closed_trade_from_fills).
        Every protective order of ours on the symbol is cancelled first. `reason`: known to the
        caller (a flatten), else found from the position's stop and target."""
        reason = reason or await self._exit_reason(position)
        await self.orders.cancel_our_triggers(position.symbol)
        fills = await self.orders.fills(position.symbol, fills_since_ms(position))
        return closed_trade_from_fills(position, fills, reason, now_ms=self.now_ms(), require_fills=require_fills)

    async def book_from_stream(self, book: BotBook, kind: str, fills: list[StreamFill]) -> ClosedTrade:
        """The position's stop or target (`kind`) filled, as the user data stream reported: every
        protective order of ours on the symbol cancelled (the sibling), then the trade from those
        fills, journaled before the position leaves the books. No fills or positions request."""
        position = book.position
        assert position is not None
        await self.orders.cancel_our_triggers(position.symbol)
        trade = closed_trade_from_stream(position, fills, kind, now_ms=self.now_ms())
        await self.close_book(book, trade)
        return trade

    async def _exit_reason(self, position: Position) -> str:
        """"stop" or "target" if that order of the position executed, else "outside"."""
        for kind in PROTECTIVE_KINDS:
            order_id = position.orders.get(kind)
            if not order_id:
                continue
            order = await self.orders.trigger_order(position.symbol, order_id)
            if order is not None and order.get("status") == "closed":
                return kind
        return "outside"

    async def close_book(self, book: BotBook, trade: ClosedTrade) -> None:
        """Journal first, then drop the position: see the module docstring."""
        await self._journal(trade)
        book.position = None
        self.guard.book(book, trade)

    async def book_and_close(self, book: BotBook) -> ClosedTrade:
        """Book the exit of the book's position, which the exchange no longer holds."""
        position = book.position
        assert position is not None
        trade = await self.book_exit(position)
        await self.close_book(book, trade)
        return trade

    async def book_closed(self, held: list[BotBook], on_exchange: dict[str, ExchangePosition]) -> list[ClosedTrade]:
        """Book every held position the exchange no longer has (its stop or target closed it). One whose
        closing fills are not listed yet waits a few heartbeats; one that fails waits for the next."""
        closed = []
        for book in held:
            position = book.position
            assert position is not None
            still = on_exchange.get(position.symbol)
            if still is not None and still.signed_amount * position.side > 0:
                continue
            waited = self._fill_waits.get(position.orders.get("entry", ""), 0)
            try:
                trade = await self.book_exit(position, require_fills=waited < EXIT_FILL_WAITS)
            except FillsNotVisible as exc:
                self._fill_waits[position.orders.get("entry", "")] = waited + 1
                log.info("%s %s: %s: booking it next heartbeat", position.symbol, position.timeframe, exc)
                continue
            except BaseError as exc:
                log.warning("%s %s: closed on the exchange; booking it failed (%s): trying again next heartbeat",
                            position.symbol, position.timeframe, str(exc)[:160])
                continue
            self._fill_waits.pop(position.orders.get("entry", ""), None)
            await self.close_book(book, trade)
            closed.append(trade)
        return closed
