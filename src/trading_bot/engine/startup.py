"""Startup, the composition root: what runs, built once, in order.

`Startup.build()` loads the saved state and the strategy config, opens the market data (candle_source.py
picks the source), builds the broker and what goes with it, and returns the `Parts`: paper and live
differ here, by which broker, recorder and supervisor are built, and nowhere else. `Startup.get_ready()`
then prepares the broker (live: against the exchange), fetches what is due, applies the candles that
closed while the bot was down, and logs `ready: …`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from trading_bot.domain.candles import TS
from trading_bot.domain.universe import busy_symbols, start_symbols
from trading_bot.domain.wallet import SavedState
from trading_bot.engine.candle_source import MarketData, open_funding, open_market_data
from trading_bot.engine.clock import Clock
from trading_bot.engine.config_watch import ConfigWatcher
from trading_bot.engine.errors import StartupError
from trading_bot.engine.exchange_link import ExchangeLink
from trading_bot.engine.heartbeat import Heartbeat, Pulse, merge
from trading_bot.engine.recording import PaperRecorder, Recorder, StateSaver
from trading_bot.engine.status import RunFigures, StatusReport
from trading_bot.engine.supervision import LiveSupervisor, PaperSupervisor, Supervisor
from trading_bot.engine.universe import StartChoice, UniverseKeeper, choose_at_start
from trading_bot.execution.broker import Broker, BrokerEvents
from trading_bot.execution.paper import PaperBroker
from trading_bot.marketdata.manager import MarketDataManager
from trading_bot.marketdata.sources import CandleSource
from trading_bot.ops.systemd import Notifier
from trading_bot.persistence.state_store import StateStore
from trading_bot.settings import STATE_DIRS, Settings
from trading_bot.signals.scoring import WeightedScoringStrategy

log = logging.getLogger("trading_bot")


@dataclass(frozen=True)
class Parts:
    """What startup built; the heartbeat and the shutdown work with these."""

    clock: Clock
    store: StateStore
    mdm: MarketDataManager
    broker: Broker
    strategies: dict[tuple[str, str], WeightedScoringStrategy]
    recorder: Recorder
    supervisor: Supervisor
    report: StatusReport
    heartbeat: Heartbeat
    replay_end_ms: int | None  # a replay stops there
    universe: UniverseKeeper | None = None  # TRADING_SYMBOLS=top:N or all


@dataclass(frozen=True)
class Trading:
    """The mode-specific parts: which broker, who records its trades, who supervises it."""

    broker: Broker
    recorder: Recorder
    supervisor: Supervisor


class Startup:
    def __init__(self, settings: Settings, *, live: bool, replay: bool, speed: float | None,
                 source: CandleSource | None, clock: Clock, store: StateStore, config: ConfigWatcher,
                 exchange: ExchangeLink, figures: RunFigures, pulse: Pulse, notifier: Notifier,
                 wake: Callable[[], None] = lambda: None) -> None:
        self.settings = settings
        self.keys = settings.bot_keys
        self.live = live
        self.replay = replay
        self.speed = speed
        self.source = source  # candles from the caller instead of the settings' choice
        self.clock = clock  # the clock given; a replay brings its own (see Parts.clock)
        self.store = store
        self.config = config
        self.exchange = exchange
        self.figures = figures
        self.pulse = pulse
        self.notifier = notifier
        self.wake = wake  # ends the daemon's sleep: a pushed candle close or account event is handled now

    async def build(self) -> Parts:
        saved = self._load_state()
        self.config.load()
        market_settings, choice = await self._choose_symbols(saved)
        market = await open_market_data(market_settings, self.keys, self.clock, self.exchange, live=self.live,
                                        replay=self.replay, speed=self.speed, override=self.source, saved=saved,
                                        on_push=self.wake)
        strategies = {key: WeightedScoringStrategy(key[0], key[1], self.config.current) for key in self.keys}
        trading = self._live(market, saved) if self.live else self._paper(market, saved)
        universe = None
        if choice is not None and self.settings.universe is not None:
            universe = UniverseKeeper(self.settings.universe, self.settings.timeframes, choice, market.clock.now_ms(),
                                      mdm=market.mdm, strategies=strategies, broker=trading.broker,
                                      supervisor=trading.supervisor, config=self.config)
        report = StatusReport(market.clock, market.mdm, trading.broker, self.config, self.figures,
                              self.store, self.notifier, universe)
        heartbeat = Heartbeat(market.clock, market.mdm, strategies, trading.broker, trading.supervisor,
                              trading.recorder, self.config, report, self.figures, self.pulse, universe)
        return Parts(clock=market.clock, store=self.store, mdm=market.mdm, broker=trading.broker, strategies=strategies,
                     recorder=trading.recorder, supervisor=trading.supervisor, report=report, heartbeat=heartbeat,
                     replay_end_ms=market.replay_end_ms, universe=universe)

    async def _choose_symbols(self, saved: SavedState | None) -> tuple[Settings, StartChoice | None]:
        """TRADING_SYMBOLS=top:N or all: the symbols now (engine/universe.py), and the saved books'
        symbols that still hold something. Returns the settings the market data opens with (the choice
        decides between the exchange and the synthetic market) and the choice."""
        s = self.settings
        if s.universe is None:
            return s, None
        if self.replay:
            raise StartupError(f"TRADING_SYMBOLS={s.universe}: a replay trades the cached candles of a list of symbols: "
                               "run it with --symbols A,B (or set TRADING_SYMBOLS to a list)")
        choice = await choose_at_start(s, s.universe, self.exchange, live=self.live, override=self.source)
        busy = busy_symbols(saved.books.values(), saved.intents.values()) if saved is not None else set()
        symbols = start_symbols(choice.chosen, busy)
        self.keys = [(symbol, tf) for symbol in symbols for tf in s.timeframes]
        self.config.track(self.keys)
        if self.live:
            return s, choice
        return s.with_overrides(market_data="synthetic" if choice.synthetic else "exchange"), choice

    def _paper(self, market: MarketData, saved: SavedState | None) -> Trading:
        s = self.settings
        broker = PaperBroker(self.keys, s.initial_balance, s.costs, s.risk_limits, saved,
                             mode="replay" if self.replay else "paper", protections=s.protections,
                             funding=open_funding(self.settings, sorted({symbol for symbol, _ in self.keys})))
        saver = StateSaver(self.store, market.clock, market.mdm.source.name, broker.snapshot)
        return Trading(broker, PaperRecorder(broker, saver), PaperSupervisor())

    def _live(self, market: MarketData, saved: SavedState | None) -> Trading:
        from trading_bot.execution.live.broker import LiveBroker

        s = self.settings
        clock = market.clock
        never = asyncio.Event()  # (a stop request must not cut a recvWindow wait short: it decides an order's fate)

        def snapshot() -> SavedState:
            return broker.snapshot()  # the broker persists through the saver, which snapshots the broker

        saver = StateSaver(self.store, clock, market.mdm.source.name, snapshot)
        client = self.exchange.get()
        broker = LiveBroker(client, self.keys, s.costs, s.risk_limits, saved, clock.now_ms, persist=saver.save,
                            journal=self.store.append_trade, sleep_until_ms=lambda wake: clock.sleep_until(wake, never),
                            protections=s.protections, stream=self.exchange.user_stream() if s.user_stream else None,
                            wake=self.wake, positions_check_ms=int(s.user_stream_check_s * 1000))
        where = "demo endpoints" if s.exchange_demo else s.exchange_url or "production"
        recorder = Recorder(broker, saver)
        supervisor = LiveSupervisor(broker, client, self.config, s.adopt_unknown_positions, where, recorder)
        return Trading(broker, recorder, supervisor)

    def _load_state(self) -> SavedState | None:
        """Saved positions; an unreadable file is set aside (never deleted). Paper mode then starts
        afresh; live mode refuses, because starting from nothing while the exchange may hold
        positions is how stops get lost. Books of another mode are never adopted: each mode has its
        own folder (Settings.state_dir), and the files of before that split are moved first."""
        from trading_bot.persistence.atomic_files import remove_orphaned_temp_files
        from trading_bot.persistence.state_migration import migrate_legacy_state
        from trading_bot.persistence.state_store import StateError

        s = self.settings
        migrate_legacy_state(s.legacy_state_dir, {mode: s.state_dir(mode=mode) for mode in STATE_DIRS})
        if self.store.directory.exists() and remove_orphaned_temp_files(self.store.directory):
            log.info("removed the temp file of a write a crash interrupted (the state file itself is intact)")
        try:
            saved = self.store.load()
        except StateError as exc:
            backup = self.store.set_aside_corrupt()
            if self.live:
                raise StartupError(f"{exc}; kept it as {backup}. Live mode will not start without its state: "
                                   "restore the file, or move the backup away to start from the exchange's positions") from None
            log.error("%s; kept it as %s and started with an empty paper wallet", exc, backup)
            saved = None
        mode = s.mode(self.replay)
        if saved is not None and saved.mode != mode:
            raise StartupError(f"{self.store.positions_path} holds {saved.mode} books, not {mode} ones: "
                               "move it into the folder of its mode")
        self.store.repair_journal()
        return saved

    async def get_ready(self, parts: Parts) -> None:
        s = self.settings
        await parts.supervisor.start()
        mdm = parts.mdm
        mdm.start_push()
        if mdm.due(parts.clock.now_ms()):
            await mdm.refresh(parts.clock.now_ms())
        not_ready = mdm.not_ready()
        if not_ready and (parts.universe is None or len(not_ready) == len(mdm.series)):
            names = [f"{symbol} {timeframe}" for symbol, timeframe in not_ready]
            raise StartupError(f"no market data for: {', '.join(names[:5])}{' …' if len(names) > 5 else ''}")
        if not_ready and parts.universe is not None:  # a chosen symbol may be too young for its daily bot
            parts.universe.warm(not_ready)
        # Features are computed when a bot scores a new candle (the cache is keyed by it), not here:
        # computed now they would be stale by the first read (2,800 series: seconds and ~290 MiB).
        events = await self._catch_up(parts)
        await parts.recorder.record(events, save_anyway=True)
        self.figures.ready_ms = int(time.time() * 1000)
        symbols = len({symbol for symbol, _ in self.keys})
        log.info("ready: %d bots (%s%d symbols × %d timeframes), mode=%s, data=%s, %d open position(s), "
                 "equity=%.2f, startup %.2fs", len(self.keys), f"{s.universe}: " if s.universe else "", symbols,
                 len(s.timeframes), parts.broker.mode, mdm.source.name, len(parts.broker.open_positions()), parts.report.equity(),
                 (self.figures.ready_ms - self.figures.started_ms) / 1000)

    async def _catch_up(self, parts: Parts) -> BrokerEvents:
        """Candles that closed while the bot was down: exits are applied, only the newest candle may
        signal. A bot seen for the first time starts from its newest candle."""
        events = BrokerEvents()
        warming = parts.universe.warming if parts.universe is not None else set()
        for key, series in parts.mdm.series.items():
            if key in warming:
                continue  # not enough history to score yet (engine/universe.py admits it later)
            book = parts.broker.book(*key)
            if book.last_candle_ts is None:
                book.last_candle_ts = series.last_ts
                continue
            rows = series.candles[series.candles[:, TS] > book.last_candle_ts]
            if rows.shape[0]:
                merge(events, await parts.heartbeat.evaluate(key, rows))
        return events
