"""The paper heartbeat scores every bot's new candles together; the scores are those of one bot at a
time, bit for bit, and a failure of the batch only costs the time of scoring bot by bot."""

from __future__ import annotations

import logging

import numpy as np

from conftest import make_settings
from fakes.clocks import JAN_1_2026_MS, SharedClock
from trading_bot.engine.daemon import Daemon
from trading_bot.marketdata.sources import SyntheticSource

SYMBOLS = ("BTC/USDT:USDT", "ETH/USDT:USDT", "SOL/USDT:USDT")


async def started(tmp_path) -> tuple[Daemon, SharedClock]:
    settings = make_settings(tmp_path, symbols=SYMBOLS, timeframes=("1m", "5m"), history_candles=300)
    clock = SharedClock(JAN_1_2026_MS + 30_000)
    daemon = Daemon(settings, clock=clock, source=SyntheticSource(settings.synthetic_seed), install_signals=False)
    await daemon.start()
    for i, series in enumerate(daemon.parts.mdm.series.values()):
        series.candles = series.candles[(i % 3) * 40:]  # series of three lengths
    return daemon, clock


async def test_scores_together_equal_scores_one_bot_at_a_time(tmp_path):
    daemon, clock = await started(tmp_path)
    clock.advance(5 * 60_000)  # five new 1m candles, one 5m candle
    new = await daemon.parts.mdm.refresh(clock.now_ms())
    assert len(new) == 6 and {rows.shape[0] for rows in new.values()} == {1, 5}
    heartbeat = daemon.parts.heartbeat
    together = heartbeat._scored_together(new)
    alone = [heartbeat._scored(key, rows) for key, rows in new.items()]
    assert [(b.symbol, b.timeframe) for b in together] == [(b.symbol, b.timeframe) for b in alone]
    for a, b in zip(together, alone):
        assert not np.isnan(b.scores).any()
        assert np.array_equal(a.scores, b.scores) and np.array_equal(a.candles, b.candles)
    await daemon.shutdown()


async def test_a_failing_batch_falls_back_to_one_bot_at_a_time(tmp_path, monkeypatch, caplog):
    daemon, clock = await started(tmp_path)
    clock.advance(60_000)
    new = await daemon.parts.mdm.refresh(clock.now_ms())

    def broken(wanted):
        raise RuntimeError("a bug in the batch")

    monkeypatch.setattr(daemon.parts.mdm, "newest_features", broken)
    with caplog.at_level(logging.ERROR):
        scored = daemon.parts.heartbeat._scored_all(new)
    assert [(b.symbol, b.timeframe) for b in scored] == list(new)
    assert "scoring the new candles together failed" in caplog.text
    await daemon.shutdown()
