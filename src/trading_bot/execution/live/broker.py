"""LiveBroker (DRY_RUN=false): real orders through the pooled ccxt client.

The decision is the paper broker's (the same `signal_side`, `protective_levels` and sizing); only
execution differs: a market entry as soon as the signal candle closes, then a reduce-only
STOP_MARKET and TAKE_PROFIT_MARKET on the exchange (Binance algo orders), so a position is
protected even while the bot is down. Rules of thumb kept here:

- Every order carries our client order id, recorded (with its intent) before it is sent. A
  timeout or lost answer is resolved by looking that id up, never by sending blindly again; a
  resend (only once the lookups and the recvWindow wait say the first never executed) reuses
  the same id. Binance only refuses a duplicate id while the first order is open, so the lookups are
  what prevents a double entry, not the id.
- A position is never left without a stop: if the stop cannot be placed, the position is closed at
  market and the log says so loudly. A stop or target the price has already passed (Binance -2021,
  "would immediately trigger") is done at market for the same reason.
- A closed trade is written to the journal before the position leaves the books, so no state file
  on disk ever lacks both the position and its trade (a crash between the two books it again, and
  the journal keeps one copy).
- One position per symbol on the exchange (positions are netted per symbol): while one bot holds
  BTC, the other BTC timeframes skip their signals.
- InsufficientFunds / InvalidOrder: that bot logs and skips; the daemon keeps running.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from trading_bot.domain.candles import CLOSE, TS
from trading_bot.domain.params import StrategyConfig, StrategyParams
from trading_bot.domain.rules import protective_levels, signal_side
from trading_bot.domain.sizing import RiskLimits, position_size
from trading_bot.domain.timeframes import timeframe_ms
from trading_bot.domain.trades import LONG, SIDE_NAMES, BotBook, ClosedTrade, Costs, Position
from trading_bot.domain.wallet import SavedState
from trading_bot.exchange.client import ExchangeClient
from trading_bot.execution.broker import Books, BrokerEvents
from trading_bot.execution.latency import LatencyStats

if TYPE_CHECKING:
    from trading_bot.execution.live.reconcile import ReconcileReport

log = logging.getLogger(__name__)


ORDER_SIDE = {LONG: "buy", -LONG: "sell"}


OUR_PREFIX = "tb-"  # every client order id this bot sends starts with it


SUBMIT_ATTEMPTS = 3


STALE_SIGNAL_MS = 30_000


FILLS_WINDOW_MS = 7 * 86_400_000  # the widest time range Binance's userTrades accepts


FILLS_PAGE = 1000


EXIT_FILL_WAITS = 3  # heartbeats to wait for a closed position's fills before booking what is there


Placement = Literal["placed", "refused", "crossed"]


class FillsNotVisible(Exception):
    """The exchange no longer holds the position, but its closing fills are not (all) listed yet."""


class LiveError(RuntimeError):
    """Live trading cannot start; one line for the user."""


def new_client_id(kind: str) -> str:
    """Binance allows 36 characters of [.A-Z:/a-z0-9_-]."""
    return f"{OUR_PREFIX}{kind}-{uuid.uuid4().hex[:24]}"


def client_id_of(order: dict[str, Any]) -> str:
    info = order.get("info") or {}
    return str(order.get("clientOrderId") or info.get("clientAlgoId") or info.get("clientOrderId") or "")


class LiveBroker(Books):
    name = "live"
    mode = "live"

    def __init__(self, pool: ExchangeClient, keys: list[tuple[str, str]], costs: Costs, limits: RiskLimits,
                 saved: SavedState | None, now_ms: Callable[[], int], *, persist: Callable[[], Awaitable[None]],
                 journal: Callable[[ClosedTrade], Awaitable[object]], sleep_until_ms: Callable[[int], Awaitable[None]],
                 margin_mode: str = "isolated") -> None:
        super().__init__(keys, 0.0, limits, saved)
        self.pool = pool
        self.costs = costs
        self.now_ms = now_ms
        self.margin_mode = margin_mode
        self.keys = list(keys)
        self.symbols = sorted({symbol for symbol, _ in keys})
        self.halted: str | None = None  # why new entries are refused (set by reconciliation)
        self.stopping = False  # a stop was requested: no new entries
        self.reconcile_requested = False  # an order's outcome is unknown: reconcile at the next heartbeat
        # Waits until the bot's clock reads a time (the exchange's recvWindow is in the exchange's time).
        self.sleep_until_ms = sleep_until_ms
        self.claimed: set[str] = set()  # symbols with an entry in flight
        self.latency: LatencyStats = LatencyStats()
        self.markets: dict[str, Any] = {}
        self.client: Any = None
        self._persist = persist  # saves the books (the daemon's state file)
        self._journal = journal  # appends a closed trade to the journal
        self.closed_elsewhere: list[ClosedTrade] = []  # booked outside sync(); reported by the next sync()
        self._fill_waits: dict[str, int] = {}  # entry order id -> heartbeats spent waiting for exit fills

    # --- startup -------------------------------------------------------------------------------

    async def prepare(self) -> None:
        import ccxt

        self.client = await self.pool.client()
        try:
            self.markets = await self.pool.markets()
        except ccxt.AuthenticationError as exc:
            raise LiveError(f"the exchange refused the API key: {exc}") from None
        unknown = [s for s in self.symbols if s not in self.markets]
        if unknown:
            raise LiveError(f"unknown symbol(s) on {self.pool.exchange_id}: {', '.join(unknown)}")
        try:
            await self.refresh_balance()
        except ccxt.AuthenticationError as exc:
            raise LiveError(f"the exchange refused the API key: {exc}") from None
        if self.wallet.initial_balance == 0:
            self.wallet.initial_balance = self.wallet.balance
        for symbol in self.symbols:
            await self._set_margin_and_leverage(symbol)

    async def _set_margin_and_leverage(self, symbol: str) -> None:
        import ccxt

        try:
            await self.pool.call("set_margin_mode", self.margin_mode, symbol)
        except ccxt.ExchangeError as exc:
            if "-4048" in str(exc):  # cannot change while a position is open: keep what the exchange has
                log.warning("%s: margin mode left as it is (a position is open)", symbol)
            elif "-4046" not in str(exc) and "No need to change" not in str(exc):  # already set: fine
                raise
        await self.pool.call("set_leverage", int(self.limits.leverage), symbol)

    async def refresh_balance(self) -> None:
        balance = await self.pool.call("fetch_balance")
        total = balance.get("total", {}).get("USDT")
        if total is not None:
            self.wallet.balance = float(total)

    async def persist(self) -> None:
        await self._persist()

    async def close_book(self, book: BotBook, trade: ClosedTrade) -> None:
        """Journal first, then drop the position: see the module docstring."""
        await self._journal(trade)
        book.position = None
        self.wallet.apply(trade)

    async def reconcile(self, config: StrategyConfig, adopt_unknown: bool) -> ReconcileReport:
        """Put the books right against the exchange (startup, periodically, after an outage)."""
        from trading_bot.execution.live.reconcile import reconcile

        return await reconcile(self, config, adopt_unknown)

    # --- entries -------------------------------------------------------------------------------

    async def process_candles(self, symbol: str, timeframe: str, candles: np.ndarray, scores: np.ndarray,
                              params: StrategyParams) -> BrokerEvents:
        """Only the newest closed candle may signal; exits are the exchange's job (see sync)."""
        book = self.book(symbol, timeframe)
        events = BrokerEvents()
        if candles.shape[0] == 0:
            return events
        ts = int(candles[-1, TS])
        if book.last_candle_ts is not None and ts <= book.last_candle_ts:
            return events
        book.last_candle_ts = ts
        side = signal_side(float(scores[-1]), params.threshold)
        if not side or book.position is not None:
            return events
        closed_ms_ago = self.now_ms() - (ts + timeframe_ms(timeframe))
        if closed_ms_ago > STALE_SIGNAL_MS:  # e.g. a candle that closed while the bot was down
            log.info("%s %s: %s signal from a candle that closed %.0fs ago: too old to act on", symbol, timeframe,
                     SIDE_NAMES[side], closed_ms_ago / 1000)
            return events
        if self.halted or self.stopping:
            log.warning("%s %s: %s signal skipped: new entries are halted (%s)", symbol, timeframe, SIDE_NAMES[side],
                        self.halted or "shutting down")
            return events
        if self.unresolved_entry(symbol):
            log.warning("%s %s: %s signal skipped: an earlier entry's outcome is not known yet", symbol, timeframe,
                        SIDE_NAMES[side])
            return events
        if symbol in self.claimed or any(p.symbol == symbol for p in self.open_positions()):
            log.info("%s %s: %s signal skipped, %s already has a position", symbol, timeframe, SIDE_NAMES[side], symbol)
            return events
        if not self.entry_allowed(extra_pending=len(self.claimed)):
            events.rejected += 1
            return events
        self.claimed.add(symbol)  # before the first await: parallel bots see it
        try:
            position = await self._enter(book, side, float(candles[-1, CLOSE]), ts + timeframe_ms(timeframe), params)
        finally:
            self.claimed.discard(symbol)
        if position is not None:
            events.opened.append(position)
        return events

    def unresolved_entry(self, symbol: str) -> bool:
        return any(i.get("kind") == "entry" and i.get("symbol") == symbol for i in self.intents.values())

    async def fill_at_open(self, symbol: str, timeframe: str, open_price: float, candle_ts: int,
                           params: StrategyParams) -> BrokerEvents:
        return BrokerEvents()  # live entries are market orders at the signal, nothing waits

    def _quantity(self, symbol: str, side: int, price: float, sl_pct: float, rr_ratio: float) -> float:
        stop, _ = protective_levels(side, price, sl_pct, rr_ratio)
        raw = position_size(self.wallet.balance, price, stop, self.limits)
        try:
            qty = float(self.client.amount_to_precision(symbol, raw))
        except Exception:  # ccxt raises when the amount rounds to zero
            qty = 0.0
        limits = self.markets[symbol].get("limits", {})
        min_qty = (limits.get("amount") or {}).get("min") or 0.0
        min_cost = (limits.get("cost") or {}).get("min") or 0.0
        if qty <= 0 or qty < min_qty or qty * price < min_cost:
            log.info("%s: order of %.8g (≈%.2f USDT, %.8g before rounding) is below the exchange minimum "
                     "(qty %s, notional %s): skipped", symbol, qty, qty * price, raw, min_qty, min_cost)
            return 0.0
        return qty

    async def _enter(self, book: BotBook, side: int, last_close: float, fill_candle_ts: int,
                     params: StrategyParams) -> Position | None:
        import ccxt

        symbol = book.symbol
        qty = self._quantity(symbol, side, last_close, params.sl_pct, params.rr_ratio)
        if qty <= 0:
            return None
        client_id = new_client_id("e")
        self.intents[client_id] = {"kind": "entry", "symbol": symbol, "timeframe": book.timeframe, "side": side,
                                   "qty": qty, "signal_ts": book.last_candle_ts, "created_ms": self.now_ms()}
        await self.persist()
        try:
            order = await self._submit(symbol, "market", ORDER_SIDE[side], qty, {"clientOrderId": client_id},
                                       client_id, trigger=False)
        except ccxt.NetworkError as exc:
            # Sent, and still not found after recvWindow: most likely never executed, but only the
            # exchange can say. The intent stays; reconciliation looks it up; the symbol waits.
            log.error("%s %s: entry %s outcome unknown (%s): kept for reconciliation", symbol, book.timeframe,
                      client_id, str(exc)[:160])
            self.reconcile_requested = True
            return None
        except ccxt.ExchangeError as exc:  # answered with an error: not executed
            log.warning("%s %s: entry refused by the exchange (%s): skipped", symbol, book.timeframe, str(exc)[:200])
            self.intents.pop(client_id, None)
            await self.persist()
            return None
        latency = self.now_ms() - fill_candle_ts
        self.latency.add(latency)
        entry_price = float(order.get("average") or order.get("price") or last_close)
        filled = float(order.get("filled") or qty)
        fee = (order.get("fee") or {}).get("cost")
        entry_fee = float(fee) if fee is not None else filled * entry_price * self.costs.fee_rate
        stop, target = protective_levels(side, entry_price, params.sl_pct, params.rr_ratio)
        stop = float(self.client.price_to_precision(symbol, stop))
        target = float(self.client.price_to_precision(symbol, target))
        position = Position(
            symbol=symbol, timeframe=book.timeframe, side=side, qty=filled, entry_price=entry_price,
            entry_ts=fill_candle_ts, signal_ts=book.last_candle_ts or 0, stop=stop, target=target,
            entry_fee=entry_fee, sl_pct=params.sl_pct, rr_ratio=params.rr_ratio,
            orders={"entry": str(order.get("id")), "entry_client": client_id, "opened_ms": str(self.now_ms())},
        )
        book.position = position
        self.intents.pop(client_id, None)
        await self.persist()
        log.info("entry %s %s %s acknowledged %.0f ms after the signal candle closed", SIDE_NAMES[side], symbol,
                 book.timeframe, latency)
        await self._protect(book, position)
        return book.position

    async def protect_unprotected(self) -> int:
        """Place whatever stop or target an open position lacks (shutdown: an entry's protection that a
        cut-short heartbeat never sent). Returns how many positions needed it."""
        needing = [(book, book.position) for book in self.books.values()
                   if book.position is not None and not {"stop", "target"} <= book.position.orders.keys()]
        for book, position in needing:
            missing = tuple(kind for kind in ("stop", "target") if kind not in position.orders)
            log.warning("%s %s: placing the missing %s before exiting", position.symbol, position.timeframe,
                        " and ".join(missing))
            await self._protect(book, position, missing)
        return len(needing)

    async def _protect(self, book: BotBook, position: Position, kinds: tuple[str, ...] = ("stop", "target")) -> None:
        """Stop first (a position must never be without one), then the target."""
        for kind in kinds:
            placed = await self.place_protection(position, kind)
            if placed == "placed":
                continue
            if kind == "target" and placed == "refused":
                log.error("%s %s: could not place the take-profit; the stop is in place", position.symbol,
                          position.timeframe)
                return
            if kind == "stop" and placed == "refused":
                log.critical("%s %s: COULD NOT PLACE THE STOP: closing the position at market now", position.symbol,
                             position.timeframe)
            trade = await self.close_at_market(book, position)
            if trade is not None:
                self.closed_elsewhere.append(trade)
            return

    async def place_protection(self, position: Position, kind: str) -> Placement:
        """One reduce-only trigger order (kind "stop" or "target") for the position: "placed", "refused",
        or "crossed" (the price is already beyond it: the order would trigger at once)."""
        import ccxt

        order_type, price = ("STOP_MARKET", position.stop) if kind == "stop" else ("TAKE_PROFIT_MARKET", position.target)
        client_id = new_client_id("s" if kind == "stop" else "t")
        self.intents[client_id] = {"kind": kind, "symbol": position.symbol, "timeframe": position.timeframe,
                                   "created_ms": self.now_ms()}
        await self.persist()
        params = {"triggerPrice": price, "reduceOnly": True, "clientOrderId": client_id, "workingType": "MARK_PRICE"}
        try:
            order = await self._submit(position.symbol, order_type, ORDER_SIDE[-position.side], position.qty, params,
                                       client_id, trigger=True)
        except ccxt.OrderImmediatelyFillable:
            log.warning("%s %s: the price is already beyond the %s (%s): closing at market", position.symbol,
                        position.timeframe, kind, price)
            self.intents.pop(client_id, None)
            return "crossed"
        except ccxt.BaseError as exc:
            # (An order whose outcome stayed unknown may exist after all: the exit cancels every
            # protective order of ours on the symbol, so it cannot outlive this position.)
            log.error("%s %s: the exchange refused the %s order (%s)", position.symbol, position.timeframe, kind,
                      str(exc)[:200])
            self.intents.pop(client_id, None)
            return "refused"
        self.intents.pop(client_id, None)
        position.orders[kind] = str(order.get("id"))
        position.orders[f"{kind}_client"] = client_id
        await self.persist()
        return "placed"

    async def close_at_market(self, book: BotBook, position: Position) -> ClosedTrade | None:
        """Close the position with a reduce-only market order and book the trade; None if that failed."""
        import ccxt

        client_id = new_client_id("x")
        self.intents[client_id] = {"kind": "close", "symbol": position.symbol, "timeframe": position.timeframe,
                                   "created_ms": self.now_ms()}
        await self.persist()
        try:
            await self._submit(position.symbol, "market", ORDER_SIDE[-position.side], position.qty,
                               {"reduceOnly": True, "clientOrderId": client_id}, client_id, trigger=False)
        except ccxt.BaseError as exc:
            log.critical("%s: closing the unprotected position FAILED (%s): act by hand", position.symbol, exc)
            self.intents.pop(client_id, None)
            return None
        self.intents.pop(client_id, None)
        trade = await self._book_exit(position)
        await self.close_book(book, trade)
        await self.persist()
        return trade

    async def _submit(self, symbol: str, order_type: str, side: str, qty: float, params: dict[str, Any],
                      client_id: str, trigger: bool) -> dict[str, Any]:
        """Send once. On a failure whose outcome is unknown (timeout, reset, 5xx), look the client id
        up; if it is not there yet, wait until the request's recvWindow has passed (the exchange
        rejects it after that) and look again; only then resend, with the same id."""
        import ccxt

        for attempt in range(SUBMIT_ATTEMPTS):
            sent_at = self.now_ms()
            try:
                return await self.pool.call("create_order", symbol, order_type, side, qty, None, params, retry=False)
            except ccxt.NetworkError as exc:
                log.warning("%s %s order %s: %s: %s; looking it up before anything else", symbol, order_type, client_id,
                            type(exc).__name__, str(exc)[:160])
                found = await self.lookup(symbol, client_id, trigger)
                if found is None and not isinstance(exc, ccxt.DDoSProtection):  # a 429/418 never reached the engine
                    await self.sleep_until_ms(sent_at + self.pool.recv_window_ms + 500)
                    found = await self.lookup(symbol, client_id, trigger)
                if found is not None:
                    log.info("%s order %s had reached the exchange (id %s)", symbol, client_id, found.get("id"))
                    return found
                if attempt + 1 == SUBMIT_ATTEMPTS:
                    raise
                await asyncio.sleep(self.pool.retry.delay(attempt))
        raise AssertionError("unreachable")

    async def lookup(self, symbol: str, client_id: str, trigger: bool) -> dict[str, Any] | None:
        import ccxt

        params: dict[str, Any] = {"clientOrderId": client_id}
        if trigger:
            params["trigger"] = True
        try:
            return await self.pool.call("fetch_order", None, symbol, params)
        except ccxt.OrderNotFound:
            return None
        except ccxt.ExchangeError as exc:
            if "-2013" in str(exc) or "does not exist" in str(exc).lower():
                return None
            raise

    # --- exits ---------------------------------------------------------------------------------

    async def sync(self) -> BrokerEvents:
        """One positions request per heartbeat while anything is open: a position the exchange no
        longer has was closed by its stop or target; book the exit and cancel the sibling."""
        import ccxt

        events = BrokerEvents(closed=self.closed_elsewhere)
        self.closed_elsewhere = []
        held = [b for b in self.books.values() if b.position is not None]
        if not held:
            if events.closed:
                await self.refresh_balance()
            return events
        symbols = sorted({b.symbol for b in held})
        try:
            positions = await self.pool.call("fetch_positions", symbols)
        except ccxt.BaseError as exc:  # retries exhausted: the exchange-side stops protect meanwhile
            log.warning("could not check positions (%s): trying again next heartbeat", str(exc)[:160])
            return events
        open_amounts: dict[str, float] = {}
        for p in positions:
            contracts = float(p.get("contracts") or 0.0)
            if contracts:
                open_amounts[p["symbol"]] = contracts if p.get("side") == "long" else -contracts
        for book in held:
            position = book.position
            assert position is not None
            if open_amounts.get(position.symbol, 0.0) * position.side > 0:
                continue
            waited = self._fill_waits.get(position.orders.get("entry", ""), 0)
            try:
                trade = await self._book_exit(position, require_fills=waited < EXIT_FILL_WAITS)
            except FillsNotVisible as exc:
                self._fill_waits[position.orders.get("entry", "")] = waited + 1
                log.info("%s %s: %s: booking it next heartbeat", position.symbol, position.timeframe, exc)
                continue
            except ccxt.BaseError as exc:
                log.warning("%s %s: closed on the exchange; booking it failed (%s): trying again next heartbeat",
                            position.symbol, position.timeframe, str(exc)[:160])
                continue
            self._fill_waits.pop(position.orders.get("entry", ""), None)
            await self.close_book(book, trade)
            events.closed.append(trade)
        if events.closed:
            await self.refresh_balance()
        return events

    async def cancel_our_triggers(self, symbol: str, keep: frozenset[str] = frozenset(),
                                  open_orders: list[dict[str, Any]] | None = None) -> list[str]:
        """Cancel every protective order of ours on the symbol except `keep` (ids); the ids cancelled.
        All of them, not just the ones the position recorded: one sent before a crash or with a lost
        answer would otherwise close part of the symbol's next position. `open_orders`: the symbol's
        open trigger orders when the caller has just fetched them."""
        import ccxt

        if open_orders is None:
            open_orders = await self.pool.call("fetch_open_orders", symbol, None, None, {"trigger": True})
        cancelled = []
        for order in open_orders:
            order_id = str(order.get("id"))
            if order_id in keep or not client_id_of(order).startswith(OUR_PREFIX):
                continue
            try:
                await self.pool.call("cancel_order", order_id, symbol, {"trigger": True})
                cancelled.append(order_id)
            except ccxt.OrderNotFound:
                pass
        return cancelled

    async def _fills_since(self, symbol: str, since: int) -> list[dict[str, Any]]:
        """Every fill of ours on the symbol from `since` to now. Binance answers at most 7 days (and
        1000 fills) per request, so a position held for weeks is read week by week."""
        now, cursor, fills = self.now_ms(), since, {}
        while cursor <= now:
            end = min(cursor + FILLS_WINDOW_MS - 1, now)
            batch = await self.pool.call("fetch_my_trades", symbol, cursor, FILLS_PAGE, {"until": end})
            fills.update((str(t.get("id")), t) for t in batch)
            full_page = len(batch) >= FILLS_PAGE and int(batch[-1].get("timestamp") or 0) >= cursor
            cursor = int(batch[-1]["timestamp"]) + 1 if full_page else end + 1
        return sorted(fills.values(), key=lambda t: int(t.get("timestamp") or 0))

    async def _book_exit(self, position: Position, require_fills: bool = False) -> ClosedTrade:
        """The closed trade, from the exchange's fills. With require_fills, FillsNotVisible while the
        closing fills listed cover less than the position (the trade list can lag the position)."""
        import ccxt

        symbol = position.symbol
        reason = "outside"
        for kind in ("stop", "target"):
            order_id = position.orders.get(kind)
            if not order_id:
                continue
            try:
                order = await self.pool.call("fetch_order", order_id, symbol, {"trigger": True})
            except ccxt.OrderNotFound:
                continue
            if order.get("status") == "closed":
                reason = kind
                break
        await self.cancel_our_triggers(symbol)
        since = int(position.orders.get("opened_ms") or 0) - 60_000
        trades = await self._fills_since(symbol, since) if since > 0 else await self.pool.call("fetch_my_trades", symbol)
        exit_side = ORDER_SIDE[-position.side]
        entry_fills = [t for t in trades if str(t.get("order")) == position.orders.get("entry")]
        # The exit is the first closing fills after the entry, up to the position's size (earlier or
        # later trades on the same symbol are not this position's).
        # (An adopted position has no entry order: it was open when adopted, so nothing before that
        # moment closed it.)
        entered_at = min((int(t.get("timestamp") or 0) for t in entry_fills),
                         default=int(position.orders.get("opened_ms") or since))
        exits, closed_qty = [], 0.0
        for t in sorted(trades, key=lambda t: int(t.get("timestamp") or 0)):
            if closed_qty >= position.qty * (1 - 1e-9):
                break
            if (t.get("side") == exit_side and str(t.get("order")) != position.orders.get("entry")
                    and int(t.get("timestamp") or 0) >= entered_at):
                exits.append(t)
                closed_qty += float(t["amount"])
        if require_fills and closed_qty < position.qty * (1 - 1e-9):
            raise FillsNotVisible(f"closed, but fills for only {closed_qty:g} of {position.qty:g} are listed")
        qty = sum(float(t["amount"]) for t in exits)
        exit_price = sum(float(t["amount"]) * float(t["price"]) for t in exits) / qty if qty else position.entry_price
        exit_fee = sum(float((t.get("fee") or {}).get("cost") or 0.0) for t in exits)
        entry_fee = sum(float((t.get("fee") or {}).get("cost") or 0.0) for t in entry_fills) or position.entry_fee
        realised = [t.get("info", {}).get("realizedPnl") for t in exits]
        gross = (sum(float(r) for r in realised if r is not None) if any(r is not None for r in realised)
                 else position.side * position.qty * (exit_price - position.entry_price))
        exit_ts = max((int(t.get("timestamp") or 0) for t in exits), default=self.now_ms())
        return ClosedTrade(
            symbol=symbol, timeframe=position.timeframe, side=position.side, qty=position.qty,
            entry_price=position.entry_price, entry_ts=position.entry_ts, signal_ts=position.signal_ts,
            exit_price=exit_price, exit_ts=exit_ts, exit_reason=reason, entry_fee=entry_fee, exit_fee=exit_fee,
            gross_pnl=gross, pnl=gross - entry_fee - exit_fee,
        )

