"""Each closed trade is journaled once, by whoever must: the live broker (before it drops the
position), or on paper the heartbeat's recorder. The journal's own de-duplication (which a resumed
replay needs) is not what keeps the count right."""

from __future__ import annotations

from collections import Counter

import pytest

from conftest import make_settings, write_synthetic_cache
from fakes.live_bot import SYMBOL_ID, open_a_position
from trading_bot.engine.daemon import Daemon
from trading_bot.persistence.state_store import StateStore, read_journal, trade_key
from trading_bot.persistence.strategy_config_file import write_config


@pytest.fixture
def append_calls(monkeypatch) -> Counter:
    """Every StateStore.append_trade call, by trade."""
    calls: Counter = Counter()
    original = StateStore.append_trade

    async def counting(self, trade):
        calls[trade_key(trade.to_json())] += 1
        return await original(self, trade)

    monkeypatch.setattr(StateStore, "append_trade", counting)
    return calls


async def test_a_live_exit_is_journaled_once(tmp_path, market, append_calls):
    clock, fake = market
    daemon, settings = await open_a_position(tmp_path, clock, fake)
    try:
        [position] = daemon.parts.broker.open_positions()
        fake.set_price(SYMBOL_ID, position.stop * (1 - 0.001 * position.side))  # through the stop
        await fake.ws_flush()  # the fill's events reach the bot
        clock.advance(5_000)
        await daemon.tick()
        assert daemon.parts.broker.open_positions() == []
        [trade] = read_journal(StateStore(settings.state_dir()).trades_path)
        assert append_calls == {trade_key(trade): 1}, "journaled by the broker, not again by the heartbeat"
    finally:
        await daemon.shutdown()


async def test_a_paper_exit_is_journaled_once_by_the_heartbeat(tmp_path, append_calls):
    settings = make_settings(tmp_path, symbols=("BTC/USDT:USDT",), timeframes=("1m",), history_candles=5000)
    write_config(settings.strategy_config, {"version": 1, "defaults": {"sl_pct": 0.004, "rr_ratio": 1.5}})
    write_synthetic_cache(settings.candles_dir, "BTC/USDT:USDT", "1m", 800)
    await Daemon(settings, replay=True, install_signals=False).run()
    journal = read_journal(StateStore(settings.state_dir(replay=True)).trades_path)
    assert journal, "the replay should trade"
    assert append_calls == Counter(trade_key(t) for t in journal)
    assert set(append_calls.values()) == {1}
