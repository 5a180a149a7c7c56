"""MarketDataManager: due-only batched refresh, merging, bounded memory, full CSV history, and the
feature cache (once per new closed candle, however many readers)."""

from __future__ import annotations

import asyncio
import logging

import numpy as np
import pytest

from conftest import write_synthetic_cache
from fakes.crashed_writer import dead_writers_temp
from trading_bot.domain.timeframes import last_closed_open_ms
from trading_bot.marketdata import manager as market_data_module
from trading_bot.marketdata.candle_binary import binary_path
from trading_bot.marketdata.candle_csv import read_candles
from trading_bot.marketdata.manager import MarketDataManager
from trading_bot.marketdata.sources import FetchResult, SyntheticSource

NOW = 1_767_225_600_000 + 7 * 60_000 + 1_000  # 7 minutes and a second past a round hour
KEYS = [("BTC/USDT:USDT", "1m"), ("BTC/USDT:USDT", "5m"), ("ETH/USDT:USDT", "1m")]


class CountingSource(SyntheticSource):
    def __init__(self, fail: set[tuple[str, str]] = frozenset()) -> None:
        super().__init__(seed=5)
        self.calls: list[tuple[str, str]] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.fail = fail

    async def fetch(self, symbol, timeframe, tf_ms, since_ms, now_ms, limit, last_close) -> FetchResult:
        self.calls.append((symbol, timeframe))
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        await asyncio.sleep(0.001)
        self.in_flight -= 1
        if (symbol, timeframe) in self.fail:
            raise ConnectionError("boom")
        return await super().fetch(symbol, timeframe, tf_ms, since_ms, now_ms, limit, last_close)


def manager(tmp_path, source, limit=200, keys=KEYS, concurrency=8) -> MarketDataManager:
    return MarketDataManager(keys, tmp_path, source, history_limit=limit, concurrency=concurrency)


async def test_only_due_series_are_fetched_in_one_batch(tmp_path):
    source = CountingSource()
    mdm = manager(tmp_path, source)
    await mdm.refresh(NOW)  # first fill: everything
    assert sorted(source.calls) == sorted(KEYS)
    source.calls.clear()
    assert await mdm.refresh(NOW + 1_000) == {}  # nothing closed since
    assert source.calls == []
    new = await mdm.refresh(NOW + 60_000)  # one more 1m candle; the 5m one closes at +3 min
    assert sorted(source.calls) == [("BTC/USDT:USDT", "1m"), ("ETH/USDT:USDT", "1m")]
    assert all(rows.shape[0] == 1 for rows in new.values())
    source.calls.clear()
    new = await mdm.refresh(NOW + 3 * 60_000)
    assert ("BTC/USDT:USDT", "5m") in source.calls and new[("BTC/USDT:USDT", "5m")].shape[0] == 1
    assert new[("BTC/USDT:USDT", "1m")].shape[0] == 2


async def test_concurrency_is_bounded(tmp_path):
    keys = [(f"C{i}/USDT:USDT", "1m") for i in range(20)]
    source = CountingSource()
    await manager(tmp_path, source, keys=keys, concurrency=3).refresh(NOW)
    assert len(source.calls) == 20 and source.max_in_flight == 3


async def test_merge_drops_open_candle_and_duplicates_and_bounds_memory(tmp_path):
    source = CountingSource()
    mdm = manager(tmp_path, source, limit=150)
    await mdm.refresh(NOW)
    series = mdm.series[("BTC/USDT:USDT", "1m")]
    assert series.candles.shape[0] == 150
    assert series.last_ts == last_closed_open_ms(NOW, 60_000)  # the forming candle is not stored
    assert series.forming_ts == series.last_ts + 60_000 and series.forming_open == series.last_close
    for step in range(1, 30):
        await mdm.refresh(NOW + step * 60_000)
    ts = series.candles[:, 0]
    assert series.candles.shape[0] == 150 and (np.diff(ts) == 60_000).all()
    on_disk, _ = read_candles(series.path)
    assert on_disk.shape[0] == 150 + 29  # the cache keeps the full history
    assert (np.diff(on_disk[:, 0]) == 60_000).all()


async def test_one_failing_series_does_not_stop_the_others(tmp_path, caplog):
    source = CountingSource(fail={("ETH/USDT:USDT", "1m")})
    mdm = manager(tmp_path, source)
    new = await mdm.refresh(NOW)
    assert ("BTC/USDT:USDT", "1m") in new and ("ETH/USDT:USDT", "1m") not in new
    assert mdm.stats.fetch_errors == 1
    assert "ETH/USDT:USDT 1m: candle refresh failed (ConnectionError: boom)" in caplog.text
    eth = mdm.series[("ETH/USDT:USDT", "1m")]
    assert eth.retry_at_ms > NOW  # backs off instead of hammering
    source.fail = set()
    await mdm.refresh(eth.retry_at_ms)
    assert eth.candles.shape[0] > 0 and eth.failures == 0


