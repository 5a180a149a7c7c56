"""The daemon end to end in replay: the same loop as a live run, over cached synthetic candles."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest

from conftest import make_settings, write_synthetic_cache
from fakes.replay import SYMBOL, TF, expected_trades, replay_settings
from trading_bot.backtest.reference import backtest_series
from trading_bot.domain.params import default_config
from trading_bot.domain.sizing import RiskLimits
from trading_bot.domain.trades import Costs
from trading_bot.engine.candle_source import REPLAY_WARMUP_CANDLES
from trading_bot.engine.daemon import Daemon
from trading_bot.marketdata.candle_csv import append_candles, cache_file_name
from trading_bot.persistence.state_store import StateStore, decode_state, read_journal


async def test_replay_trades_equal_the_backtest_and_state_is_valid(tmp_path):
    settings = replay_settings(tmp_path)
    candles = write_synthetic_cache(settings.candles_dir, SYMBOL, TF, 1500)
    daemon = Daemon(settings, replay=True, install_signals=False)
    await daemon.run()

    store = StateStore(settings.state_dir(replay=True))
    journal = read_journal(store.trades_path)
    assert len(journal) >= 5, "the default strategy should trade on this series"
    assert journal == expected_trades(settings, candles)  # paper == backtest, bit for bit

    saved = decode_state(store.positions_path.read_bytes(), "positions.json")
    assert saved.wallet.trades == len(journal)
    assert saved.wallet.balance == pytest.approx(settings.initial_balance + sum(t["pnl"] for t in journal))
    assert saved.clock_ms == int(candles[-1, 0]) + 60_000
    status = json.loads(store.status_path.read_text())
    assert status["mode"] == "replay" and status["trades"] == len(journal)
    # The replay never writes into the candle cache it reads.
    assert not (settings.data_dir / "state").exists()


async def test_replay_jumps_over_gaps_in_the_candles_with_the_backtest_trades(tmp_path):
    """Hundreds of missing minutes: the replay jumps to the next candle that exists (about one
    heartbeat per candle, two per gap: its open, then its close) instead of 1 ms steps."""
    settings = replay_settings(tmp_path)
    full = write_synthetic_cache(tmp_path / "full", SYMBOL, TF, 2000)
    keep = np.ones(full.shape[0], dtype=bool)
    rng = np.random.default_rng(3)
    for start in rng.choice(np.arange(REPLAY_WARMUP_CANDLES + 10, full.shape[0] - 10), 60, replace=False):
        keep[start:start + rng.integers(1, 9)] = False  # gaps of 1 to 8 minutes
    candles = full[keep]
    gaps = int(np.count_nonzero(np.diff(candles[:, 0]) > 60_000))
    assert full.shape[0] - candles.shape[0] >= 200 and gaps >= 50
    append_candles(settings.candles_dir / cache_file_name(SYMBOL, TF), candles)

    delivered = candles.shape[0] - (REPLAY_WARMUP_CANDLES + 1)
    daemon = Daemon(settings, replay=True, install_signals=False, cycles=10 * delivered)  # the old crawl stops here
    await daemon.run()
    assert daemon.figures.number <= delivered + 2 * gaps + 2
    assert daemon.parts.clock.now_ms() == int(candles[-1, 0]) + 60_000  # reached the end
    journal = read_journal(StateStore(settings.state_dir(replay=True)).trades_path)
    assert len(journal) >= 5
    assert journal == expected_trades(settings, candles)


async def test_one_slot_replay_re_enters_on_the_stop_candle_like_the_backtest(tmp_path):
    """MAX_OPEN_POSITIONS=1: a position stopped out on a candle whose close signals again frees its slot
    for that signal (the backtest re-enters at the next open). The cap used to count the position
    that was closing on that very candle, so the replay entered one candle later, or not at all."""
    settings = replay_settings(tmp_path, max_open_positions=1)
    candles = write_synthetic_cache(settings.candles_dir, SYMBOL, TF, 1500)
    expected = expected_trades(settings, candles)
    assert any(b["signal_ts"] == a["exit_ts"] for a, b in itertools.pairwise(expected)), \
        "the series has an exit followed by a signal on the same candle"
    daemon = Daemon(settings, replay=True, install_signals=False)
    await daemon.run()
    assert read_journal(StateStore(settings.state_dir(replay=True)).trades_path) == expected


async def test_restart_resumes_open_positions_and_continues_identically(tmp_path):
    settings = replay_settings(tmp_path)
    candles = write_synthetic_cache(settings.candles_dir, SYMBOL, TF, 1500)
    expected = expected_trades(settings, candles)

    # Stop at a moment with an open position, as a user pressing Ctrl-C would.
    first = Daemon(settings, replay=True, install_signals=False)
    original_tick = first.tick

    async def tick_until_open() -> None:
        await original_tick()
        if first.parts.broker.open_positions() and first.figures.number > 300:
            first.stop_event.set()

    first.tick = tick_until_open  # type: ignore[method-assign]
    await first.run()
    held = [p.to_json() for p in first.parts.broker.open_positions()]
    assert held, "the first run should stop holding a position"

    second = Daemon(settings, replay=True, install_signals=False)
    await second.start()
    assert [p.to_json() for p in second.parts.broker.open_positions()] == held
    await second.shutdown()

    third = Daemon(settings, replay=True, install_signals=False)
    await third.run()
    journal = read_journal(StateStore(settings.state_dir(replay=True)).trades_path)
    assert journal == expected  # an interrupted replay gives the same trades as one straight run


async def test_replay_without_cache_fails_with_one_clear_line(tmp_path):
    from trading_bot.engine.daemon import StartupError

    settings = replay_settings(tmp_path)
    with pytest.raises(StartupError, match="replay needs cached candles"):
        await Daemon(settings, replay=True, install_signals=False).run()


async def test_many_bots_replay_keeps_entries_and_exits_in_step_with_the_backtest(tmp_path):
    """With several bots the wallet is shared (sizes differ), but when and at what price each bot
    enters and exits is its own backtest's."""
    symbols, timeframes = ("BTC/USDT:USDT", "ETH/USDT:USDT"), ("1m", "5m")
    settings = make_settings(tmp_path, symbols=symbols, timeframes=timeframes, history_candles=5000, funding="off",
                             max_open_positions=50)
    history = {(s, tf): write_synthetic_cache(settings.candles_dir, s, tf, 900, seed=11) for s in symbols for tf in timeframes}
    daemon = Daemon(settings, replay=True, install_signals=False)
    await daemon.run()
    journal = read_journal(StateStore(settings.state_dir(replay=True)).trades_path)
    assert journal
    params = default_config().params_for(*symbols[0:1], "1m")
    for (symbol, tf), candles in history.items():
        start_ts = _first_replayed_ts(settings, history, symbol, tf)
        start = int(np.searchsorted(candles[:, 0], start_ts))
        result = backtest_series(symbol, tf, candles, params, Costs(settings.fee_rate, settings.slippage),
                                 RiskLimits(settings.risk_per_trade, settings.leverage, 50), settings.initial_balance,
                                 start_index=start)
        mine = [(t["entry_ts"], t["entry_price"], t["exit_ts"], t["exit_price"], t["exit_reason"])
                for t in journal if t["symbol"] == symbol and t["timeframe"] == tf]
        theirs = [(t.entry_ts, t.entry_price, t.exit_ts, t.exit_price, t.exit_reason) for t in result.trades]
        assert mine == theirs, (symbol, tf)


def _first_replayed_ts(settings, history, symbol, tf):
    from trading_bot.domain.timeframes import last_closed_open_ms, timeframe_ms

    start = max(int(c[REPLAY_WARMUP_CANDLES, 0]) + timeframe_ms(t) for (_, t), c in history.items())
    return last_closed_open_ms(start, timeframe_ms(tf)) + timeframe_ms(tf)
