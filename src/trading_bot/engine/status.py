"""Status reporting: what the running daemon tells people.

status.json (written after a tick that changed something, and by the shutdown), the short STATUS=
line for `systemctl status`, the `heartbeat N: …` log line, and the marks and equity they show; with
METRICS_PORT, the Prometheus figures after every tick (engine/metrics.py); with notifications on, the
trading state's changes and a look at the books after every tick (engine/notifications/). The
figures of the run (started, ready, the last tick's timings) are kept here for them.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from typing import Any, Protocol

from trading_bot.domain.candles import CLOSE
from trading_bot.domain.protections import TradingState
from trading_bot.domain.trades import Position
from trading_bot.domain.wallet import bot_id
from trading_bot.engine.clock import Clock
from trading_bot.engine.config_watch import ConfigWatcher
from trading_bot.execution.broker import Broker
from trading_bot.marketdata.manager import MarketDataManager
from trading_bot.ops.systemd import Notifier
from trading_bot.persistence.state_store import StateStore

log = logging.getLogger("trading_bot")


class MetricsSink(Protocol):
    def update(self, report: StatusReport) -> None:
        """After each heartbeat: the figures a scrape will see (engine/metrics.py, METRICS_PORT)."""


class NotificationSink(Protocol):
    """Told synchronously, on the heartbeat (engine/notifications/, when it is on): must never await."""

    def state_changed(self, old: TradingState, new: TradingState) -> None: ...

    def after_tick(self, report: StatusReport) -> None: ...


class PageSink(Protocol):
    def record(self, report: StatusReport) -> None:
        """After each heartbeat: what the status page keeps of it (engine/status_page.py, METRICS_PORT)."""


class UniverseStatus(Protocol):
    def as_json(self) -> dict[str, Any]:
        """The symbol universe's part of status.json (engine/universe.py)."""


@dataclass
class RunFigures:
    """When this run started and got ready (epoch ms), and the last heartbeat's number and timings."""

    started_ms: int
    ready_ms: int | None = None  # None until startup is done
    number: int = 0
    cycle_ms: float = 0.0
    compute_ms: float = 0.0
    new_candles: int = 0


