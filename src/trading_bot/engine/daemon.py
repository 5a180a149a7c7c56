"""Bot: the heartbeat loop that owns the market data, the strategies and the broker.

One tick: refresh the due series → features (cached per closed candle) → score the new rows →
broker runs the trading rules → journal + state saved atomically → status written, one log line
→ strategy config mtime checked → sleep until the next heartbeat or candle close.
SIGINT/SIGTERM finish the tick, save and exit 0; SIGHUP reloads the strategy config.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from trading_bot.domain.candles import CLOSE, TS
from trading_bot.domain.formatting import format_price
from trading_bot.domain.params import StrategyConfig, StrategyConfigError
from trading_bot.domain.sizing import RiskLimits
from trading_bot.domain.timeframes import last_closed_open_ms
from trading_bot.domain.trades import SIDE_NAMES, ClosedTrade, Costs
from trading_bot.domain.wallet import bot_id
from trading_bot.engine.clock import Clock, ReplayClock, wall_clock
from trading_bot.exchange.errors import is_exchange_error
from trading_bot.execution.broker import Broker, BrokerEvents
from trading_bot.execution.paper import PaperBroker
from trading_bot.marketdata.candle_csv import cache_file_name, read_candles
from trading_bot.marketdata.manager import MarketDataManager, SeriesKey
from trading_bot.marketdata.sources import CandleSource, ReplaySource, SyntheticSource
from trading_bot.ops.systemd import Notifier, Watchdog
from trading_bot.persistence.state_store import StateStore
from trading_bot.persistence.strategy_config_file import config_stamp, load_config
from trading_bot.settings import Settings
from trading_bot.signals.scoring import WeightedScoringStrategy

log = logging.getLogger("trading_bot")


REPLAY_WARMUP_CANDLES = 200


RECONCILE_EVERY_S = 600.0


RECONCILE_RETRY_S = 30.0  # after a reconciliation the exchange could not complete


SHUTDOWN_GRACE_S = 3.5  # systemd's TimeoutStopSec is 20 s; users expect an exit within 5 s


EXIT_DEADLINE_S = 4.4  # after the grace, live positions a cut-short tick left bare get until then (ccxt closes in 0.25 s)


class StartupError(RuntimeError):
    """The bot cannot start; the message is the one line the user sees."""


@dataclass
class ConfigWatch:
    """The strategy config in force, and how it got there (shown in status)."""

    config: StrategyConfig
    stamp: tuple[int, int, int] | None
    reloads: int = 0
    last_reload_ms: int | None = None
    last_error: str | None = None
    rejected_stamp: tuple[int, int, int] | None = None


@dataclass
class TickFigures:
    number: int = 0
    cycle_ms: float = 0.0
    compute_ms: float = 0.0
    new_candles: int = 0


class Bot:
    def __init__(self, settings: Settings, *, replay: bool = False, speed: float | None = None,
                 cycles: int | None = None, clock: Clock | None = None, source: CandleSource | None = None,
                 install_signals: bool = True, notifier: Notifier | None = None) -> None:
        self.settings = settings
        self.replay = replay
        self.speed = speed
        self.cycles = cycles
        self.keys: list[SeriesKey] = settings.bot_keys
        self.clock: Clock = clock or wall_clock(settings.clock_speed, settings.clock_origin_ms)
        self._source_override = source
        self.install_signals = install_signals
        self.stop_event = asyncio.Event()
        self._config_lock = asyncio.Lock()
        self.store = StateStore(settings.state_dir(replay))
        self.figures = TickFigures()
        self.started_ms = int(time.time() * 1000)
        self.ready_ms: int | None = None
        self.replay_end_ms: int | None = None
        self.mdm: MarketDataManager
        self.broker: Broker
        self.watch: ConfigWatch
        self.strategies: dict[SeriesKey, WeightedScoringStrategy] = {}
        self._signals_seen = 0
        self._status_written = 0.0
        self.notifier = notifier or Notifier()
        self.last_progress = time.monotonic()
        self._background: set[asyncio.Task[None]] = set()
        self.pool: Any = None  # the ExchangeClient, once anything needs the exchange
        self._reconciled_at = 0.0
        self._tick_task: asyncio.Future[None] | None = None
        self._stop_requested_at: float | None = None

    # --- startup -------------------------------------------------------------------------------

    async def _open_market_data(self) -> MarketDataManager:
        s = self.settings
        if self.replay:
            return await self._open_replay()
        if self._source_override is not None:
            cache_dir = s.synthetic_dir if self._source_override.name == "synthetic" else s.candles_dir
            mdm = MarketDataManager(self.keys, cache_dir, self._source_override, s.history_candles,
                                    s.fetch_concurrency)
            await asyncio.to_thread(mdm.load_cache)
            return mdm
        if self.live:
            mdm = MarketDataManager(self.keys, s.candles_dir, self._exchange_source(), s.history_candles,
                                    s.fetch_concurrency)
            await asyncio.to_thread(mdm.load_cache)
            return mdm
        if s.market_data != "synthetic":
            exchange_mdm = MarketDataManager(self.keys, s.candles_dir, self._exchange_source(), s.history_candles,
                                             s.fetch_concurrency)
            await asyncio.to_thread(exchange_mdm.load_cache)
            now = self.clock.now_ms()
            if s.market_data == "exchange" or all(x.is_fresh(now) for x in exchange_mdm.series.values()):
                return exchange_mdm
            from trading_bot.exchange.network import exchange_host, network_reachable

            host, port = exchange_host(s.exchange_id, s.exchange_url)
            reachable, why = await network_reachable(host, port)
            if reachable:
                return exchange_mdm
            log.warning("candle cache empty or stale and the exchange is unreachable (%s): paper trading on a "
                        "deterministic synthetic market (seed %d, candles in %s)", why, s.synthetic_seed, s.synthetic_dir)
        else:
            log.info("MARKET_DATA=synthetic: paper trading on a deterministic synthetic market (seed %d)", s.synthetic_seed)
        mdm = MarketDataManager(self.keys, s.synthetic_dir, SyntheticSource(s.synthetic_seed), s.history_candles,
                                s.fetch_concurrency)
        await asyncio.to_thread(mdm.load_cache)
        return mdm

    @property
    def live(self) -> bool:
        return not self.settings.dry_run and not self.replay

    def _exchange_source(self) -> CandleSource:
        """Candles through the process's one exchange pool (with the account's keys when live)."""
        from trading_bot.exchange.client import ExchangeClient
        from trading_bot.exchange.source import ExchangeSource

        s = self.settings
        if self.pool is None:
            key, secret = (s.api_key.reveal(), s.api_secret.reveal()) if self.live else ("", "")
            self.pool = ExchangeClient(s.exchange_id, s.exchange_url, key, secret, timeout_ms=s.exchange_timeout_ms,
                                     on_activity=self._mark_progress, demo=s.exchange_demo, now_ms=self.clock.now_ms,
                                     recv_window_ms=s.exchange_recv_window_ms)
        return ExchangeSource(self.pool, owns_pool=False)

    def _mark_progress(self) -> None:
        self.last_progress = time.monotonic()

    async def _open_replay(self) -> MarketDataManager:
        s = self.settings

        def read_all() -> dict[SeriesKey, np.ndarray]:
            return {(sym, tf): read_candles(s.candles_dir / cache_file_name(sym, tf))[0] for sym, tf in self.keys}

        history = await asyncio.to_thread(read_all)
        missing = [f"{sym} {tf}" for (sym, tf), c in history.items() if c.shape[0] <= REPLAY_WARMUP_CANDLES // 4]
        if missing:
            raise StartupError(f"replay needs cached candles in {s.candles_dir} for: {', '.join(missing[:5])}"
                               f"{' …' if len(missing) > 5 else ''}")
        source = ReplaySource(history)
        mdm = MarketDataManager(self.keys, s.candles_dir, source, s.history_candles, s.fetch_concurrency,
                                write_cache=False)
        start = 0
        for (_, tf), candles in history.items():
            tf_ms = mdm.series[(_, tf)].tf_ms
            index = min(REPLAY_WARMUP_CANDLES, candles.shape[0] - 1)
            start = max(start, int(candles[index, TS]) + tf_ms)
        saved = self.store.load()
        if saved is not None and saved.clock_ms:
            start = max(start, saved.clock_ms)  # resume where the last replay stopped
        self.replay_end_ms = source.end_ms()
        if not isinstance(self.clock, ReplayClock):
            self.clock = ReplayClock(start, self.speed)
        now = self.clock.now_ms()
        mdm.preload({key: c[c[:, TS] <= last_closed_open_ms(now, mdm.series[key].tf_ms)] for key, c in history.items()})
        return mdm

    def _load_config(self) -> ConfigWatch:
        path = self.settings.strategy_config
        stamp = config_stamp(path)
        return ConfigWatch(load_config(path, self.keys), stamp)

    def _load_state(self) -> Any:
        """Saved positions; an unreadable file is set aside (never deleted). Paper mode then starts
        afresh; live mode refuses, because starting from nothing while the exchange may hold
        positions is how stops get lost."""
        from trading_bot.persistence.state_store import StateError

        if self.store.directory.exists() and self.store.remove_stale_temp_files():
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
        self.store.repair_journal()
        return saved

    async def start(self) -> None:
        s = self.settings
        saved = self._load_state()
        self.watch = self._load_config()
        self.mdm = await self._open_market_data()
        self.strategies = {key: WeightedScoringStrategy(key[0], key[1], lambda: self.watch.config) for key in self.keys}
        costs = Costs(s.fee_rate, s.slippage)
        limits = RiskLimits(s.risk_per_trade, s.leverage, s.max_open_positions)
        if self.live:
            await self._start_live(costs, limits, saved)
        else:
            self.broker = PaperBroker(self.keys, s.initial_balance, costs, limits, saved)
            self.broker.mode = "replay" if self.replay else "paper"
        if self.mdm.due(self.clock.now_ms()):
            await self.mdm.refresh(self.clock.now_ms())
        not_ready = [f"{symbol} {timeframe}" for symbol, timeframe in self.mdm.not_ready()]
        if not_ready:
            raise StartupError(f"no market data for: {', '.join(not_ready[:5])}{' …' if len(not_ready) > 5 else ''}")
        events = await self._catch_up()
        for key in self.keys:
            self.mdm.features(key)
        await self._record(events)
        self.ready_ms = int(time.time() * 1000)
        positions = len(self.broker.open_positions())
        log.info("ready: %d bots (%d symbols × %d timeframes), mode=%s, data=%s, %d open position(s), "
                 "equity=%.2f, startup %.2fs", len(self.keys), len(s.symbols), len(s.timeframes),
                 self.broker.mode, self.mdm.source.name, positions, self.equity(),
                 (self.ready_ms - self.started_ms) / 1000)

    async def _start_live(self, costs: Costs, limits: RiskLimits, saved: Any) -> None:
        from trading_bot.execution.live.broker import LiveBroker, LiveError

        if saved is not None and saved.mode != "live":
            saved = None  # a paper wallet is no account: live state starts from the exchange
        never = asyncio.Event()  # (a stop request must not cut a recvWindow wait short: it decides an order's fate)
        broker = LiveBroker(self.pool, self.keys, costs, limits, saved, self.clock.now_ms, persist=self.save_state,
                            journal=self.store.append_trade,
                            sleep_until_ms=lambda wake: self.clock.sleep_until(wake, never))
        self.broker = broker
        try:
            await broker.prepare()
        except LiveError as exc:
            raise StartupError(str(exc)) from None
        log.warning("LIVE trading on %s (%s): real orders, balance %.2f USDT", self.pool.exchange_id,
                    "demo endpoints" if self.settings.exchange_demo else self.settings.exchange_url or "production",
                    broker.wallet.balance)
        await self.reconcile()

    async def reconcile(self) -> None:
        """Live: put the books right against the exchange (startup, periodically, after outages)."""
        from trading_bot.execution.live.broker import LiveBroker

        assert isinstance(self.broker, LiveBroker)
        self._reconciled_at = time.monotonic()
        self.pool.outage_recovered = False
        report = await self.broker.reconcile(self.watch.config, self.settings.adopt_unknown_positions)
        for trade in report.exits_booked:  # already in the journal (the broker writes it first)
            self._log_trade(trade)

    async def _catch_up(self) -> BrokerEvents:
        """Candles that closed while the bot was down: exits are applied, only the newest candle may
        signal. A bot seen for the first time starts from its newest candle."""
        events = BrokerEvents()
        for key, series in self.mdm.series.items():
            book = self.broker.book(*key)
            if book.last_candle_ts is None:
                book.last_candle_ts = series.last_ts
                continue
            rows = series.candles[series.candles[:, TS] > book.last_candle_ts]
            if rows.shape[0]:
                events = self._merge(events, await self._evaluate(key, rows))
        return events

    # --- the heartbeat -------------------------------------------------------------------------

    @staticmethod
    def _merge(total: BrokerEvents, more: BrokerEvents) -> BrokerEvents:
        total.opened += more.opened
        total.closed += more.closed
        total.rejected += more.rejected
        return total

    async def _evaluate(self, key: SeriesKey, rows: np.ndarray) -> BrokerEvents:
        series = self.mdm.series[key]
        strategy = self.strategies[key]
        features = self.mdm.features(key)
        total = series.candles.shape[0]
        k = min(rows.shape[0], total)
        scores = strategy.scores(features, slice(total - k, total))
        return await self.broker.process_candles(key[0], key[1], rows[-k:], scores, strategy.params)

    async def tick(self) -> None:
        t0 = time.perf_counter()
        now = self.clock.now_ms()
        new = await self.mdm.refresh(now)
        events = BrokerEvents()
        # Together, so live entries go out in parallel; the paper broker never awaits inside, so
        # paper bots still run one after another in a fixed order.
        results = await asyncio.gather(*(self._evaluate(key, rows) for key, rows in new.items()), return_exceptions=True)
        for key, result in zip(new, results):
            if isinstance(result, BaseException):
                if not isinstance(result, Exception):
                    raise result  # a cancellation (stop request) or an exit, not a bot's failure
                # One bot's failure (an exchange that stays unreachable, a bug) never stops the others.
                log.error("%s %s: this heartbeat failed: %s: %s", key[0], key[1], type(result).__name__,
                          str(result)[:200], exc_info=not is_exchange_error(result))
                continue
            self._merge(events, result)
        for key, series in self.mdm.series.items():
            if series.forming_open is not None and series.forming_ts is not None:
                book = self.broker.book(*key)
                if book.pending is not None:
                    params = self.strategies[key].params
                    self._merge(events, await self.broker.fill_at_open(key[0], key[1], series.forming_open,
                                                                       series.forming_ts, params))
        self._merge(events, await self.broker.sync())
        if self.live and (self.pool.outage_recovered or self.broker.reconcile_requested  # type: ignore[attr-defined]
                          or time.monotonic() - self._reconciled_at >= RECONCILE_EVERY_S):
            try:
                await self.reconcile()
            except Exception as exc:
                if not is_exchange_error(exc):
                    raise
                log.error("reconciliation failed (%s): trying again in %.0f s", str(exc)[:200], RECONCILE_RETRY_S)
                self._reconciled_at = time.monotonic() - RECONCILE_EVERY_S + RECONCILE_RETRY_S
        compute_ms = (time.perf_counter() - t0) * 1000
        self.figures.number += 1
        self.figures.new_candles = sum(r.shape[0] for r in new.values())
        self.figures.compute_ms = compute_ms
        await self._record(events)
        await self._check_config(now)
        self.figures.cycle_ms = (time.perf_counter() - t0) * 1000
        wall = time.monotonic()
        # A max-speed replay ticks thousands of times a second: the status file and the heartbeat
        # line are for people, so there they come at most once a second of wall time.
        report = not self.clock.simulated or wall - self._status_written >= 1.0
        if report or events:
            await self.store.write_status(self.status())
        if report:
            self._status_written = wall
            self._log_heartbeat(len(new))
            self.notifier.status(self.status_line())
        self.last_progress = time.monotonic()

    async def _record(self, events: BrokerEvents) -> None:
        for position in events.opened:
            log.info("opened %s %s %s qty=%.6g @ %s stop=%s target=%s", SIDE_NAMES[position.side], position.symbol,
                     position.timeframe, position.qty, format_price(position.entry_price),
                     format_price(position.stop), format_price(position.target))
        for trade in events.closed:
            # The live broker journals a trade itself before it drops the position; a resumed replay
            # may close a trade the journal already has. Either way the journal keeps one copy.
            await self.store.append_trade(trade)
            self._log_trade(trade)
        if events.rejected:
            log.info("%d entr%s skipped by the risk limits", events.rejected, "y" if events.rejected == 1 else "ies")
        if events or self.figures.number <= 1:
            await self.save_state()

    def _log_trade(self, trade: ClosedTrade) -> None:
        log.info("closed %s %s %s at %s (%s) pnl=%+.2f balance=%.2f", SIDE_NAMES[trade.side], trade.symbol,
                 trade.timeframe, trade.exit_reason, format_price(trade.exit_price), trade.pnl, self.broker.wallet.balance)

    async def save_state(self) -> None:
        state = self.broker.snapshot()
        state.clock_ms = self.clock.now_ms()
        await self.store.save(state, int(time.time() * 1000), self.mdm.source.name)

    async def _check_config(self, now_ms: int, force: bool = False) -> None:
        async with self._config_lock:  # the tick and a SIGHUP reload may both get here
            await self._reload_if_changed(now_ms, force)

    async def _reload_if_changed(self, now_ms: int, force: bool) -> None:
        path = self.settings.strategy_config
        stamp = config_stamp(path)
        if not force and (stamp == self.watch.stamp or stamp == self.watch.rejected_stamp):
            return
        try:
            config = await asyncio.to_thread(load_config, path, self.keys)
        except StrategyConfigError as exc:
            self.watch.last_error = str(exc)
            self.watch.rejected_stamp = stamp
            log.error("strategy config rejected, keeping the previous one: %s", exc)
            return
        self.watch = ConfigWatch(config, stamp, self.watch.reloads + 1, now_ms)
        log.info("strategy config reloaded from %s (%d bots)", config.source, len(self.keys))

    # --- figures -------------------------------------------------------------------------------

    def marks(self) -> dict[str, float]:
        return {bot_id(*k): float(s.candles[-1, CLOSE]) for k, s in self.mdm.series.items() if s.candles.shape[0]}

    def equity(self) -> float:
        marks = self.marks()
        upnl = sum(p.unrealised(marks.get(bot_id(p.symbol, p.timeframe), p.entry_price))
                   for p in self.broker.open_positions())
        return self.broker.wallet.balance + upnl

    def status(self) -> dict[str, Any]:
        marks = self.marks()
        wallet = self.broker.wallet
        positions = []
        for p in self.broker.open_positions():
            mark = marks.get(bot_id(p.symbol, p.timeframe), p.entry_price)
            positions.append({**p.to_json(), "mark": mark, "unrealised_pnl": p.unrealised(mark)})
        return {
            "pid": os.getpid(), "mode": self.broker.mode, "data_source": self.mdm.source.name,
            "time_ms": int(time.time() * 1000), "clock_ms": self.clock.now_ms(),
            "started_ms": self.started_ms, "ready_ms": self.ready_ms,
            "heartbeat": self.figures.number, "cycle_ms": round(self.figures.cycle_ms, 3),
            "compute_ms": round(self.figures.compute_ms, 3), "new_candles": self.figures.new_candles,
            "bots": len(self.keys), "open_positions": len(positions), "pending_entries": self.broker.pending_count(),
            "initial_balance": wallet.initial_balance, "balance": wallet.balance,
            "realised_pnl": wallet.realised_pnl, "unrealised_pnl": sum(p["unrealised_pnl"] for p in positions),
            "equity": wallet.balance + sum(p["unrealised_pnl"] for p in positions),
            "fees_paid": wallet.fees_paid, "trades": wallet.trades, "wins": wallet.wins,
            "cache": self.mdm.stats.as_json(),
            "entry_latency": self.broker.latency.as_json() if self.broker.latency is not None else None,
            "halted": self.broker.halted,
            "config": {"source": self.watch.config.source, "reloads": self.watch.reloads,
                       "last_reload_ms": self.watch.last_reload_ms, "last_error": self.watch.last_error},
            "positions": positions,
        }

    def _log_heartbeat(self, series_updated: int) -> None:
        f = self.figures
        wallet = self.broker.wallet
        log.info("heartbeat %d: cycle=%.1fms compute=%.1fms bots=%d new=%d open=%d equity=%.2f pnl=%+.2f "
                 "trades=%d cache_hit=%.1f%%", f.number, f.cycle_ms, f.compute_ms, len(self.keys), series_updated,
                 len(self.broker.open_positions()), self.equity(), wallet.realised_pnl, wallet.trades,
                 100 * self.mdm.stats.hit_rate)

    # --- running -------------------------------------------------------------------------------

    def request_stop(self, signame: str = "stop") -> None:
        """First signal: no new entries, let the tick (and its in-flight orders) finish for up to
        SHUTDOWN_GRACE_S, then save and exit 0. A second signal cuts the tick short at once; every
        file write is atomic, so nothing is left half-written either way."""
        self._signals_seen += 1
        if self._stop_requested_at is None:
            self._stop_requested_at = time.monotonic()
        if hasattr(self, "broker") and self.live:
            self.broker.stopping = True  # type: ignore[attr-defined]
        if self._signals_seen > 1:
            log.warning("%s again: stopping now", signame)
            self._abort_tick()
        else:
            log.info("%s received: finishing the tick, saving state", signame)
            asyncio.get_running_loop().call_later(SHUTDOWN_GRACE_S, self._abort_tick)
        self.stop_event.set()

    def _abort_tick(self) -> None:
        if self._tick_task is not None and not self._tick_task.done():
            log.warning("the heartbeat did not finish in time: cutting it short to exit")
            self._tick_task.cancel()

    def request_reload(self) -> None:
        log.info("SIGHUP received: reopening log files and reloading the strategy config")
        self._spawn(self.reload())

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def reload(self) -> None:
        """SIGHUP: runs beside the heartbeat (never skips one); RELOADING=1 … READY=1 for systemd."""
        from trading_bot.ops.logs import reopen_log_files

        self.notifier.reloading()
        try:
            reopen_log_files()
            if hasattr(self, "watch"):
                await self._check_config(self.clock.now_ms(), force=True)
        finally:
            self.notifier.ready(self.status_line() if hasattr(self, "broker") else "")

    def status_line(self) -> str:
        """The short STATUS= line for `systemctl status` (ASCII)."""
        halted = getattr(self.broker, "halted", None)
        return (f"{'HALTED (' + halted[:60] + ') | ' if halted else ''}"
                f"{self.broker.mode} | {len(self.keys)} bots | {len(self.broker.open_positions())} open | "
                f"equity {self.equity():.2f} | pnl {self.broker.wallet.realised_pnl:+.2f} | "
                f"tick {self.figures.cycle_ms:.1f} ms | data {self.mdm.source.name}")

    def _install_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGINT, self.request_stop, "SIGINT")
        loop.add_signal_handler(signal.SIGTERM, self.request_stop, "SIGTERM")
        loop.add_signal_handler(signal.SIGHUP, self.request_reload)

    def _finished(self) -> bool:
        if self.cycles is not None and self.figures.number >= self.cycles:
            return True
        return self.replay_end_ms is not None and self.clock.now_ms() >= self.replay_end_ms

    async def run(self) -> None:
        if self.install_signals:
            self._install_signal_handlers()
        try:
            await self.start()
            self.last_progress = time.monotonic()
            self.notifier.ready(self.status_line())
            self._start_watchdog()
            heartbeat_ms = int(self.settings.heartbeat_seconds * 1000)
            while not self.stop_event.is_set():
                self._tick_task = asyncio.ensure_future(self.tick())
                try:
                    await self._tick_task
                except asyncio.CancelledError:
                    if not self.stop_event.is_set():
                        raise
                    break  # cut short by a stop request: shut down below
                if self._finished():
                    break
                now = self.clock.now_ms()
                wake = self.clock.next_wake_ms(now, self.mdm.next_due_ms(), heartbeat_ms)
                if self.replay_end_ms is not None:
                    wake = min(wake, self.replay_end_ms)
                await self.clock.sleep_until(wake, self.stop_event)
                self.last_progress = time.monotonic()  # woke on time: the loop is alive
        finally:
            await self.shutdown()

    def _start_watchdog(self) -> None:
        watchdog = Watchdog(self.notifier, lambda: self.last_progress)
        if not watchdog.active:
            return
        if watchdog.timeout_s / 2 <= self.settings.heartbeat_seconds:
            log.warning("WatchdogSec=%.0fs is too short for HEARTBEAT_SECONDS=%g: use at least 3 × the heartbeat",
                        watchdog.timeout_s, self.settings.heartbeat_seconds)
        self.watchdog = watchdog
        self._spawn(watchdog.run())

    async def _protect_before_exit(self) -> None:
        """A tick cut short after an entry filled and before its stop was sent would leave the position
        bare for the whole downtime: place what is missing, within the exit deadline."""
        since = time.monotonic() - (self._stop_requested_at or time.monotonic())
        budget = max(0.3, EXIT_DEADLINE_S - since)
        try:
            await asyncio.wait_for(self.broker.protect_unprotected(), budget)  # type: ignore[attr-defined]
        except TimeoutError:
            log.critical("exiting with a position whose stop or target could not be placed in time: the next start "
                         "places it")
        except Exception as exc:
            if not is_exchange_error(exc):
                raise
            log.critical("exiting with a position whose stop or target could not be placed (%s): the next start "
                         "places it", str(exc)[:200])

    async def shutdown(self) -> None:
        self.notifier.stopping()
        for task in list(self._background):
            task.cancel()
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)
        if self.live and self.ready_ms is not None and self._signals_seen < 2:
            await self._protect_before_exit()
        if hasattr(self, "broker") and hasattr(self, "mdm"):
            await self.save_state()
            await self.store.write_status(self.status())
            log.info("stopped: %d heartbeats, %d open position(s), balance=%.2f", self.figures.number,
                     len(self.broker.open_positions()), self.broker.wallet.balance)
        if hasattr(self, "mdm"):
            await self.mdm.source.close()
        if self.pool is not None:
            await self.pool.close()
        if self.install_signals:
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
                loop.remove_signal_handler(sig)
        self.notifier.close()

