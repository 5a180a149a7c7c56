"""Which candles the run trades on, chosen once at startup.

- replay: the cached candles, delivered one close at a time on a simulated clock (never written back);
- a source given by the caller (tests, benchmarks);
- live: the exchange, with the account's client;
- paper: the exchange's public candles, unless MARKET_DATA=synthetic or (MARKET_DATA=auto) the cache
  is empty or stale and the exchange unreachable: then a deterministic synthetic market.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from trading_bot.domain.candles import TS
from trading_bot.domain.funding_settlement import FundingSettlement
from trading_bot.domain.timeframes import last_closed_open_ms, timeframe_ms
from trading_bot.domain.wallet import SavedState
from trading_bot.engine.clock import Clock, ReplayClock
from trading_bot.engine.errors import StartupError
from trading_bot.engine.exchange_link import ExchangeLink
from trading_bot.marketdata.candle_csv import cache_file_name, read_candles
from trading_bot.marketdata.funding_csv import load_funding_schedules
from trading_bot.marketdata.manager import MarketDataManager, SeriesKey
from trading_bot.marketdata.sources import CandleSource, ReplaySource, SyntheticSource
from trading_bot.settings import Settings

log = logging.getLogger("trading_bot")


REPLAY_WARMUP_CANDLES = 200


@dataclass(frozen=True)
class MarketData:
    """The candles of the run and the clock they are read on (a replay brings its own clock)."""

    mdm: MarketDataManager
    clock: Clock
    replay_end_ms: int | None = None  # a replay ends where its cached candles do


async def open_market_data(settings: Settings, keys: list[SeriesKey], clock: Clock, exchange: ExchangeLink, *,
                           live: bool, replay: bool, speed: float | None, override: CandleSource | None,
                           saved: SavedState | None, on_push: Callable[[], None] = lambda: None) -> MarketData:
    s = settings
    if replay:
        return await open_replay(settings, keys, clock, speed, saved)
    if override is not None:
        cache_dir = s.synthetic_dir if override.name == "synthetic" else s.candles_dir
        return MarketData(await _loaded(settings, keys, cache_dir, override), clock)
    if live:
        return MarketData(await _loaded(settings, keys, s.candles_dir, exchange.candle_source(keys, on_push)), clock)
    return MarketData(await _paper_market(settings, keys, clock, exchange, on_push), clock)


async def _loaded(settings: Settings, keys: list[SeriesKey], cache_dir: Path, source: CandleSource) -> MarketDataManager:
    mdm = MarketDataManager(keys, cache_dir, source, settings.history_candles, settings.fetch_concurrency,
                            max_wait_ms=int(settings.heartbeat_seconds * 1000))  # a late candle: polled at least per heartbeat
    await asyncio.to_thread(mdm.load_cache)
    return mdm


async def _paper_market(settings: Settings, keys: list[SeriesKey], clock: Clock, exchange: ExchangeLink,
                        on_push: Callable[[], None]) -> MarketDataManager:
    s = settings
    if s.market_data != "synthetic":
        exchange_mdm = await _loaded(settings, keys, s.candles_dir, exchange.candle_source(keys, on_push))
        now = clock.now_ms()
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
    return await _loaded(settings, keys, s.synthetic_dir, SyntheticSource(s.synthetic_seed))


def replay_start_ms(history: dict[SeriesKey, np.ndarray]) -> int:
    """Where a replay starts: once every series has REPLAY_WARMUP_CANDLES closed (`trading-bot backtest`
    starts there too, so both trade the same candles)."""
    start = 0
    for (_, timeframe), candles in history.items():
        if candles.shape[0]:
            index = min(REPLAY_WARMUP_CANDLES, candles.shape[0] - 1)
            start = max(start, int(candles[index, TS]) + timeframe_ms(timeframe))
    return start


async def open_replay(settings: Settings, keys: list[SeriesKey], clock: Clock, speed: float | None,
                      saved: SavedState | None) -> MarketData:
    """The cached candles from REPLAY_WARMUP_CANDLES on (or from where the last replay stopped)."""
    s = settings

    def read_all() -> dict[SeriesKey, np.ndarray]:
        return {(sym, tf): read_candles(s.candles_dir / cache_file_name(sym, tf))[0] for sym, tf in keys}

    history = await asyncio.to_thread(read_all)
    missing = [f"{sym} {tf}" for (sym, tf), c in history.items() if c.shape[0] <= REPLAY_WARMUP_CANDLES // 4]
    if missing:
        raise StartupError(f"replay needs cached candles in {s.candles_dir} for: {', '.join(missing[:5])}"
                           f"{' …' if len(missing) > 5 else ''}")
    source = ReplaySource(history)
    mdm = MarketDataManager(keys, s.candles_dir, source, s.history_candles, s.fetch_concurrency, write_cache=False)
    start = replay_start_ms(history)
    if saved is not None and saved.clock_ms:
        start = max(start, saved.clock_ms)  # resume where the last replay stopped
    if not isinstance(clock, ReplayClock):
        clock = ReplayClock(start, speed)
    now = clock.now_ms()
    mdm.preload({key: c[c[:, TS] <= last_closed_open_ms(now, mdm.series[key].tf_ms)] for key, c in history.items()})
    return MarketData(mdm, clock, source.end_ms())


def open_funding(settings: Settings, symbols: Sequence[str]) -> FundingSettlement | None:
    """Paper, replay and the portfolio backtest book funding from the cached rates (`trading-bot
    fetch`), else at the default rate, each symbol's basis logged once; FUNDING=off: none."""
    if settings.funding == "off":
        return None
    settlement = FundingSettlement(load_funding_schedules(settings.candles_dir, symbols))
    for symbol, label in settlement.labels(symbols).items():
        log.info("funding %s: %s", symbol, label)
    return settlement
