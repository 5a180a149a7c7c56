"""Daemon: the process shell around the heartbeat.

It starts (startup.py builds the parts), runs the loop (one heartbeat.py tick, then sleep until the
next heartbeat or candle close), handles the signals and shuts down: SIGINT/SIGTERM finish the tick
(for up to SHUTDOWN_GRACE_S, then cut it short), save and exit 0; a second signal cuts it short at
once; SIGHUP reloads the strategy config (config_watch.py). Once ready it answers the operator
controls (pause, resume, flatten, reload) on control.sock in the state folder (control.py),
with METRICS_PORT Prometheus scrapes (metrics.py) and the status page (status_page.py), and with
TELEGRAM_BOT_TOKEN / WEBHOOK_URL it sends notifications and answers chat commands (notifications/). It pings
the systemd watchdog while the loop makes progress. Nothing here depends on paper or live: that is decided by what startup builds.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections.abc import Coroutine, Mapping
from typing import TYPE_CHECKING, Any

from trading_bot.engine.clock import Clock, wall_clock
from trading_bot.engine.config_watch import ConfigWatcher, reload_on_sighup
from trading_bot.engine.control import Controls, ControlServer
from trading_bot.engine.errors import StartupError
from trading_bot.engine.exchange_link import ExchangeLink
from trading_bot.engine.heartbeat import Pulse
from trading_bot.engine.startup import Parts, Startup
from trading_bot.engine.status import RunFigures
from trading_bot.marketdata.sources import CandleSource
from trading_bot.ops.systemd import Notifier, Watchdog
from trading_bot.persistence.state_lock import StateLock
from trading_bot.persistence.state_store import StateStore
from trading_bot.settings import Settings

if TYPE_CHECKING:
    from trading_bot.engine.metrics import Metrics
    from trading_bot.engine.notifications.notifier import Notifications
    from trading_bot.engine.notifications.outbox import Counters

__all__ = ["Daemon", "StartupError"]

log = logging.getLogger("trading_bot")


SHUTDOWN_GRACE_S = 3.5  # systemd's TimeoutStopSec is 20 s; users expect an exit within 5 s
EXIT_EXPECTED_S = 5.0  # the notifications' last flush waits only for what is left of it (0.2 s at least)


class Daemon:
    def __init__(self, settings: Settings, *, replay: bool = False, speed: float | None = None,
                 cycles: int | None = None, clock: Clock | None = None, source: CandleSource | None = None,
                 install_signals: bool = True, notifier: Notifier | None = None) -> None:
        self.settings = settings
        self.cycles = cycles  # stop after this many heartbeats (None: run until stopped)
        self.install_signals = install_signals
        self.notifier = notifier or Notifier()
        self.stop_event = asyncio.Event()
        # Ends the sleep between heartbeats early: a stop request, or something the exchange pushed
        # (a closed candle, a fill) that the next tick should handle now rather than on the timer.
        self.wake_event = asyncio.Event()
        self.figures = RunFigures(started_ms=int(time.time() * 1000))
        self.pulse = Pulse()
        live = not settings.dry_run and not replay
        clock = clock or wall_clock(settings.clock_speed, settings.clock_origin_ms)
        self.config = ConfigWatcher(settings.strategy_config, settings.bot_keys,
                                    settings.timeframes if settings.universe is not None else None)
        self.exchange = ExchangeLink(settings, with_keys=live, now_ms=clock.now_ms, on_activity=self.pulse.beat)
        state_dir = settings.state_dir(replay)
        self.state_dir = state_dir
        self._lock = StateLock(state_dir)  # one daemon per state folder: taken first thing in start()
        self._startup = Startup(settings, live=live, replay=replay, speed=speed, source=source, clock=clock,
                                store=StateStore(state_dir), config=self.config,
                                exchange=self.exchange, figures=self.figures, pulse=self.pulse, notifier=self.notifier,
                                wake=self.wake_event.set)
        self._parts: Parts | None = None  # None until startup built them: a stop or a reload may come first
        self._signals_seen = 0
        self._stop_requested_at: float | None = None  # monotonic
        self._tick_task: asyncio.Future[None] | None = None
        self._background: set[asyncio.Task[None]] = set()
        self._trading = asyncio.Lock()  # held by each tick and by a flatten: they never interleave
        self._controls: ControlServer | None = None
        self._metrics: Metrics | None = None  # METRICS_PORT: started after ready
        self._actions: Controls | None = None  # what the control socket and the chat commands both call
        self.notifications: Notifications | None = None  # TELEGRAM_BOT_TOKEN / WEBHOOK_URL: started after ready

    @property
    def parts(self) -> Parts:
        if self._parts is None:
            raise RuntimeError("the daemon has not started")
        return self._parts

    async def start(self) -> None:
        self._lock.acquire()  # before anything in the state folder is read or written
        self._parts = await self._startup.build()
        if self._stop_requested_at is not None:  # a stop asked for while the parts were being built
            self._parts.broker.stopping = True  # the catch-up at ready must not open anything either
        await self._startup.get_ready(self._parts)

    async def tick(self) -> None:
        async with self._trading:
            await self.parts.heartbeat.tick()

    async def start_controls(self) -> None:
        """Answer `trading-bot pause|resume|flatten|reload` (after ready: the books are loaded)."""
        server = ControlServer(self.state_dir, self.controls())
        if await server.start():
            self._controls = server

    def controls(self) -> Controls:
        if self._actions is None:
            self._actions = Controls(self.parts, self._trading, self.reload)
        return self._actions

    async def start_metrics(self) -> None:
        """METRICS_PORT: serve the Prometheus figures and the status page (after ready: the books and
        candles are loaded). The imports are here so that a run without it never loads prometheus_client
        nor the page."""
        if not self.settings.metrics_port:
            return
        from trading_bot.engine.metrics import Metrics
        from trading_bot.engine.status_page import StatusPage

        report = self.parts.report
        recorder = self.parts.recorder
        metrics = Metrics(self.settings.metrics_host, self.settings.metrics_port, self.exchange.made,
                          self.parts.supervisor.tally, self._notification_counters, report, self._trading)
        async with self._trading:  # no trade closes (a flatten) between the journal's read and the hook
            page = await StatusPage.load(report, self._trading)
            recorder.on_closed = page.on_closed
        if await metrics.start(page.routes()):
            self._metrics = metrics
            report.metrics = metrics
            report.page = page
            log.info("status page: http://%s:%d/", self.settings.metrics_host, self.settings.metrics_port)
        else:
            recorder.on_closed = None

    def _notification_counters(self) -> Mapping[str, Counters]:
        """For the metrics, which start first: {} until (and unless) the notifications run."""
        return self.notifications.counters if self.notifications is not None else {}

    async def start_notifications(self) -> None:
        """TELEGRAM_BOT_TOKEN / WEBHOOK_URL: the notifications and the chat commands (after ready).
        The import is here so that a run without them never loads any of it."""
        if not self.settings.notifications_on:
            return
        from trading_bot.engine.notifications.notifier import Notifications

        parts = self.parts
        notifications = Notifications(self.settings, parts.report, self.controls())
        parts.recorder.sink = notifications
        parts.report.notifications = notifications
        notifications.start()
        self.notifications = notifications

    async def run(self) -> None:
        if self.install_signals:
            self._install_signal_handlers()
        try:
            await self.start()
            self.pulse.beat()
            self.notifier.ready(self.parts.report.status_line())
            await self.start_controls()
            await self.start_metrics()
            await self.start_notifications()
            self._start_watchdog()
            await self._loop(self.parts)
        finally:
            await self.shutdown()

    async def _loop(self, parts: Parts) -> None:
        heartbeat_ms = int(self.settings.heartbeat_seconds * 1000)
        while not self.stop_event.is_set():
            self.wake_event.clear()  # a push during the tick wakes the sleep after it at once
            self._tick_task = asyncio.ensure_future(self.tick())
            try:
                await self._tick_task
            except asyncio.CancelledError:
                if not self.stop_event.is_set():
                    raise
                break  # cut short by a stop request: shut down below
            if self._finished(parts):
                break
            now = parts.clock.now_ms()
            wake = parts.clock.next_wake_ms(now, parts.mdm.next_due_ms(), heartbeat_ms)
            if parts.replay_end_ms is not None:
                wake = min(wake, parts.replay_end_ms)
            await parts.clock.sleep_until(wake, self.wake_event)
            self.pulse.beat()  # woke on time: the loop is alive

    def _finished(self, parts: Parts) -> bool:
        if self.cycles is not None and self.figures.number >= self.cycles:
            return True
        return parts.replay_end_ms is not None and parts.clock.now_ms() >= parts.replay_end_ms

    # --- signals -------------------------------------------------------------------------------

    def request_stop(self, signame: str = "stop") -> None:
        """First signal: no new entries, let the tick (and its in-flight orders) finish for up to
        SHUTDOWN_GRACE_S, then save and exit 0. A second signal cuts the tick short at once; every
        file write is atomic, so nothing is left half-written either way."""
        self._signals_seen += 1
        if self._stop_requested_at is None:
            self._stop_requested_at = time.monotonic()
        if self._parts is not None:
            self._parts.broker.stopping = True
        if self._signals_seen > 1:
            log.warning("%s again: stopping now", signame)
            self._abort_tick()
        else:
            log.info("%s received: finishing the tick, saving state", signame)
            asyncio.get_running_loop().call_later(SHUTDOWN_GRACE_S, self._abort_tick)
        self.stop_event.set()
        self.wake_event.set()

    def _abort_tick(self) -> None:
        if self._tick_task is not None and not self._tick_task.done():
            log.warning("the heartbeat did not finish in time: cutting it short to exit")
            self._tick_task.cancel()

    def request_reload(self) -> None:
        log.info("SIGHUP received: reopening log files and reloading the strategy config")
        self._spawn(self.reload())

    async def reload(self) -> None:
        await reload_on_sighup(self.config, self.notifier, self._now_ms, self._status_line)

    def _now_ms(self) -> int:
        clock = self._parts.clock if self._parts is not None else self._startup.clock  # a replay's comes with its parts
        return clock.now_ms()

    def _status_line(self) -> str:
        return self._parts.report.status_line() if self._parts is not None else ""

    def _install_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGINT, self.request_stop, "SIGINT")
        loop.add_signal_handler(signal.SIGTERM, self.request_stop, "SIGTERM")
        loop.add_signal_handler(signal.SIGHUP, self.request_reload)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _start_watchdog(self) -> None:
        watchdog = Watchdog(self.notifier, lambda: self.pulse.last)
        if not watchdog.active:
            return
        if watchdog.timeout_s / 2 <= self.settings.heartbeat_seconds:
            log.warning("WatchdogSec=%.0fs is too short for HEARTBEAT_SECONDS=%g: use at least 3 × the heartbeat",
                        watchdog.timeout_s, self.settings.heartbeat_seconds)
        self._spawn(watchdog.run())

    # --- shutdown ------------------------------------------------------------------------------

    def _flush_budget(self) -> float:
        from trading_bot.engine.notifications.notifier import FLUSH_S  # loaded already: notifications are on

        if self._stop_requested_at is None:
            return FLUSH_S
        return min(FLUSH_S, max(0.2, EXIT_EXPECTED_S - (time.monotonic() - self._stop_requested_at)))

    async def shutdown(self) -> None:
        self.notifier.stopping()
        if self._controls is not None:  # first: no command starts while the books are saved
            await self._controls.close()
            self._controls = None
        if self.notifications is not None:  # its chat commands too
            await self.notifications.stop_commands()
        if self._metrics is not None:
            await self._metrics.close()
            self._metrics = None
        for task in list(self._background):
            task.cancel()
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)
        parts = self._parts
        if parts is not None:
            if self.figures.ready_ms is not None and self._signals_seen < 2:
                await parts.supervisor.protect_before_exit(self._stop_requested_at)
            await parts.recorder.save_state()
            await parts.report.write()
            log.info("stopped: %d heartbeats, %d open position(s), balance=%.2f", self.figures.number,
                     len(parts.broker.open_positions()), parts.broker.wallet.balance)
            if self.notifications is not None:  # the stopped message: 1.5 s at most, less if the exit is late
                await self.notifications.close(self.figures.number, self._flush_budget())
                parts.recorder.sink = parts.report.notifications = self.notifications = None
            await parts.mdm.source.close()
        await self.exchange.close()
        if self.install_signals:
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
                loop.remove_signal_handler(sig)
        self.notifier.close()
        self._lock.release()  # (the process's exit would too; an in-process restart needs it now)
