"""The heartbeat: one tick of the daemon.

refresh the due series → the broker's sync with the exchange (exits are booked before any entry is
capped) → score the new closed candles of each bot and let the broker apply the trading rules → fill
pending entries at the open of the candle now forming (paper: both steps at once, every bot in
domain/instant.py's order of events, as the portfolio backtest) → supervision (live: reconcile when due) →
record the events (log lines, journal, state) → check the strategy config file → status.json, the
heartbeat line and STATUS=.
"""

from __future__ import annotations

import asyncio
import logging
import time

import numpy as np

from trading_bot.engine.clock import Clock
from trading_bot.engine.config_watch import ConfigWatcher
from trading_bot.engine.recording import Recorder
from trading_bot.engine.status import RunFigures, StatusReport
from trading_bot.engine.supervision import Supervisor
from trading_bot.engine.universe import UniverseKeeper
from trading_bot.exchange.errors import is_exchange_error
from trading_bot.execution.broker import Broker, BrokerEvents
from trading_bot.execution.paper import Forming, NewCandles, PaperBroker
from trading_bot.marketdata.manager import MarketDataManager, SeriesKey
from trading_bot.signals.scoring import WeightedScoringStrategy, score_components

log = logging.getLogger("trading_bot")


class Pulse:
    """When the daemon last showed it is alive (monotonic s): the systemd watchdog pings only while
    this is recent. The loop beats after each tick and wake-up, the exchange client after each request."""

    def __init__(self) -> None:
        self.last = time.monotonic()

    def beat(self) -> None:
        self.last = time.monotonic()


def merge(total: BrokerEvents, more: BrokerEvents) -> BrokerEvents:
    total.opened += more.opened
    total.closed += more.closed
    total.rejected += more.rejected
    return total


