"""The order gateway: every request the live broker makes about orders, positions and fills, through
the pooled client. Orders are sent once; a failure whose outcome is unknown is resolved by looking
the client order id up (and, only once the recvWindow has passed with nothing found, resent with
the same id)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from trading_bot.exchange.client import ExchangeClient
from trading_bot.exchange.exceptions import (
    DDoSProtection,
    ExchangeError,
    OperationFailed,
    OrderNotFound,
    order_does_not_exist,
)
from trading_bot.execution.live.fills import ExchangePosition, parse_positions
from trading_bot.execution.live.orders import is_ours

log = logging.getLogger(__name__)


SUBMIT_ATTEMPTS = 3


FILLS_WINDOW_MS = 7 * 86_400_000  # the widest time range Binance's userTrades accepts


FILLS_PAGE = 1000


RECV_WINDOW_MARGIN_MS = 500  # past the recvWindow, the exchange has refused a request it had not executed


class OrderGateway:
    """Orders, positions and fills of one account, and the markets' precision and minimums."""

    def __init__(self, pool: ExchangeClient, now_ms: Callable[[], int],
                 sleep_until_ms: Callable[[int], Awaitable[None]]) -> None:
        self.pool = pool
        self.now_ms = now_ms
        # Waits until the bot's clock reads a time (the exchange's recvWindow is in the exchange's time).
        self.sleep_until_ms = sleep_until_ms
        self.client: Any = None
        self.markets: dict[str, Any] = {}
        self.positions_answered_ms: int | None = None  # the bot's clock at the last positions answer

    @property
    def recv_window_ms(self) -> int:
        return self.pool.recv_window_ms

    async def connect(self) -> None:
        """The client and the markets (raises ccxt's AuthenticationError for a refused key)."""
        self.client = await self.pool.client()
        self.markets = await self.pool.markets()

    # --- markets -------------------------------------------------------------------------------

    def round_price(self, symbol: str, price: float) -> float:
        return float(self.client.price_to_precision(symbol, price))

    def round_amount(self, symbol: str, amount: float) -> float:
        """The amount at the symbol's step; 0.0 if it rounds to nothing."""
        try:
            return float(self.client.amount_to_precision(symbol, amount))
        except Exception:  # ccxt raises when the amount rounds to zero
            return 0.0

    def minimums(self, symbol: str) -> tuple[float, float]:
        """The smallest order the exchange takes: (amount, notional in USDT)."""
        limits = self.markets[symbol].get("limits", {})
        return (limits.get("amount") or {}).get("min") or 0.0, (limits.get("cost") or {}).get("min") or 0.0

    # --- orders --------------------------------------------------------------------------------

    async def submit(self, symbol: str, order_type: str, side: str, qty: float, params: dict[str, Any],
                     client_id: str, trigger: bool) -> dict[str, Any]:
        """Send once. On a failure whose outcome is unknown (timeout, reset, 5xx, Binance's -1000/-1001/
        -1006/-1008 server errors), look the client id
        up; if it is not there yet, wait until the request's recvWindow has passed (the exchange
        rejects it after that) and look again; only then resend, with the same id."""
        for attempt in range(SUBMIT_ATTEMPTS):
            sent_at = self.now_ms()
            try:
                return await self.pool.call("create_order", symbol, order_type, side, qty, None, params, retry=False)
            except OperationFailed as exc:
                log.warning("%s %s order %s: %s: %s; looking it up before anything else", symbol, order_type, client_id,
                            type(exc).__name__, str(exc)[:160])
                found = await self.lookup(symbol, client_id, trigger)
                if found is None and not isinstance(exc, DDoSProtection):  # a 429/418 never reached the engine
                    await self.sleep_until_ms(sent_at + self.recv_window_ms + RECV_WINDOW_MARGIN_MS)
                    found = await self.lookup(symbol, client_id, trigger)
                if found is not None:
                    log.info("%s order %s had reached the exchange (id %s)", symbol, client_id, found.get("id"))
                    return found
                if attempt + 1 == SUBMIT_ATTEMPTS:
                    raise
                await asyncio.sleep(self.pool.retry.delay(attempt))
        raise AssertionError("unreachable")

    async def lookup(self, symbol: str, client_id: str, trigger: bool) -> dict[str, Any] | None:
        """The order sent with this client id, or None if the exchange has none."""
        params: dict[str, Any] = {"clientOrderId": client_id}
        if trigger:
            params["trigger"] = True
        try:
            return await self.pool.call("fetch_order", None, symbol, params)
        except OrderNotFound:
            return None
        except ExchangeError as exc:
            if order_does_not_exist(exc):
                return None
            raise

    async def trigger_order(self, symbol: str, order_id: str) -> dict[str, Any] | None:
        """A stop or target by its exchange id, or None if the exchange has none."""
        try:
            return await self.pool.call("fetch_order", order_id, symbol, {"trigger": True})
        except OrderNotFound:
            return None

    async def open_triggers(self, symbol: str) -> list[dict[str, Any]]:
        """The symbol's open trigger (stop and take-profit) orders, ours and others'."""
        return await self.pool.call("fetch_open_orders", symbol, None, None, {"trigger": True})

    async def cancel_trigger(self, symbol: str, order_id: str) -> bool:
        """False if the order was gone already."""
        try:
            await self.pool.call("cancel_order", order_id, symbol, {"trigger": True})
        except OrderNotFound:
            return False
        return True

    async def cancel_our_triggers(self, symbol: str) -> list[str]:
        """Cancel every protective order of ours on the symbol; the ids cancelled. All of them, not
        just the ones the position recorded: one sent before a crash or with a lost answer would
        otherwise close part of the symbol's next position."""
        cancelled = []
        for order in await self.open_triggers(symbol):
            order_id = str(order.get("id"))
            if is_ours(order) and await self.cancel_trigger(symbol, order_id):
                cancelled.append(order_id)
        return cancelled

    # --- positions and fills -------------------------------------------------------------------

    async def positions(self, symbols: list[str]) -> dict[str, ExchangePosition]:
        """The symbols' open positions (one request)."""
        held = parse_positions(await self.pool.call("fetch_positions", symbols))
        self.positions_answered_ms = self.now_ms()
        return held

    async def fills(self, symbol: str, since: int) -> list[dict[str, Any]]:
        """Every fill of ours on the symbol from `since` to now, oldest first (since <= 0: whatever
        the exchange lists by default). Binance answers at most 7 days (and 1000 fills) per request,
        so a position held for weeks is read week by week."""
        if since <= 0:
            return await self.pool.call("fetch_my_trades", symbol)
        now, cursor = self.now_ms(), since
        fills: dict[str, dict[str, Any]] = {}
        while cursor <= now:
            end = min(cursor + FILLS_WINDOW_MS - 1, now)
            batch = await self.pool.call("fetch_my_trades", symbol, cursor, FILLS_PAGE, {"until": end})
            fills.update((str(t.get("id")), t) for t in batch)
            full_page = len(batch) >= FILLS_PAGE and int(batch[-1].get("timestamp") or 0) >= cursor
            cursor = int(batch[-1]["timestamp"]) + 1 if full_page else end + 1
        return sorted(fills.values(), key=lambda t: int(t.get("timestamp") or 0))
