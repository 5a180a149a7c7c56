"""MarketDataManager: the candle store every bot reads, its CSV cache, and the shared feature cache.

- At start each series is read from the CSV cache (the newest `history_limit` candles).
- A series is *due* once the candle after its last closed one has closed; each tick fetches only
  the due series, all in one batch (asyncio.gather under a semaphore); one failure is isolated.
- A due candle that does not come (the exchange late, a symbol in maintenance or delisted) is polled
  again after 0.2 s, 0.5 s, 1 s, 2 s … at most every `max_wait_ms` (the heartbeat), with one log line
  when the wait starts and one when candles come again; a source that knows when its next candle
  comes (a replay over a gap in its data) is polled then, with no back-off.
- The still-open candle is never stored; its open price is kept apart (the paper fill price).
- Memory holds at most `history_limit` candles per series; the CSV on disk keeps everything
  (append-only; not fsynced: candles can always be fetched again).
- A start reads each series' binary copy of its newest candles when it matches the CSV
  (candle_binary.py); heartbeats with nothing due renew a few copies that are missing or behind.
- Features are computed once per new closed candle and shared by every reader: the cache is keyed
  by the last closed candle's open time, not cleared per cycle.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from trading_bot.domain.candles import CLOSE, EMPTY, TS
from trading_bot.domain.timeframes import last_closed_open_ms, next_close_ms, timeframe_ms
from trading_bot.marketdata.candle_binary import read_newest, renew_copy
from trading_bot.marketdata.candle_csv import append_candles, cache_file_name
from trading_bot.marketdata.sources import CandleSource, FetchResult, PushSource
from trading_bot.persistence.atomic_files import remove_orphaned_temp_files
from trading_bot.signals.features import (
    DEFAULT_FEATURE_PARAMS,
    FeatureParams,
    compute_features,
    compute_features_many,
)

log = logging.getLogger(__name__)


SeriesKey = tuple[str, str]

LATE_POLL_DELAYS_MS = (200, 500, 1_000)  # then doubling, up to max_wait_ms

COPY_RENEW_LINES = 64  # a binary copy this many CSV lines behind is renewed: a start parses fewer
COPY_RENEWALS_PER_IDLE_TICK = 16  # ~0.5 ms each, ~2 ms when the CSV must be parsed: an idle tick stays short


def late_poll_delay_ms(polls: int, max_wait_ms: int) -> int:
    """How long to wait after the `polls`-th fetch in a row without the due candle (1 = the first)."""
    n = polls - 1
    delay = LATE_POLL_DELAYS_MS[n] if n < len(LATE_POLL_DELAYS_MS) else 1_000 * 2 ** min(n - 2, 20)
    return min(delay, max_wait_ms)


@dataclass
class Series:
    symbol: str
    timeframe: str
    tf_ms: int
    path: Path
    candles: np.ndarray = field(default_factory=lambda: EMPTY.copy())
    forming_open: float | None = None
    forming_ts: int | None = None
    features: dict[str, np.ndarray] | None = None
    features_ts: int | None = None
    failures: int = 0
    retry_at_ms: int = 0  # not fetched before this (a failure's or a late candle's back-off)
    late_polls: int = 0  # successful fetches in a row without the due candle
    late_since_ms: int = 0
    copy_behind: int | None = None  # CSV lines appended since its binary copy (None: no copy to use)

    @property
    def key(self) -> SeriesKey:
        return (self.symbol, self.timeframe)

    @property
    def last_ts(self) -> int | None:
        return int(self.candles[-1, TS]) if self.candles.shape[0] else None

    @property
    def last_close(self) -> float | None:
        return float(self.candles[-1, CLOSE]) if self.candles.shape[0] else None

    @property
    def next_due_ms(self) -> int:
        """When the next candle closes (0 = needs data now)."""
        last = self.last_ts
        return 0 if last is None else next_close_ms(last, self.tf_ms)

    def is_fresh(self, now_ms: int) -> bool:
        return self.last_ts is not None and self.last_ts >= last_closed_open_ms(now_ms, self.tf_ms)


@dataclass(frozen=True)
class FeatureBatch:
    """Features of series of one length computed together: (len(keys), rows) per feature."""

    keys: list[SeriesKey]
    features: dict[str, np.ndarray]


@dataclass
class CacheStats:
    data_hits: int = 0
    data_misses: int = 0
    feature_hits: int = 0
    feature_misses: int = 0
    fetch_errors: int = 0
    requests: int = 0

    @staticmethod
    def _rate(hits: int, misses: int) -> float:
        return hits / (hits + misses) if hits + misses else 1.0

    @property
    def data_hit_rate(self) -> float:
        return self._rate(self.data_hits, self.data_misses)

    @property
    def feature_hit_rate(self) -> float:
        return self._rate(self.feature_hits, self.feature_misses)

    @property
    def hit_rate(self) -> float:
        return self._rate(self.data_hits + self.feature_hits, self.data_misses + self.feature_misses)

    def as_json(self) -> dict[str, float | int]:
        return {
            "hit_rate": round(self.hit_rate, 4),
            "data_hit_rate": round(self.data_hit_rate, 4),
            "feature_hit_rate": round(self.feature_hit_rate, 4),
            "data_hits": self.data_hits, "data_misses": self.data_misses,
            "feature_hits": self.feature_hits, "feature_misses": self.feature_misses,
            "fetch_errors": self.fetch_errors, "requests": self.requests,
        }


def _utc(ms: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(ms / 1000)) if ms else "now (no candles yet)"


class MarketDataManager:
    def __init__(self, keys: list[SeriesKey], cache_dir: Path, source: CandleSource, history_limit: int = 1000,
                 concurrency: int = 8, feature_params: FeatureParams = DEFAULT_FEATURE_PARAMS,
                 write_cache: bool = True, max_wait_ms: int = 5_000) -> None:
        self.cache_dir = cache_dir
        self.max_wait_ms = max_wait_ms  # the longest back-off while a due candle does not come
        self.source = source
        self.history_limit = history_limit
        self.feature_params = feature_params
        self.write_cache = write_cache
        self.stats = CacheStats()
        self._semaphore = asyncio.Semaphore(concurrency)
        self.series: dict[SeriesKey, Series] = {
            (symbol, tf): Series(symbol, tf, timeframe_ms(tf), cache_dir / cache_file_name(symbol, tf))
            for symbol, tf in keys
        }

    # --- loading -----------------------------------------------------------------------------

    def load_cache(self) -> None:
        """Read every series' newest candles from disk (blocking: run it in a thread), after removing
        the temp files that writes cut short by a kill left (a binary copy's, a funding file's)."""
        if self.cache_dir.is_dir() and (removed := remove_orphaned_temp_files(self.cache_dir)):
            log.info("%s: removed %d temp file(s) of writes a crash or a kill cut short", self.cache_dir, removed)
        for series in self.series.values():
            self._read_cache(series)

    def _read_cache(self, series: Series) -> None:
        read = read_newest(series.path, self.history_limit)  # the binary copy when it is current, else the CSV
        series.candles, series.copy_behind = read.candles, read.behind

    async def add_series(self, keys: list[SeriesKey]) -> list[Series]:
        """New series (the symbol universe grew), each read from the CSV cache in a thread, then
        added here on the loop (the status report reads the dict meanwhile). They are due at once: the
        next refresh fetches what the cache lacks. Returns those added."""
        added = [Series(symbol, tf, timeframe_ms(tf), self.cache_dir / cache_file_name(symbol, tf))
                 for symbol, tf in dict.fromkeys(keys) if (symbol, tf) not in self.series]

        def read() -> None:
            for series in added:
                self._read_cache(series)

        await asyncio.to_thread(read)
        for series in added:
            self.series[series.key] = series
        if isinstance(self.source, PushSource):
            self.source.track([series.key for series in added], [])
        return added

    def remove_series(self, keys: list[SeriesKey]) -> None:
        """Series no bot reads any more (their CSV cache stays on disk)."""
        for key in keys:
            self.series.pop(key, None)
        if isinstance(self.source, PushSource):
            self.source.track([], keys)

    def preload(self, history: Mapping[SeriesKey, np.ndarray]) -> None:
        for key, candles in history.items():
            if key in self.series:
                self.series[key].candles = candles[-self.history_limit:]

    def start_push(self) -> None:
        """Subscribe to the pushed closes, if the source has them (before the first refresh, so no
        candle closes between the REST history and the subscription unseen)."""
        if isinstance(self.source, PushSource):
            self.source.start()

    def feed(self) -> str:
        """How candles arrive, for the status: 'websocket 14/14 live' or 'polled'."""
        return self.source.summary() if isinstance(self.source, PushSource) else "polled"

    def feed_connections(self) -> dict[str, int] | None:
        """The push source's connections by state; None when candles are polled."""
        return self.source.connections() if isinstance(self.source, PushSource) else None

    # --- refreshing ----------------------------------------------------------------------------

    def due(self, now_ms: int) -> list[Series]:
        return [s for s in self.series.values() if s.next_due_ms <= now_ms and s.retry_at_ms <= now_ms]

    def next_due_ms(self) -> int:
        return min((max(s.next_due_ms, s.retry_at_ms) for s in self.series.values()), default=0)

    async def _fetch_one(self, series: Series, now_ms: int) -> tuple[np.ndarray, FetchResult]:
        last = series.last_ts
        async with self._semaphore:
            self.stats.requests += 1
            result = await self.source.fetch(
                series.symbol, series.timeframe, series.tf_ms,
                None if last is None else last + series.tf_ms, now_ms, self.history_limit, series.last_close,
            )
        closed = result.closed
        if last is not None and closed.shape[0]:
            closed = closed[closed[:, TS] > last]
        if closed.shape[0]:
            merged = np.concatenate((series.candles, closed)) if series.candles.shape[0] else closed
            series.candles = np.ascontiguousarray(merged[-self.history_limit:])
        if result.forming_ts is not None and series.last_ts is not None and result.forming_ts > series.last_ts:
            series.forming_open, series.forming_ts = result.forming_open, result.forming_ts
        else:
            series.forming_open = series.forming_ts = None
        return closed, result

    async def refresh(self, now_ms: int) -> dict[SeriesKey, np.ndarray]:
        """Fetch every due series in one batch; returns the new closed candles per series."""
        due = self.due(now_ms)
        if due and isinstance(self.source, PushSource):
            # every series closing at this moment in one tick (the order of events across bots)
            await self.source.settle([s.key for s in due], now_ms)
        self.stats.data_hits += len(self.series) - len(due)
        self.stats.data_misses += len(due)
        if not due:
            if self.write_cache:
                await self._renew_copies()
            return {}
        results = await asyncio.gather(*(self._fetch_one(s, now_ms) for s in due), return_exceptions=True)
        new: dict[SeriesKey, np.ndarray] = {}
        for series, result in zip(due, results):
            if isinstance(result, BaseException):
                if isinstance(result, asyncio.CancelledError):
                    raise result
                self._note_failure(series, result, now_ms)
                continue
            series.failures = 0
            closed, fetched = result
            if closed.shape[0]:
                new[series.key] = closed
                self._note_arrival(series, now_ms)
            else:
                self._note_late(series, fetched.next_change_ms, now_ms)
        if new and self.write_cache:
            await asyncio.to_thread(self._append_to_cache, {k: v for k, v in new.items()})
            for key, rows in new.items():
                series = self.series[key]
                if series.copy_behind is not None:
                    series.copy_behind += rows.shape[0]
        return new

    def _note_failure(self, series: Series, exc: BaseException, now_ms: int) -> None:
        self.stats.fetch_errors += 1
        series.failures += 1
        backoff_ms = min(60_000, 1_000 * 2 ** min(series.failures, 6))
        series.retry_at_ms = now_ms + backoff_ms
        log.warning("%s %s: candle refresh failed (%s: %s); retry in %.0fs", series.symbol, series.timeframe,
                    type(exc).__name__, exc, backoff_ms / 1000)

    def _note_arrival(self, series: Series, now_ms: int) -> None:
        series.retry_at_ms = 0
        if series.late_polls:
            log.info("%s %s: candles again after %d polls over %.1fs", series.symbol, series.timeframe,
                     series.late_polls, (now_ms - series.late_since_ms) / 1000)
        series.late_polls = 0

    def _note_late(self, series: Series, next_change_ms: int | None, now_ms: int) -> None:
        """A fetch without the due candle: poll again when the source says it can come, or with a back-off."""
        if next_change_ms is not None:
            series.retry_at_ms = max(next_change_ms, now_ms + 1)
            return
        if not series.late_polls:
            series.late_since_ms = now_ms
            log.warning("%s %s: the candle due at %s is not published yet (exchange late, maintenance or "
                        "delisted?); polling again after 0.2s, 0.5s, 1s … then every %.1fs", series.symbol,
                        series.timeframe, _utc(series.next_due_ms), self.max_wait_ms / 1000)
        series.late_polls += 1
        series.retry_at_ms = now_ms + late_poll_delay_ms(series.late_polls, self.max_wait_ms)

    def _append_to_cache(self, new: dict[SeriesKey, np.ndarray]) -> None:
        for key, candles in new.items():
            try:
                append_candles(self.series[key].path, candles)
            except OSError as exc:
                log.warning("%s: cannot append to the candle cache: %s", self.series[key].path, exc)

    async def _renew_copies(self) -> None:
        """A few of the binary copies that are missing or behind, written anew (in a thread)."""
        stale = list(itertools.islice(
            (s for s in self.series.values() if s.copy_behind is None or s.copy_behind >= COPY_RENEW_LINES),
            COPY_RENEWALS_PER_IDLE_TICK))
        if stale:
            await asyncio.to_thread(self._renew, stale)

    def _renew(self, stale: list[Series]) -> None:
        for series in stale:
            renew_copy(series.path, self.history_limit)
            series.copy_behind = 0  # made, or not to be made now (junk in the CSV): again in a while

    # --- features ------------------------------------------------------------------------------

    def features(self, key: SeriesKey, *, keep: bool = True) -> dict[str, np.ndarray]:
        """The series' features as of its last closed candle. keep=False: computed for a reader
        that is the last one for this candle, and not kept (13 arrays × history per series: with
        thousands of series that is hundreds of MiB held until the next candle)."""
        series = self.series[key]
        last = series.last_ts
        if series.features is not None and series.features_ts == last:
            self.stats.feature_hits += 1
            return series.features
        self.stats.feature_misses += 1
        features = compute_features(series.candles, self.feature_params)
        if keep:
            series.features, series.features_ts = features, last
        else:
            series.features = series.features_ts = None  # stale now: drop it too
        return features

    def newest_features(self, wanted: Mapping[SeriesKey, int]) -> list[FeatureBatch]:
        """The features of each series' newest wanted[key] candles, for readers that are the last
        ones for these candles (nothing kept, as features(key, keep=False)). The series of one
        length are one batch (compute_features_many): per-call numpy overhead paid once, not per
        series; each row equal to features(key) bit for bit."""
        by_length: dict[int, list[SeriesKey]] = {}
        for key in wanted:
            by_length.setdefault(self.series[key].candles.shape[0], []).append(key)
        batches = []
        for keys in by_length.values():
            self.stats.feature_misses += len(keys)
            for key in keys:
                self.series[key].features = self.series[key].features_ts = None  # stale now
            rows = max(wanted[key] for key in keys)
            features = compute_features_many([self.series[key].candles for key in keys], self.feature_params, rows)
            batches.append(FeatureBatch(keys, features))
        return batches

    def not_ready(self) -> list[SeriesKey]:
        """Series with too few candles for every feature to be defined."""
        return [key for key in self.series if not self.ready(key)]

    def ready(self, key: SeriesKey) -> bool:
        return self.series[key].candles.shape[0] > self.feature_params.warmup
