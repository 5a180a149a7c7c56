"""The real ccxt client over real HTTP against the loopback fake exchange: public candles."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import make_settings
from trading_bot.domain.timeframes import last_closed_open_ms
from trading_bot.engine.daemon import Daemon
from trading_bot.exchange.client import ExchangeClient
from trading_bot.exchange.network import exchange_host, network_reachable
from trading_bot.exchange.source import ExchangeSource
from trading_bot.marketdata.candle_csv import read_candles

NOW = 1_767_225_600_000 + 30 * 60_000 + 5_000


@pytest.fixture
def market_start_ms() -> int:
    return NOW  # a frozen exchange clock (the `fake` fixture never moves it)


async def test_fetch_drops_the_open_candle_and_reports_its_open(fake):
    source = ExchangeSource(ExchangeClient("binanceusdm", fake.url))
    try:
        result = await source.fetch("BTC/USDT:USDT", "1m", 60_000, None, NOW, 100, None)
    finally:
        await source.close()
    assert result.closed.shape == (100, 6)
    assert int(result.closed[-1, 0]) == last_closed_open_ms(NOW, 60_000)
    assert result.forming_ts == int(result.closed[-1, 0]) + 60_000
    assert result.forming_open == pytest.approx(result.closed[-1, 4])
    assert any(r.path == "/fapi/v1/exchangeInfo" for r in fake.requests)
    klines = [r.params for r in fake.requests if r.path == "/fapi/v1/klines"]
    assert klines and klines[0]["symbol"] == "BTCUSDT" and klines[0]["interval"] == "1m"


async def test_incremental_fetch_uses_since(fake):
    source = ExchangeSource(ExchangeClient("binanceusdm", fake.url))
    since = last_closed_open_ms(NOW, 300_000) - 2 * 300_000
    try:
        result = await source.fetch("ETH/USDT:USDT", "5m", 300_000, since, NOW, 1000, None)
    finally:
        await source.close()
    assert result.closed[:, 0].tolist() == [since, since + 300_000, since + 600_000]
    assert [r.params.get("startTime") for r in fake.requests if r.path == "/fapi/v1/klines"] == [str(since)]


async def test_paper_bot_fills_an_empty_cache_from_the_exchange(tmp_path, fake):
    from trading_bot.engine.clock import ReplayClock

    settings = make_settings(tmp_path, symbols=("BTC/USDT:USDT", "SOL/USDT:USDT"), timeframes=("1m", "1h"),
                             market_data="exchange", exchange_url=fake.url)
    clock = ReplayClock(NOW)
    clock.simulated = False
    bot = Daemon(settings, cycles=1, clock=clock, install_signals=False)
    await bot.run()
    assert bot.parts.mdm.source.name == "exchange"
    cached, _ = read_candles(settings.candles_dir / "SOL_USDT_USDT_1h.csv")
    assert cached.shape[0] == 1000 and int(cached[-1, 0]) == last_closed_open_ms(NOW, 3_600_000)
    assert np.isfinite(cached).all()


async def test_network_probe(fake):
    assert (await network_reachable("127.0.0.1", fake.port))[0]
    ok, why = await network_reachable("host.invalid", 443, timeout=2)
    assert not ok and "unreachable" in why
    assert exchange_host("binanceusdm") == ("fapi.binance.com", 443)
    assert exchange_host("x", "http://127.0.0.1:8080") == ("127.0.0.1", 8080)