class Heartbeat:
    def __init__(self, clock: Clock, mdm: MarketDataManager, strategies: dict[SeriesKey, WeightedScoringStrategy],
                 broker: Broker, supervisor: Supervisor, recorder: Recorder, config: ConfigWatcher,
                 report: StatusReport, figures: RunFigures, pulse: Pulse, universe: UniverseKeeper | None = None) -> None:
        self.clock = clock
        self.mdm = mdm
        self.strategies = strategies
        self.broker = broker
        self.supervisor = supervisor
        self.recorder = recorder
        self.config = config
        self.report = report
        self.figures = figures
        self.pulse = pulse
        self.universe = universe  # TRADING_SYMBOLS=top:N or all: adds and removes bots (engine/universe.py)

    async def tick(self) -> None:
        t0 = time.perf_counter()
        now = self.clock.now_ms()
        if self.universe is not None:
            await self.universe.update(now)  # before the refresh: a new bot's history is fetched with it
        new = await self.mdm.refresh(now)
        if self.universe is not None:
            new = self.universe.admit(new)
        # Exits first (live: the exchange's stops and targets): a position closed during the candle
        # must not count against MAX_OPEN_POSITIONS when that candle's signals are evaluated.
        events = await self.broker.sync()
        if isinstance(self.broker, PaperBroker):
            merge(events, await self._paper_instant(self.broker, new))
        else:
            merge(events, await self._evaluate_all(new))
            merge(events, await self._fill_at_open())
        await self.supervisor.reconcile_if_due()
        figures = self.figures
        figures.number += 1
        figures.new_candles = sum(r.shape[0] for r in new.values())
        figures.compute_ms = (time.perf_counter() - t0) * 1000
        await self.recorder.record(events, save_anyway=figures.number <= 1)
        await self.config.check(now)
        figures.cycle_ms = (time.perf_counter() - t0) * 1000
        await self.report.publish(len(new), bool(events))
        self.pulse.beat()

    def _scored(self, key: SeriesKey, rows: np.ndarray) -> NewCandles:
        """A bot's new closed candles and their scores (features cached per closed candle)."""
        series = self.mdm.series[key]
        strategy = self.strategies[key]
        features = self.mdm.features(key, keep=False)  # one bot per series: no one reads them again
        total = series.candles.shape[0]
        k = min(rows.shape[0], total)
        scores = strategy.scores(features, slice(total - k, total))
        return NewCandles(key[0], key[1], rows[-k:], scores, strategy.params)

    def _scored_all(self, new: dict[SeriesKey, np.ndarray]) -> list[NewCandles]:
        """Every bot's new candles and scores, in the settings' order (mdm.series). Together first;
        should that fail (a bug), bot by bot, so that only the failing bot is left out."""
        try:
            return self._scored_together(new)
        except Exception as exc:
            log.error("scoring the new candles together failed (%s: %s): scoring bot by bot",
                      type(exc).__name__, str(exc)[:200], exc_info=True)
        scored: list[NewCandles] = []
        for key, rows in new.items():
            try:
                scored.append(self._scored(key, rows))
            except Exception as exc:  # a bug in one bot's scoring never stops the others
                log.error("%s %s: this heartbeat failed: %s: %s", key[0], key[1], type(exc).__name__,
                          str(exc)[:200], exc_info=True)
        return scored

    def _scored_together(self, new: dict[SeriesKey, np.ndarray]) -> list[NewCandles]:
        """_scored for every bot, the features and components of series of one length computed as
        one batch (the top of the hour: 2,000 series) with the same bits as one by one."""
        counts = {key: min(rows.shape[0], self.mdm.series[key].candles.shape[0]) for key, rows in new.items()}
        scores: dict[SeriesKey, np.ndarray] = {}
        for batch in self.mdm.newest_features(counts):
            components = score_components(batch.features)  # (series, rows, 5)
            rows = components.shape[1]
            for i, key in enumerate(batch.keys):
                scores[key] = self.strategies[key].weigh(components[i, rows - counts[key]:])
        return [NewCandles(key[0], key[1], rows[-counts[key]:], scores[key], self.strategies[key].params)
                for key, rows in new.items()]

    async def evaluate(self, key: SeriesKey, rows: np.ndarray) -> BrokerEvents:
        """Score a bot's new closed candles; the broker applies the rules."""
        bot = self._scored(key, rows)
        return await self.broker.process_candles(bot.symbol, bot.timeframe, bot.candles, bot.scores, bot.params)

    async def _paper_instant(self, broker: PaperBroker, new: dict[SeriesKey, np.ndarray]) -> BrokerEvents:
        """Every bot's closes and the opens now forming in one step, in the shared order of events, so
        a position closing now frees its slot for any bot's signal of this instant."""
        if not new and not broker.pending_count():
            return BrokerEvents()  # nothing closed and no signal waits for an open: the common idle tick
        scored = self._scored_all(new)
        forming = [Forming(key[0], key[1], series.forming_open, series.forming_ts, self.strategies[key].params)
                   for key, series in self.mdm.series.items()
                   if series.forming_open is not None and series.forming_ts is not None]
        return await broker.process_instant(self.clock.now_ms(), scored, forming)

    async def _evaluate_all(self, new: dict[SeriesKey, np.ndarray]) -> BrokerEvents:
        events = BrokerEvents()
        # Together, so live entries go out in parallel; the paper broker never awaits inside, so
        # paper bots still run one after another in a fixed order.
        results = await asyncio.gather(*(self.evaluate(key, rows) for key, rows in new.items()), return_exceptions=True)
        for key, result in zip(new, results):
            if isinstance(result, BaseException):
                if not isinstance(result, Exception):
                    raise result  # a cancellation (stop request) or an exit, not a bot's failure
                # One bot's failure (an exchange that stays unreachable, a bug) never stops the others.
                log.error("%s %s: this heartbeat failed: %s: %s", key[0], key[1], type(result).__name__,
                          str(result)[:200], exc_info=not is_exchange_error(result))
                continue
            merge(events, result)
        return events

    async def _fill_at_open(self) -> BrokerEvents:
        """Pending entries fill at the open of the candle now forming (when the source reports it)."""
        events = BrokerEvents()
        for key, series in self.mdm.series.items():
            if series.forming_open is not None and series.forming_ts is not None:
                book = self.broker.book(*key)
                if book.pending is not None:
                    params = self.strategies[key].params
                    merge(events, await self.broker.fill_at_open(key[0], key[1], series.forming_open,
                                                                 series.forming_ts, params))
        return events