async def test_cache_is_read_at_start(tmp_path):
    write_synthetic_cache(tmp_path, "BTC/USDT:USDT", "1m", 500, end_ms=NOW)
    mdm = manager(tmp_path, CountingSource(), limit=300, keys=[("BTC/USDT:USDT", "1m")])
    mdm.load_cache()
    series = mdm.series[("BTC/USDT:USDT", "1m")]
    assert series.candles.shape[0] == 300 and series.is_fresh(NOW)
    assert mdm.due(NOW) == []


async def test_features_computed_once_per_new_candle_however_many_readers(tmp_path, monkeypatch):
    computed = []
    real = market_data_module.compute_features

    def counting(candles, params):
        computed.append(candles.shape[0])
        return real(candles, params)

    monkeypatch.setattr(market_data_module, "compute_features", counting)
    mdm = manager(tmp_path, CountingSource())
    await mdm.refresh(NOW)
    key = ("BTC/USDT:USDT", "1m")
    first = [mdm.features(key) for _ in range(10)]
    assert len(computed) == 1 and all(f is first[0] for f in first)
    await mdm.refresh(NOW + 1_000)  # no new candle: still cached (not cleared per cycle)
    assert mdm.features(key) is first[0] and len(computed) == 1
    await mdm.refresh(NOW + 60_000)
    for _ in range(5):
        mdm.features(key)
    assert len(computed) == 2
    assert mdm.stats.feature_misses == 2 and mdm.stats.feature_hits == 14
    assert mdm.stats.feature_hit_rate == pytest.approx(14 / 16)


async def test_data_hit_rate_counts_reads_served_from_memory(tmp_path):
    mdm = manager(tmp_path, CountingSource())
    await mdm.refresh(NOW)  # 3 misses
    for i in range(1, 10):
        await mdm.refresh(NOW + i * 1_000)  # 9 ticks × 3 hits
    assert mdm.stats.data_misses == 3 and mdm.stats.data_hits == 27
    assert mdm.stats.data_hit_rate == pytest.approx(0.9)


class LateSource(CountingSource):
    """The exchange has not published candles opening at or after `withheld_from` (late, or the
    symbol is in maintenance): every fetch answers successfully, without the due candle."""

    def __init__(self, withheld_from: int) -> None:
        super().__init__()
        self.withheld_from = withheld_from

    async def fetch(self, symbol, timeframe, tf_ms, since_ms, now_ms, limit, last_close) -> FetchResult:
        result = await super().fetch(symbol, timeframe, tf_ms, since_ms, now_ms, limit, last_close)
        closed = result.closed[result.closed[:, 0] < self.withheld_from]
        return FetchResult(closed)


async def test_a_due_candle_that_does_not_come_is_polled_with_a_back_off_and_logged_once(tmp_path, caplog):
    from trading_bot.engine.clock import LiveClock

    heartbeat_ms = 5_000
    key = ("BTC/USDT:USDT", "1m")
    source = LateSource(withheld_from=last_closed_open_ms(NOW, 60_000))
    mdm = MarketDataManager([key], tmp_path, source, history_limit=200, max_wait_ms=heartbeat_ms)
    clock, now = LiveClock(), NOW
    caplog.set_level("INFO", logger=market_data_module.__name__)
    for _ in range(1_000):  # the loop of engine/daemon.py, on simulated wall-clock time
        await mdm.refresh(now)
        now = clock.next_wake_ms(now, mdm.next_due_ms(), heartbeat_ms)
        if now >= NOW + 60_000:
            break
    # A minute of waiting: 0.2 s, 0.5 s, 1 s, 2 s, 4 s, then once per heartbeat; not a spin.
    assert now >= NOW + 60_000
    assert len(source.calls) <= 2 + 5 + 60_000 // heartbeat_ms
    waiting = [r for r in caplog.records if "not published yet" in r.getMessage()]
    assert len(waiting) == 1 and waiting[0].getMessage().startswith("BTC/USDT:USDT 1m:")

    # The candle comes: the series is caught up, the back-off ends, one line says so.
    source.withheld_from = 2**62
    calls = len(source.calls)
    await mdm.refresh(now)
    series = mdm.series[key]
    assert series.last_ts == last_closed_open_ms(now, 60_000) and series.retry_at_ms == 0
    assert len(source.calls) == calls + 1
    assert len([r for r in caplog.records if "candles again" in r.getMessage()]) == 1


def test_late_poll_delays_grow_to_the_heartbeat():
    from trading_bot.marketdata.manager import late_poll_delay_ms

    assert [late_poll_delay_ms(n, 5_000) for n in range(1, 8)] == [200, 500, 1_000, 2_000, 4_000, 5_000, 5_000]
    assert late_poll_delay_ms(10_000, 60_000) == 60_000


