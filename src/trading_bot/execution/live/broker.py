"""LiveBroker (DRY_RUN=false): real orders through the pooled ccxt client.

The decision is the paper broker's (the same `signal_side`, `protective_levels` and sizing); only
execution differs: a market entry as soon as the signal candle closes, then a reduce-only
STOP_MARKET and TAKE_PROFIT_MARKET on the exchange (Binance algo orders), so a position is
protected even while the bot is down. The broker composes the parts that do each job:

- gateway.py (OrderGateway): every request; an order carries our client order id, and a timeout or
  lost answer is resolved by looking that id up, never by sending blindly again; a resend (only
  once the lookups and the recvWindow wait say the first never executed) reuses the same id.
  Binance only refuses a duplicate id while the first order is open, so the lookups are what
  prevents a double entry, not the id.
- intent_ledger.py (IntentLedger): every order's intent is recorded and saved before it is sent.
- entries.py (EntryOrders), protection.py (Protection): the entry, then its stop and target; a
  position is never left without a stop (if the stop cannot be placed, the position is closed at
  market and the log says so loudly).
- exits.py (ExitBooker): a closed trade is written to the journal before the position leaves the books.
- account_events.py (AccountEvents): what the user data stream (exchange/user_stream.py) reported,
  kept for sync: a stop or target that filled is booked from the stream's own fills at the next
  heartbeat (the stream wakes the daemon), and the REST positions request becomes a consistency
  check every `positions_check_ms` (every heartbeat while the stream is down or off).
- reconcile.py: the books put right against the exchange (startup, periodically, after an outage,
  after every reconnect of the stream).

One position per symbol on the exchange (positions are netted per symbol): while one bot holds BTC,
the other BTC timeframes skip their signals. InsufficientFunds / InvalidOrder: that bot logs and
skips; the daemon keeps running.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable

import numpy as np

from trading_bot.domain.candles import CLOSE, TS
from trading_bot.domain.params import StrategyParams
from trading_bot.domain.protections import ProtectionLimits
from trading_bot.domain.rules import signal_side
from trading_bot.domain.sizing import RiskLimits
from trading_bot.domain.timeframes import timeframe_ms
from trading_bot.domain.trades import PROTECTIVE_KINDS, SIDE_NAMES, BotBook, ClosedTrade, Costs, Position
from trading_bot.domain.wallet import SavedState
from trading_bot.exchange.client import ExchangeClient
from trading_bot.exchange.exceptions import (
    AuthenticationError,
    BaseError,
    ExchangeError,
    margin_mode_already_set,
    margin_mode_locked,
)
from trading_bot.exchange.user_stream import UserStream
from trading_bot.execution.broker import Books, BrokerEvents
from trading_bot.execution.latency import LatencyStats
from trading_bot.execution.live.account_events import AccountEvents, ReconcileMark
from trading_bot.execution.live.entries import EntryOrders
from trading_bot.execution.live.exits import ExitBooker
from trading_bot.execution.live.funding_income import FundingIncome
from trading_bot.execution.live.gateway import OrderGateway
from trading_bot.execution.live.intent_ledger import IntentLedger
from trading_bot.execution.live.protection import Protection

log = logging.getLogger(__name__)


STALE_SIGNAL_MS = 30_000


POSITIONS_CHECK_MS = 60_000  # with the user data stream up: the REST positions request at most this often


class LiveError(RuntimeError):
    """Live trading cannot start; one line for the user."""


class LiveBroker(Books):
    name = "live"
    mode = "live"

    def __init__(self, pool: ExchangeClient, keys: list[tuple[str, str]], costs: Costs, limits: RiskLimits,
                 saved: SavedState | None, now_ms: Callable[[], int], *, persist: Callable[[], Awaitable[None]],
                 journal: Callable[[ClosedTrade], Awaitable[object]], sleep_until_ms: Callable[[int], Awaitable[None]],
                 margin_mode: str = "isolated", protections: ProtectionLimits | None = None,
                 stream: UserStream | None = None, wake: Callable[[], None] = lambda: None,
                 positions_check_ms: int = POSITIONS_CHECK_MS) -> None:
        super().__init__(keys, 0.0, limits, saved, protections)
        self.pool = pool
        self.now_ms = now_ms
        self.margin_mode = margin_mode
        self.keys = list(keys)
        self.symbols = sorted({symbol for symbol, _ in keys})
        self.halted: str | None = None  # why new entries are refused (set by reconciliation)
        self.stopping = False  # a stop was requested: no new entries
        # Waits until the bot's clock reads a time (the exchange's recvWindow is in the exchange's time).
        self.sleep_until_ms = sleep_until_ms
        self.claimed: set[str] = set()  # symbols with an entry in flight
        latency = LatencyStats()
        self.latency = latency
        self._persist = persist  # saves the books (the daemon's state file)
        self.closed_elsewhere: list[ClosedTrade] = []  # booked outside sync(); reported by the next sync()
        self.orders = OrderGateway(pool, now_ms, sleep_until_ms)
        self.ledger = IntentLedger(self.intents, persist)
        self.exits = ExitBooker(self.orders, self.guard, journal, now_ms)
        self.protection = Protection(self.orders, self.ledger, self.exits, persist, now_ms)
        self.entries = EntryOrders(self.orders, self.ledger, self.wallet, costs, limits, latency, now_ms)
        self.funding = FundingIncome(pool, self.guard, lambda: self.held(None), now_ms,
                                     saved.funding_settled_ms if saved else None)
        self.stream = stream  # None: USER_STREAM=off, positions are asked every heartbeat
        self.account = AccountEvents(self.open_positions, self._market_id, wake, now_ms) if stream else None
        self.positions_check_ms = positions_check_ms

    @property
    def reconcile_requested(self) -> bool:
        """An order's outcome is unknown, or the user data stream reconnected (events of the gap are lost)
        or reported a protective order the exchange ended: reconcile at the next heartbeat."""
        return self.ledger.reconcile_requested or (self.account is not None and self.account.reconcile_needed)

    @reconcile_requested.setter
    def reconcile_requested(self, value: bool) -> None:
        self.ledger.reconcile_requested = value

    # --- startup -------------------------------------------------------------------------------

    async def prepare(self) -> None:
        try:
            await self.orders.connect()
        except AuthenticationError as exc:
            raise LiveError(f"the exchange refused the API key: {exc}") from None
        try:
            await self.refresh_balance()
        except AuthenticationError as exc:
            raise LiveError(f"the exchange refused the API key: {exc}") from None
        if self.wallet.initial_balance == 0:
            self.wallet.initial_balance = self.wallet.balance
        await self.prepare_symbols(self.symbols)
        if self.stream is not None and self.account is not None:  # before the startup reconciliation, which covers it
            await self.stream.start(self.account.receive, self.account.connected)  # (once: a second prepare leaves it)

    async def prepare_symbols(self, symbols: Iterable[str]) -> None:
        """Margin mode and leverage of these symbols (at start: all; a symbol the universe adds: its
        own two requests, not every traded symbol's again)."""
        symbols = list(symbols)
        unknown = [s for s in symbols if s not in self.orders.markets]
        if unknown:
            raise LiveError(f"unknown symbol(s) on {self.pool.exchange_id}: {', '.join(unknown)}")
        for symbol in symbols:
            await self._set_margin_and_leverage(symbol)

    @property
    def stream_state(self) -> str:
        """The user data stream: connected, connecting, reconnecting, or off."""
        return self.stream.state if self.stream is not None else "off"

    def reconcile_mark(self) -> ReconcileMark | None:
        """Taken before a reconciliation looks at the exchange: what it covers of the stream's reasons."""
        return self.account.mark() if self.account is not None else None

    def reconciled(self, mark: ReconcileMark | None) -> None:
        if self.account is not None and mark is not None:
            self.account.reconciled(mark)

    def _market_id(self, symbol: str) -> str:
        return str(self.orders.markets.get(symbol, {}).get("id", ""))

    async def _set_margin_and_leverage(self, symbol: str) -> None:
        try:
            await self.pool.call("set_margin_mode", self.margin_mode, symbol)
        except ExchangeError as exc:
            if margin_mode_locked(exc):  # cannot change while a position is open: keep what the exchange has
                log.warning("%s: margin mode left as it is (a position is open)", symbol)
            elif not margin_mode_already_set(exc):  # already set: fine
                raise
        await self.pool.call("set_leverage", int(self.limits.leverage), symbol)

    async def refresh_balance(self) -> None:
        balance = await self.pool.call("fetch_balance")
        total = balance.get("total", {}).get("USDT")
        if total is not None:
            self.wallet.balance = float(total)
            self.guard.check()  # the exchange's figure (funding included) against the account limits

    async def persist(self) -> None:
        await self._persist()

    def snapshot(self) -> SavedState:
        state = super().snapshot()
        state.funding_settled_ms = self.funding.seen_ms  # the newest funding fee booked
        return state

    def take_over(self, position: Position) -> BotBook:
        """Reconciliation: a position found on the exchange is its bot's from now on."""
        book = self.book(position.symbol, position.timeframe)
        book.position = position
        return book

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
        self.guard.begin(ts + timeframe_ms(timeframe))
        side = signal_side(float(scores[-1]), params.threshold)
        if not side or book.position is not None or self._skipped(book, side, ts):
            return events
        if not self.entry_allowed(extra_pending=len(self.claimed)):
            events.rejected += 1
            return events
        self.claimed.add(symbol)  # before the first await: parallel bots see it
        try:
            position = await self.entries.enter(book, side, float(candles[-1, CLOSE]), ts + timeframe_ms(timeframe),
                                                params)
            if position is not None:
                await self._protect(book, position)
        finally:
            self.claimed.discard(symbol)
        if position is not None and book.position is not None:
            events.opened.append(book.position)
        return events

    def _skipped(self, book: BotBook, side: int, ts: int) -> bool:
        """A signal not acted on: too old, entries not allowed (the trading state), the bot cooling down,
        or the symbol busy (each logged)."""
        symbol, timeframe = book.symbol, book.timeframe
        closed_ms_ago = self.now_ms() - (ts + timeframe_ms(timeframe))
        if closed_ms_ago > STALE_SIGNAL_MS:  # e.g. a candle that closed while the bot was down
            log.info("%s %s: %s signal from a candle that closed %.0fs ago: too old to act on", symbol, timeframe,
                     SIDE_NAMES[side], closed_ms_ago / 1000)
            return True
        state = self.trading_state()
        if not state.allows_entries:
            log.warning("%s %s: %s signal skipped: trading is %s", symbol, timeframe, SIDE_NAMES[side], state.describe())
            return True
        if self.guard.cooling_down(book, ts):
            log.info("%s %s: %s signal skipped: cooling down after %d stop-outs in a row", symbol, timeframe,
                     SIDE_NAMES[side], self.guard.limits.cooldown_stopouts)
            return True
        if self.ledger.unresolved_entry(symbol):
            log.warning("%s %s: %s signal skipped: an earlier entry's outcome is not known yet", symbol, timeframe,
                        SIDE_NAMES[side])
            return True
        if symbol in self.claimed or any(p.symbol == symbol for p in self.open_positions()):
            log.info("%s %s: %s signal skipped, %s already has a position", symbol, timeframe, SIDE_NAMES[side], symbol)
            return True
        return False

    async def fill_at_open(self, symbol: str, timeframe: str, open_price: float, candle_ts: int,
                           params: StrategyParams) -> BrokerEvents:
        return BrokerEvents()  # live entries are market orders at the signal, nothing waits

    async def protect_unprotected(self) -> int:
        """Place whatever stop or target an open position lacks (shutdown: an entry's protection that a
        cut-short heartbeat never sent). Returns how many positions needed it."""
        needing = [(book, book.position) for book in self.books.values()
                   if book.position is not None and book.position.missing_protection()]
        for book, position in needing:
            missing = position.missing_protection()
            log.warning("%s %s: placing the missing %s before exiting", position.symbol, position.timeframe,
                        " and ".join(missing))
            await self._protect(book, position, missing)
        return len(needing)

    async def _protect(self, book: BotBook, position: Position, kinds: tuple[str, ...] = PROTECTIVE_KINDS) -> None:
        """Stop first (a position must never be without one: refused, it is closed at market), then the target."""
        outcome = await self.protection.protect(book, position, kinds, close_if_stop_refused=True)
        if "target" in outcome.refused:
            log.error("%s %s: could not place the take-profit; the stop is in place", position.symbol,
                      position.timeframe)
        if outcome.trade is not None:
            self.closed_elsewhere.append(outcome.trade)

    # --- exits ---------------------------------------------------------------------------------

    async def flatten(self, symbols: set[str] | None, marks: dict[str, float], now_ms: int) -> BrokerEvents:
        """`trading-bot flatten`: each position closed with a reduce-only market order, our stop and
        target cancelled, the trade journaled before the position leaves the books (Protection's
        close at market, the path an unprotectable position takes). A close that fails is logged
        and the position kept, with its stop and target."""
        events = BrokerEvents()
        for book in self.held(symbols):
            position = book.position
            assert position is not None
            try:
                trade = await self.protection.close_at_market(book, position, reason="flatten")
            except BaseError as exc:  # closed, but not booked yet: the next sync books it from the fills
                log.warning("%s %s: flatten: booking the close failed (%s): the next heartbeat books it",
                            position.symbol, position.timeframe, str(exc)[:160])
                continue
            if trade is not None:
                events.closed.append(trade)
        if events.closed:
            await self.refresh_balance()
        return events

    async def sync(self) -> BrokerEvents:
        """What closed since the last heartbeat, booked, the sibling order cancelled: first the stops and
        targets the user data stream reported filled (from its own fills, no request), then the
        positions the exchange no longer holds, from one positions request: every heartbeat while the
        stream is off or down, else every positions_check_ms or as soon as the stream saw a held
        position go flat or turn (closed by hand, liquidated)."""
        events = BrokerEvents(closed=self.closed_elsewhere, funding=await self.funding.book_due())
        self.closed_elsewhere = []
        events.closed += await self._book_stream_exits()
        held = [b for b in self.books.values() if b.position is not None]
        if held and self._positions_check_due(held):
            seen = self.account.positions_seen() if self.account is not None else 0
            try:
                on_exchange = await self.orders.positions(sorted({b.symbol for b in held}))
            except BaseError as exc:  # retries exhausted: the exchange-side stops protect meanwhile
                log.warning("could not check positions (%s): trying again next heartbeat", str(exc)[:160])
                return events
            if self.account is not None:
                self.account.checked(seen)
            events.closed += await self.exits.book_closed(held, on_exchange)
        if events.closed:
            await self.refresh_balance()
        return events

    async def _book_stream_exits(self) -> list[ClosedTrade]:
        if self.account is None:
            return []
        closed = []
        for found in self.account.exits(self.held(None)):
            position = found.book.position
            assert position is not None
            try:
                trade = await self.exits.book_from_stream(found.book, found.kind, found.fills)
            except BaseError as exc:  # its fills stay kept: the next heartbeat tries again
                log.warning("%s %s: its %s filled; booking it failed (%s): trying again next heartbeat",
                            position.symbol, position.timeframe, found.kind, str(exc)[:160])
                continue
            self.account.forget(position)
            closed.append(trade)
        return closed

    def _positions_check_due(self, held: list[BotBook]) -> bool:
        if self.account is None or self.stream is None or self.stream.state != "connected":
            return True
        if self.account.contradicted([b.position for b in held if b.position is not None]):
            return True
        last = self.orders.positions_answered_ms  # this check's, or a reconciliation's
        return last is None or self.now_ms() - last >= self.positions_check_ms
