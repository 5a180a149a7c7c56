"""TRADING_SYMBOLS=top:N / all in the daemon (engine/universe.py): the choice at startup, the daily
refresh on the bot's clock, new bots warming on their history, a dropped symbol kept while it holds a
position, removed once flat, the saved state across a restart; and the offline fallbacks."""

from __future__ import annotations

import json
import logging
import math

import pytest

from conftest import make_settings
from fakes.clocks import JAN_1_2026_MS
from trading_bot.cli.status_view import collect_status, render_status
from trading_bot.domain.trades import LONG, Position
from trading_bot.domain.universe import DAY_MS, REFRESH_DELAY_MS, UniverseRule
from trading_bot.engine.daemon import Daemon, StartupError
from trading_bot.engine.universe import ExitOnly
from trading_bot.exchange.retry import RetryPolicy
from trading_bot.marketdata.sources import FetchResult, SyntheticSource
from trading_bot.marketdata.synthetic import SYNTHETIC_SYMBOLS
from trading_bot.persistence.state_store import StateStore, decode_state

BTC, ETH, SOL = "BTC/USDT:USDT", "ETH/USDT:USDT", "SOL/USDT:USDT"
START = JAN_1_2026_MS + 23 * 3_600_000 + 150  # 23:00 UTC on 1 January, just after the 1h close
DAY2_REFRESH = JAN_1_2026_MS + DAY_MS + REFRESH_DELAY_MS + 150  # 00:05 UTC the next day


@pytest.fixture
def market_start_ms() -> int:
    return START


def universe_settings(tmp_path, fake, **changes):
    return make_settings(tmp_path, symbols=(), universe=UniverseRule(2), timeframes=("1h",), market_data="exchange",
                         exchange_url=fake.url, history_candles=100, **changes)


def volumes(fake, **by_id: float) -> None:
    for symbol_id, usdt in by_id.items():
        fake.set_quote_volume(symbol_id, usdt)


def hold(daemon: Daemon, symbol: str) -> None:
    """Give the symbol's bot a position far from its stop and target (it stays open)."""
    book = daemon.parts.broker.book(symbol, "1h")
    price = float(daemon.parts.mdm.series[(symbol, "1h")].candles[-1, 4])
    book.position = Position(symbol, "1h", LONG, 0.01, price, START, START, price / 2, price * 2, 0.0, 0.5, 2.0)


async def test_top_n_is_refreshed_daily_keeps_an_open_symbol_until_flat_and_restarts_from_the_saved_books(
        tmp_path, market, caplog):
    caplog.set_level(logging.INFO, logger="trading_bot")
    clock, fake = market
    volumes(fake, BTCUSDT=3e12, ETHUSDT=2e12, SOLUSDT=1e12)
    settings = universe_settings(tmp_path, fake)
    daemon = Daemon(settings, clock=clock, install_signals=False)
    await daemon.start()
    parts = daemon.parts
    assert parts.universe is not None and parts.universe.chosen == (BTC, ETH)
    assert list(parts.mdm.series) == [(BTC, "1h"), (ETH, "1h")]
    assert ("TRADING_SYMBOLS=top:2, the 2 USDT-margined perpetuals with the largest 24 h quote volume: 2 chosen "
            "(BTC/USDT:USDT, ETH/USDT:USDT)") in caplog.text
    assert "ready: 2 bots (top:2: 2 symbols × 1 timeframes)" in caplog.text
    hold(daemon, ETH)

    volumes(fake, SOLUSDT=5e12)  # SOL takes ETH's place in the top 2
    clock.advance(DAY2_REFRESH - 3_600_000 - clock.now_ms())  # an hour before the refresh: nothing changes
    await daemon.tick()
    assert parts.universe.chosen == (BTC, ETH)
    clock.advance(3_600_000)
    caplog.clear()
    await daemon.tick()
    assert ("universe top:2 (refresh): added 1 (SOL/USDT:USDT), removed 0, kept 1 because open (ETH/USDT:USDT); "
            "3 symbols") in caplog.text
    sol = parts.mdm.series[(SOL, "1h")]
    assert sol.candles.shape[0] == 100 and (settings.candles_dir / "SOL_USDT_USDT_1h.csv").exists()
    assert "1 new bot(s) ready, trading from their next candle: SOL/USDT:USDT 1h" in caplog.text
    assert parts.broker.book(SOL, "1h").last_candle_ts == sol.last_ts, "its history is not news"
    assert parts.universe.warming == set()
    assert isinstance(parts.strategies[(ETH, "1h")], ExitOnly) and parts.strategies[(ETH, "1h")].params.threshold == math.inf
    assert not isinstance(parts.strategies[(SOL, "1h")], ExitOnly)
    status = json.loads((settings.state_dir() / "status.json").read_text())
    assert status["bots"] == 3 and status["universe"]["chosen"] == [SOL, BTC] and status["universe"]["kept"] == [ETH]
    assert status["universe"]["next_refresh_ms"] == DAY2_REFRESH - 150 + DAY_MS
    shown = render_status(collect_status(settings.state_dir(), "paper"))
    assert ("symbols top:2 from the exchange: 2 chosen (SOL/USDT:USDT, BTC/USDT:USDT), kept until flat: ETH/USDT:USDT "
            "· next refresh 2026-01-03 00:05 UTC") in shown

    clock.advance(60_000)
    await daemon.tick()
    assert (ETH, "1h") in parts.mdm.series, "still open: still running"
    parts.broker.book(ETH, "1h").position = None  # closed (its stop, a flatten …)
    clock.advance(60_000)
    caplog.clear()
    await daemon.tick()
    assert ("universe top:2 (flat now): added 0, removed 1 (ETH/USDT:USDT), kept 0 because open; 2 symbols"
            in caplog.text)
    assert list(parts.mdm.series) == [(BTC, "1h"), (SOL, "1h")] and (ETH, "1h") not in parts.strategies
    assert parts.broker.keys == [(BTC, "1h"), (SOL, "1h")]
    assert "ETH/USDT:USDT|1h" in parts.broker.books, "the flat book stays in the saved state"
    hold(daemon, SOL)
    await daemon.shutdown()

    saved = decode_state(StateStore(settings.state_dir()).positions_path.read_bytes(), "positions.json")
    assert set(saved.books) == {"BTC/USDT:USDT|1h", "ETH/USDT:USDT|1h", "SOL/USDT:USDT|1h"}
    assert saved.books["SOL/USDT:USDT|1h"].position is not None

    # A restart after SOL fell out of the top 2 while it holds a position: it comes back, kept.
    volumes(fake, SOLUSDT=1.0, ETHUSDT=4e12)
    clock.advance(60_000)
    again = Daemon(settings, clock=clock, install_signals=False)
    caplog.clear()
    await again.start()
    assert again.parts.universe.chosen == (ETH, BTC)
    assert list(again.parts.mdm.series) == [(ETH, "1h"), (BTC, "1h"), (SOL, "1h")]
    assert isinstance(again.parts.strategies[(SOL, "1h")], ExitOnly)
    assert "kept 1 symbol(s) that left the choice with something open: SOL/USDT:USDT" in caplog.text
    await again.shutdown()


