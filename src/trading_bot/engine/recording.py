"""Recording what a heartbeat did: the `opened …` / `closed …` log lines, the trade journal and the
saved state.

Each closed trade is journaled exactly once, by whoever must: the live broker journals a trade itself
before it drops the position (so a crash in between cannot lose it), so the live daemon builds a
`Recorder`, which only logs; the paper broker keeps no journal, so paper and replay build a
`PaperRecorder`, which journals each closed trade before logging it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Protocol

from trading_bot.domain.formatting import format_ms, format_price
from trading_bot.domain.trades import SIDE_NAMES, ClosedTrade, Position
from trading_bot.domain.wallet import SavedState
from trading_bot.engine.clock import Clock
from trading_bot.execution.broker import Broker, BrokerEvents
from trading_bot.persistence.state_store import StateStore

log = logging.getLogger("trading_bot")


def log_trade(trade: ClosedTrade, balance: float) -> None:
    log.info("closed %s %s %s at %s (%s) pnl=%+.2f balance=%.2f", SIDE_NAMES[trade.side], trade.symbol,
             trade.timeframe, trade.exit_reason, format_price(trade.exit_price), trade.pnl, balance)


class TradeSink(Protocol):
    """Told of each trade opened and closed, synchronously (engine/notifications/, when it is on)."""

    def opened(self, position: Position) -> None: ...

    def closed(self, trade: ClosedTrade, balance: float) -> None: ...


class StateSaver:
    """Saves the broker's books (positions.json) with the bot's clock. Built before the broker: the
    live broker persists through it while it trades, so it takes the snapshot as a function."""

    def __init__(self, store: StateStore, clock: Clock, source_name: str, snapshot: Callable[[], SavedState]) -> None:
        self.store = store
        self.clock = clock
        self.source_name = source_name
        self.snapshot = snapshot

    async def save(self) -> None:
        state = self.snapshot()
        state.clock_ms = self.clock.now_ms()
        await self.store.save(state, int(time.time() * 1000), self.source_name)


class Recorder:
    """Logs the events of a heartbeat (or of the catch-up at startup) and saves the state after any.
    Journals nothing: the live broker has journaled its closed trades already."""

    def __init__(self, broker: Broker, saver: StateSaver) -> None:
        self.broker = broker
        self.saver = saver
        self.sink: TradeSink | None = None  # the notifications, set once ready when they are on
        # Told of each closed trade once it is journaled (the status page's recent trades, METRICS_PORT):
        # every close (heartbeat, catch-up at ready, flatten, reconciliation) comes through closed_elsewhere().
        self.on_closed: Callable[[ClosedTrade], None] | None = None

    async def record(self, events: BrokerEvents, *, save_anyway: bool = False) -> None:
        for position in events.opened:
            log.info("opened %s %s %s qty=%.6g @ %s stop=%s target=%s", SIDE_NAMES[position.side], position.symbol,
                     position.timeframe, position.qty, format_price(position.entry_price),
                     format_price(position.stop), format_price(position.target))
            if self.sink is not None:
                self.sink.opened(position)
        for trade in events.closed:
            await self._journal(trade)
            self.closed_elsewhere(trade)
        for paid in events.funding:
            basis = ("the exchange's fee" if self.broker.mode == "live" else f"rate {100 * paid.rate:+.4f}%"
                     + ("" if paid.from_history else ", the default: no history cached"))
            log.info("funding %s %s %s %.4f USDT at %s UTC (%s)", paid.symbol, paid.timeframe or "(no position)",
                     "received" if paid.amount >= 0 else "paid", abs(paid.amount), format_ms(paid.time_ms), basis)
        if events.rejected:
            log.info("%d entr%s skipped by the risk limits", events.rejected, "y" if events.rejected == 1 else "ies")
        if events or save_anyway:
            await self.save_state()

    def closed_elsewhere(self, trade: ClosedTrade) -> None:
        """The `closed …` line (and the notification) of a trade already journaled: this recorder's
        own, or one that reconciliation booked (engine/supervision.py)."""
        log_trade(trade, self.broker.wallet.balance)
        if self.on_closed is not None:
            self.on_closed(trade)
        if self.sink is not None:
            self.sink.closed(trade, self.broker.wallet.balance)

    async def save_state(self) -> None:
        await self.saver.save()

    async def _journal(self, trade: ClosedTrade) -> None:
        """Nothing to do: the live broker journals a trade before it drops the position."""


class PaperRecorder(Recorder):
    """Paper and replay: the paper broker keeps no journal, so each closed trade is journaled here."""

    async def _journal(self, trade: ClosedTrade) -> None:
        # A resumed replay may close a trade the journal already has: the store keeps one copy.
        await self.saver.store.append_trade(trade)