class StatusReport:
    def __init__(self, clock: Clock, mdm: MarketDataManager, broker: Broker, config: ConfigWatcher, figures: RunFigures,
                 store: StateStore, notifier: Notifier, universe: UniverseStatus | None = None) -> None:
        self.clock = clock
        self.mdm = mdm
        self.broker = broker
        self.config = config
        self.figures = figures
        self.store = store
        self.notifier = notifier
        self.universe = universe
        self.metrics: MetricsSink | None = None  # set once ready when METRICS_PORT is on
        self.notifications: NotificationSink | None = None  # set once ready when TELEGRAM_BOT_TOKEN / WEBHOOK_URL is
        self.page: PageSink | None = None  # likewise: the status page's equity curve
        self._published_at = 0.0  # wall time (monotonic) of the last heartbeat line
        self._state = broker.trading_state()  # the trading state last reported (logged when it changes)

    @property
    def bots(self) -> int:
        """One bot per series (the symbol universe may add and remove them)."""
        return len(self.mdm.series)

    def marks(self) -> dict[str, float]:
        return {bot_id(*k): float(s.candles[-1, CLOSE]) for k, s in self.mdm.series.items() if s.candles.shape[0]}

    def mark(self, position: Position) -> float:
        """The position's series' last close (its entry price while the series has none): one lookup, where
        marks() reads every series; the status page samples equity() every heartbeat."""
        series = self.mdm.series.get((position.symbol, position.timeframe))
        return float(series.candles[-1, CLOSE]) if series is not None and series.candles.shape[0] else position.entry_price

    def equity(self) -> float:
        return self.broker.wallet.balance + sum(p.unrealised(self.mark(p)) for p in self.broker.open_positions())

    def positions(self) -> list[dict[str, Any]]:
        """The open positions with their mark (the last close) and unrealised PnL."""
        positions = []
        for p in self.broker.open_positions():
            mark = self.mark(p)
            positions.append({**p.to_json(), "mark": mark, "unrealised_pnl": p.unrealised(mark)})
        return positions

    def status(self) -> dict[str, Any]:
        """What status.json holds (read by `trading-bot status`)."""
        wallet = self.broker.wallet
        figures = self.figures
        watch = self.config.watch
        state = self.broker.trading_state()
        positions = self.positions()
        return {
            "pid": os.getpid(), "mode": self.broker.mode, "data_source": self.mdm.source.name,
            "candle_feed": self.mdm.feed(),
            "time_ms": int(time.time() * 1000), "clock_ms": self.clock.now_ms(),
            "started_ms": figures.started_ms, "ready_ms": figures.ready_ms,
            "heartbeat": figures.number, "cycle_ms": round(figures.cycle_ms, 3),
            "compute_ms": round(figures.compute_ms, 3), "new_candles": figures.new_candles,
            "bots": self.bots, "open_positions": len(positions), "pending_entries": self.broker.pending_count(),
            "initial_balance": wallet.initial_balance, "balance": wallet.balance,
            "realised_pnl": wallet.realised_pnl, "unrealised_pnl": sum(p["unrealised_pnl"] for p in positions),
            "equity": wallet.balance + sum(p["unrealised_pnl"] for p in positions),
            "fees_paid": wallet.fees_paid, "funding": wallet.funding, "trades": wallet.trades, "wins": wallet.wins,
            "cache": self.mdm.stats.as_json(),
            "entry_latency": self.broker.latency.as_json() if self.broker.latency is not None else None,
            "halted": self.broker.halted,
            "user_stream": self.broker.stream_state,
            "paused": self.broker.paused,
            "trading_state": {"state": state.state, "reason": state.reason},
            "config": {"source": watch.config.source, "reloads": watch.reloads,
                       "last_reload_ms": watch.last_reload_ms, "last_error": watch.last_error},
            "positions": positions,
            "universe": self.universe.as_json() if self.universe is not None else None,
        }

    async def write(self) -> None:
        await self.store.write_status(self.status())

    def status_line(self) -> str:
        """The short STATUS= line for `systemctl status` (ASCII)."""
        state = self.broker.trading_state()
        return (f"{state.state.upper() + ' (' + state.reason[:80] + ') | ' if not state.allows_entries else ''}"
                f"{self.broker.mode} | {self.bots} bots | {len(self.broker.open_positions())} open | "
                f"equity {self.equity():.2f} | pnl {self.broker.wallet.realised_pnl:+.2f} | "
                f"tick {self.figures.cycle_ms:.1f} ms | data {self.mdm.source.name}")

    async def publish(self, series_updated: int, changed: bool) -> None:
        """After a tick: status.json, the heartbeat line and STATUS=. A max-speed replay ticks thousands
        of times a second: the status file and the heartbeat line are for people, so there they come at
        most once a second of wall time (status.json also whenever a tick traded)."""
        self._log_state_change()
        if self.metrics is not None:  # every tick (the histogram counts each), on the loop between ticks
            self.metrics.update(self)
        if self.notifications is not None:
            self.notifications.after_tick(self)
        if self.page is not None:
            self.page.record(self)
        wall = time.monotonic()
        report = not self.clock.simulated or wall - self._published_at >= 1.0
        if report or changed:
            await self.write()
        if report:
            self._published_at = wall
            self._log_heartbeat(series_updated)
            self.notifier.status(self.status_line())

    def _log_state_change(self) -> None:
        state = self.broker.trading_state()
        if state != self._state:
            level = logging.INFO if state.allows_entries else logging.WARNING
            log.log(level, "trading state: %s → %s", self._state.describe(), state.describe())
            if self.notifications is not None:
                self.notifications.state_changed(self._state, state)
            self._state = state

    def _log_heartbeat(self, series_updated: int) -> None:
        f = self.figures
        wallet = self.broker.wallet
        stream = self.broker.stream_state
        log.info("heartbeat %d: cycle=%.1fms compute=%.1fms bots=%d new=%d open=%d equity=%.2f pnl=%+.2f "
                 "trades=%d cache_hit=%.1f%% state=%s feed=%s%s", f.number, f.cycle_ms, f.compute_ms, self.bots,
                 series_updated, len(self.broker.open_positions()), self.equity(), wallet.realised_pnl, wallet.trades,
                 100 * self.mdm.stats.hit_rate, self.broker.trading_state().describe(), self.mdm.feed(),
                 f" stream={stream}" if stream is not None else "")