async def test_series_added_read_their_cache_and_are_fetched_with_the_next_refresh(tmp_path):
    cached = write_synthetic_cache(tmp_path, "SOL/USDT:USDT", "1m", 50, end_ms=NOW - 10 * 60_000)
    source = CountingSource()
    mdm = manager(tmp_path, source, keys=KEYS[:1])
    await mdm.refresh(NOW)
    added = await mdm.add_series([("SOL/USDT:USDT", "1m"), ("SOL/USDT:USDT", "5m"), KEYS[0]])  # one already there
    assert [s.key for s in added] == [("SOL/USDT:USDT", "1m"), ("SOL/USDT:USDT", "5m")]
    assert np.array_equal(mdm.series[("SOL/USDT:USDT", "1m")].candles, cached)
    assert not mdm.ready(("SOL/USDT:USDT", "5m")) and mdm.ready(("SOL/USDT:USDT", "1m"))
    source.calls.clear()
    new = await mdm.refresh(NOW + 1_000)
    assert sorted(source.calls) == [("SOL/USDT:USDT", "1m"), ("SOL/USDT:USDT", "5m")], "only the new ones were due"
    assert new[("SOL/USDT:USDT", "1m")].shape[0] == 10, "the cache's gap, not its whole history"
    assert read_candles(tmp_path / "SOL_USDT_USDT_5m.csv")[0].shape[0] == 200, "fetched history goes to the cache"
    mdm.remove_series([("SOL/USDT:USDT", "1m"), ("SOL/USDT:USDT", "1m")])
    assert list(mdm.series) == [KEYS[0], ("SOL/USDT:USDT", "5m")]
    assert (tmp_path / "SOL_USDT_USDT_1m.csv").exists(), "the cache stays on disk"


async def test_newest_features_batch_series_of_one_length_and_equal_each_series_features(tmp_path):
    mdm = manager(tmp_path, CountingSource())
    await mdm.refresh(NOW)
    btc_5m = mdm.series[("BTC/USDT:USDT", "5m")]
    btc_5m.candles = btc_5m.candles[:150]  # another length: its own batch
    mdm.features(("ETH/USDT:USDT", "1m"))  # a kept copy: stale once read for the last time
    batches = mdm.newest_features({key: 2 for key in KEYS})
    assert sorted(len(b.keys) for b in batches) == [1, 2]
    for batch in batches:
        for i, key in enumerate(batch.keys):
            mdm.series[key].features = None
            alone = mdm.features(key, keep=False)
            for name, values in alone.items():
                assert np.array_equal(batch.features[name][i], values[-2:], equal_nan=True), (key, name)
    assert all(s.features is None for s in mdm.series.values())


async def test_a_start_reads_binary_copies_that_idle_heartbeats_wrote(tmp_path, monkeypatch):
    for symbol, timeframe in KEYS:
        write_synthetic_cache(tmp_path, symbol, timeframe, 300, end_ms=NOW)
    first = manager(tmp_path, CountingSource())
    first.load_cache()
    assert all(s.copy_behind is None for s in first.series.values())  # no copies yet: the CSVs
    monkeypatch.setattr(market_data_module, "COPY_RENEWALS_PER_IDLE_TICK", 2)
    assert await first.refresh(NOW) == {}  # nothing due: two copies written
    assert sum(binary_path(s.path).exists() for s in first.series.values()) == 2
    await first.refresh(NOW + 1_000)
    assert all(binary_path(s.path).exists() for s in first.series.values())

    second = manager(tmp_path, CountingSource())
    second.load_cache()
    assert all(s.copy_behind == 0 for s in second.series.values())
    for key, series in second.series.items():
        assert series.candles.tobytes() == first.series[key].candles.tobytes()
    new = await second.refresh(NOW + 60_000)  # a new 1m candle each: appended to the CSVs, not the copies
    third = manager(tmp_path, CountingSource())
    third.load_cache()
    for key, series in third.series.items():
        assert series.copy_behind == second.series[key].copy_behind == (1 if key in new else 0)
        assert series.candles.tobytes() == second.series[key].candles.tobytes()


async def test_the_cache_read_at_start_removes_the_temp_files_of_killed_writers(tmp_path, caplog):
    caplog.set_level(logging.INFO)
    write_synthetic_cache(tmp_path, "BTC/USDT:USDT", "1m", 500, end_ms=NOW)
    mdm = manager(tmp_path, CountingSource(), limit=300, keys=[("BTC/USDT:USDT", "1m")])
    mdm.load_cache()  # writes the binary copy
    copy = binary_path(tmp_path / "BTC_USDT_USDT-1m.csv")
    orphan = dead_writers_temp(copy)
    mdm = manager(tmp_path, CountingSource(), limit=300, keys=[("BTC/USDT:USDT", "1m")])
    mdm.load_cache()
    assert not orphan.exists() and mdm.series[("BTC/USDT:USDT", "1m")].candles.shape[0] == 300
    assert f"{tmp_path}: removed 1 temp file(s) of writes a crash or a kill cut short" in caplog.text