async def test_a_refresh_the_exchange_does_not_answer_keeps_the_symbols_and_asks_again_later(tmp_path, market, caplog):
    clock, fake = market
    volumes(fake, BTCUSDT=3e12, ETHUSDT=2e12, SOLUSDT=1e12)
    daemon = Daemon(universe_settings(tmp_path, fake), clock=clock, install_signals=False)
    await daemon.start()
    keeper = daemon.parts.universe
    daemon.exchange.get().retry = RetryPolicy(attempts=2, base_delay=0.01, max_delay=0.02)
    fake.inject("503_html", "/fapi/v1/ticker/24hr", times=2)  # the request and its retry
    clock.advance(DAY2_REFRESH - clock.now_ms())
    await daemon.tick()
    assert "universe top:2: refresh failed" in caplog.text and "keeping the 2 symbols" in caplog.text
    assert keeper.chosen == (BTC, ETH) and keeper.next_refresh_ms == clock.now_ms() + 10 * 60_000
    await daemon.shutdown()


async def test_live_prepares_a_new_symbol_before_it_trades(tmp_path, market):
    from fakes.live_bot import live_settings

    clock, fake = market
    volumes(fake, BTCUSDT=3e12, ETHUSDT=2e12, SOLUSDT=1e12)
    settings = live_settings(tmp_path, fake).with_overrides(symbols=(), universe=UniverseRule(1), timeframes=("1h",),
                                                            history_candles=100)
    settings.strategy_config.unlink()  # the defaults: nothing signals on a new hourly candle here
    daemon = Daemon(settings, clock=clock, install_signals=False)
    await daemon.start()
    leverage = [r.params["symbol"] for r in fake.requests if r.path == "/fapi/v1/leverage"]
    assert leverage == ["BTCUSDT"]
    volumes(fake, SOLUSDT=5e12)
    clock.advance(DAY2_REFRESH - clock.now_ms())
    seen = len(fake.requests)
    await daemon.tick()
    later = fake.requests[seen:]
    # the new symbol's margin mode and leverage only, not every traded symbol's again
    assert [r.params.get("symbol") for r in later if r.path == "/fapi/v1/leverage"] == ["SOLUSDT"]
    assert daemon.parts.broker.symbols == ["SOL/USDT:USDT"] and list(daemon.parts.mdm.series) == [(SOL, "1h")]
    assert any(r.path == "/fapi/v1/openAlgoOrders" and r.params.get("symbol") == "SOLUSDT" for r in later), \
        "reconciled in the same heartbeat"
    await daemon.shutdown()


async def test_offline_top_n_trades_the_synthetic_listing(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="trading_bot")
    settings = make_settings(tmp_path, symbols=(), universe=UniverseRule(3), timeframes=("1h",), history_candles=100)
    daemon = Daemon(settings, cycles=1, install_signals=False)
    await daemon.run()
    assert daemon.parts.universe.chosen == (BTC, ETH, SOL) and daemon.parts.mdm.source.name == "synthetic"
    assert "TRADING_SYMBOLS=top:3 on the synthetic market: its own listing (400 symbols" in caplog.text
    assert len(SYNTHETIC_SYMBOLS) == 400


