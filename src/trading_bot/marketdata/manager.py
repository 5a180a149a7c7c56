"""MarketDataManager: the candle store every bot reads, its CSV cache, and the shared feature cache.

- At start each series is read from the CSV cache (the newest `history_limit` candles).
- A series is *due* once the candle after its last closed one has closed; each tick fetches only
  the due series, all in one batch (asyncio.gather under a semaphore); one failure is isolated.
- The still-open candle is never stored; its open price is kept apart (the paper fill price).
- Memory holds at most `history_limit` candles per series; the CSV on disk keeps everything
  (append-only; not fsynced: candles can always be fetched again).
- Features are computed once per new closed candle and shared by every reader: the cache is keyed
  by the last closed candle's open time, not cleared per cycle.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from trading_bot.domain.candles import CLOSE, EMPTY, TS
from trading_bot.domain.timeframes import last_closed_open_ms, next_close_ms, timeframe_ms
from trading_bot.marketdata.candle_csv import append_candles, cache_file_name, read_candles
from trading_bot.marketdata.sources import CandleSource
from trading_bot.signals.features import DEFAULT_FEATURE_PARAMS, FeatureParams, compute_features

log = logging.getLogger(__name__)


SeriesKey = tuple[str, str]


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
    retry_at_ms: int = 0

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


class MarketDataManager:
    def __init__(self, keys: list[SeriesKey], cache_dir: Path, source: CandleSource, history_limit: int = 1000,
                 concurrency: int = 8, feature_params: FeatureParams = DEFAULT_FEATURE_PARAMS,
                 write_cache: bool = True) -> None:
        self.cache_dir = cache_dir
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
        """Read every series' newest candles from disk (blocking: run it in a thread)."""
        for series in self.series.values():
            series.candles, _ = read_candles(series.path, self.history_limit)

    def preload(self, history: Mapping[SeriesKey, np.ndarray]) -> None:
        for key, candles in history.items():
            if key in self.series:
                self.series[key].candles = candles[-self.history_limit:]

    # --- refreshing ----------------------------------------------------------------------------

    def due(self, now_ms: int) -> list[Series]:
        return [s for s in self.series.values() if s.next_due_ms <= now_ms and s.retry_at_ms <= now_ms]

    def next_due_ms(self) -> int:
        return min((max(s.next_due_ms, s.retry_at_ms) for s in self.series.values()), default=0)

    async def _fetch_one(self, series: Series, now_ms: int) -> np.ndarray:
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
        return closed

    async def refresh(self, now_ms: int) -> dict[SeriesKey, np.ndarray]:
        """Fetch every due series in one batch; returns the new closed candles per series."""
        due = self.due(now_ms)
        self.stats.data_hits += len(self.series) - len(due)
        self.stats.data_misses += len(due)
        if not due:
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
            series.retry_at_ms = 0
            if result.shape[0]:
                new[series.key] = result
        if new and self.write_cache:
            await asyncio.to_thread(self._append_to_cache, {k: v for k, v in new.items()})
        return new

    def _note_failure(self, series: Series, exc: BaseException, now_ms: int) -> None:
        self.stats.fetch_errors += 1
        series.failures += 1
        backoff_ms = min(60_000, 1_000 * 2 ** min(series.failures, 6))
        series.retry_at_ms = now_ms + backoff_ms
        log.warning("%s %s: candle refresh failed (%s: %s); retry in %.0fs", series.symbol, series.timeframe,
                    type(exc).__name__, exc, backoff_ms / 1000)

    def _append_to_cache(self, new: dict[SeriesKey, np.ndarray]) -> None:
        for key, candles in new.items():
            try:
                append_candles(self.series[key].path, candles)
            except OSError as exc:
                log.warning("%s: cannot append to the candle cache: %s", self.series[key].path, exc)

    # --- features ------------------------------------------------------------------------------

    def features(self, key: SeriesKey) -> dict[str, np.ndarray]:
        series = self.series[key]
        last = series.last_ts
        if series.features is not None and series.features_ts == last:
            self.stats.feature_hits += 1
            return series.features
        self.stats.feature_misses += 1
        series.features = compute_features(series.candles, self.feature_params)
        series.features_ts = last
        return series.features

    def not_ready(self) -> list[SeriesKey]:
        """Series with too few candles for every feature to be defined."""
        return [key for key, s in self.series.items() if s.candles.shape[0] <= self.feature_params.warmup]