@pytest.mark.parametrize(("market_data", "rule"), [("auto", UniverseRule(2)), ("exchange", UniverseRule())])
async def test_an_unreachable_exchange_at_start(tmp_path, caplog, market_data, rule):
    # A port on this machine where nothing listens: refused at once.
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings = make_settings(tmp_path, symbols=(), universe=rule, timeframes=("4h",), history_candles=100,
                             market_data=market_data, exchange_url=f"http://127.0.0.1:{port}")
    daemon = Daemon(settings, cycles=1, install_signals=False)
    if market_data == "auto":  # paper on the synthetic market, as with a stale cache
        await daemon.run()
        assert daemon.parts.mdm.source.name == "synthetic" and daemon.parts.universe.chosen == (BTC, ETH)
        assert "TRADING_SYMBOLS=top:2: the exchange did not answer" in caplog.text
    else:
        with pytest.raises(StartupError, match=r"^TRADING_SYMBOLS=all: cannot choose the symbols, the exchange did not "
                                               r"answer \(127\.0\.0\.1:\d+ unreachable"):
            await daemon.run()


async def test_a_replay_needs_a_list(tmp_path):
    settings = make_settings(tmp_path, symbols=(), universe=UniverseRule(5))
    with pytest.raises(StartupError, match="a replay trades the cached candles of a list of symbols"):
        await Daemon(settings, replay=True, install_signals=False).run()


async def test_all_follows_the_markets_hourly(tmp_path, market, monkeypatch, caplog):
    from fakes import fake_binance
    from trading_bot.exchange import client as client_module

    caplog.set_level(logging.INFO, logger="trading_bot")
    clock, fake = market
    monkeypatch.setattr(fake_binance, "MARKETS", {k: fake_binance.MARKETS[k] for k in ("BTCUSDT", "ETHUSDT", "SOLUSDT")})
    monkeypatch.setattr(client_module, "MARKETS_TTL_S", 0.0)  # the client's hourly reload, at every ask here
    daemon = Daemon(universe_settings(tmp_path, fake).with_overrides(universe=UniverseRule()), clock=clock,
                    install_signals=False)
    await daemon.start()
    assert daemon.parts.universe.chosen == (BTC, ETH, SOL)
    fake.set_market_status("SOLUSDT", "SETTLING")
    clock.advance(REFRESH_DELAY_MS)  # 23:05: the hourly look at the markets
    await daemon.tick()
    assert "universe all (refresh): added 0, removed 1 (SOL/USDT:USDT), kept 0 because open; 2 symbols" in caplog.text
    assert list(daemon.parts.mdm.series) == [(BTC, "1h"), (ETH, "1h")]
    assert not any(r.path == "/fapi/v1/ticker/24hr" for r in fake.requests), "all needs no tickers"
    await daemon.shutdown()


class YoungListing(SyntheticSource):
    """The synthetic market, where SOL was listed at `listed_ms`: no candle of it opens before."""

    def __init__(self, seed: int, listed_ms: int) -> None:
        super().__init__(seed)
        self.listed_ms = listed_ms

    async def fetch(self, symbol, timeframe, tf_ms, since_ms, now_ms, limit, last_close) -> FetchResult:
        result = await super().fetch(symbol, timeframe, tf_ms, since_ms, now_ms, limit, last_close)
        if symbol == SOL:
            result.closed = result.closed[result.closed[:, 0] >= self.listed_ms]
        return result


async def test_a_young_listing_waits_for_enough_history_and_never_signals_on_it(tmp_path, caplog):
    from fakes.clocks import SharedClock

    clock = SharedClock(START)
    settings = make_settings(tmp_path, symbols=(), universe=UniverseRule(3), timeframes=("1m",), history_candles=100)
    source = YoungListing(settings.synthetic_seed, listed_ms=START - 150 - 20 * 60_000)  # 20 one-minute candles
    daemon = Daemon(settings, clock=clock, source=source, install_signals=False)
    await daemon.start()
    keeper = daemon.parts.universe
    assert keeper.warming == {(SOL, "1m")}
    assert "universe top:3: 1 bot(s) wait for enough history before they may trade: SOL/USDT:USDT 1m (20 candles)" \
        in caplog.text
    assert daemon.parts.broker.book(SOL, "1m").last_candle_ts is None, "not caught up on: it has nothing to score"
    clock.advance(10 * 60_000)
    await daemon.tick()
    assert keeper.warming == {(SOL, "1m")} and daemon.figures.new_candles == 20, "BTC's and ETH's 10; SOL's taken out"
    clock.advance(10 * 60_000)
    caplog.clear()
    caplog.set_level(logging.INFO, logger="trading_bot")
    await daemon.tick()
    assert keeper.warming == set() and "1 new bot(s) ready, trading from their next candle: SOL/USDT:USDT 1m" in caplog.text
    series = daemon.parts.mdm.series[(SOL, "1m")]
    assert series.candles.shape[0] == 40 and daemon.parts.broker.book(SOL, "1m").last_candle_ts == series.last_ts
    await daemon.shutdown()
