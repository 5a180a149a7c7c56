"""The symbol universe from the exchange: the fake's GET /fapi/v1/ticker/24hr as Binance answers it, and
top:N / all chosen through the real ccxt client over HTTP (exchange/universe.py)."""

from __future__ import annotations

import aiohttp
import pytest

from fakes.fake_binance import MARKETS
from trading_bot.domain.universe import UniverseRule
from trading_bot.exchange.client import WEIGHTS
from trading_bot.exchange.universe import UniverseUnavailable, exchange_universe

# Binance's documented fields of a USDⓈ-M 24 h ticker, in its order.
TICKER_FIELDS = ["symbol", "priceChange", "priceChangePercent", "weightedAvgPrice", "lastPrice", "lastQty", "openPrice",
                 "highPrice", "lowPrice", "volume", "quoteVolume", "openTime", "closeTime", "firstId", "lastId", "count"]


def ours(fake) -> list[str]:
    """The fake's tradeable perpetuals as ccxt names them (other tests may have listed more)."""
    return sorted(f"{spec[0]}/USDT:USDT" for spec in MARKETS.values())


async def test_the_24h_ticker_answers_as_binance_does(fake):
    fake.set_quote_volume("ETHUSDT", 1_234_567.5)
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{fake.url}/fapi/v1/ticker/24hr", params={"symbol": "ETHUSDT"}) as one:
            assert one.status == 200
            ticker = await one.json()
        async with http.get(f"{fake.url}/fapi/v1/ticker/24hr") as every:
            tickers = await every.json()
        errors = {}
        for symbol in ("NOPEUSDT", "btcusdt", ""):
            async with http.get(f"{fake.url}/fapi/v1/ticker/24hr", params={"symbol": symbol}) as bad:
                errors[symbol] = (bad.status, (await bad.json())["code"])
    assert list(ticker) == TICKER_FIELDS
    assert ticker["quoteVolume"] == "1234567.50" and isinstance(ticker["openTime"], int)
    assert float(ticker["volume"]) == pytest.approx(1_234_567.5 / float(ticker["lastPrice"]), rel=1e-3)
    assert isinstance(tickers, list) and {t["symbol"] for t in tickers} == set(MARKETS)
    assert all(list(t) == TICKER_FIELDS and isinstance(t["quoteVolume"], str) for t in tickers)
    assert errors == {"NOPEUSDT": (400, -1121), "btcusdt": (400, -1100), "": (400, -1102)}
    # Request weight: 1 for one symbol, 40 for all of them (the client's table agrees).
    weights = [r.weight for r in fake.requests if r.path == "/fapi/v1/ticker/24hr" and r.status == 200]
    assert weights == [1, 40] and WEIGHTS["fetch_tickers"] == 40


async def test_top_n_ranks_the_active_usdt_perpetuals_by_24h_quote_volume(fake, pool):
    for symbol_id, volume in {"BTCUSDT": 2e12, "ETHUSDT": 3e12, "SOLUSDT": 1e12}.items():
        fake.set_quote_volume(symbol_id, volume)
    # Listed but not eligible: a USDC perpetual and a quarterly future with huge volumes.
    fake.list_market("BTCUSDC", "BTC", "USDC")
    fake.list_market("BTCUSDT_261225", "BTC", "USDT", contract_type="CURRENT_QUARTER")
    fake.set_quote_volume("BTCUSDC", 9e12)
    fake.set_quote_volume("BTCUSDT_261225", 9e12)
    assert await exchange_universe(pool, UniverseRule(2)) == ("ETH/USDT:USDT", "BTC/USDT:USDT")
    assert pool.calls["fetch_tickers"] == 1
    fake.set_market_status("ETHUSDT", "SETTLING")  # being delisted: ccxt calls it inactive
    await pool.close()  # a new client loads the markets again
    assert await exchange_universe(pool, UniverseRule(2)) == ("BTC/USDT:USDT", "SOL/USDT:USDT")
    everything = await exchange_universe(pool, UniverseRule())
    assert everything == tuple(s for s in ours(fake) if s != "ETH/USDT:USDT"), "all: no tickers needed, by name"
    assert pool.calls["fetch_tickers"] == 2


async def test_a_ticker_list_without_volumes_is_not_ranked(fake, pool, monkeypatch):
    real_call = pool.call

    async def no_volumes(method, *args, **kwargs):
        result = await real_call(method, *args, **kwargs)
        if method != "fetch_tickers":
            return result
        return {s: {**t, "quoteVolume": None, "baseVolume": None} for s, t in result.items()}

    monkeypatch.setattr(pool, "call", no_volumes)
    with pytest.raises(UniverseUnavailable, match="no 24 h volume"):
        await exchange_universe(pool, UniverseRule(2))


async def test_fetch_downloads_the_history_of_the_symbols_top_n_chooses_now(tmp_path, fake):
    import io

    from conftest import make_settings
    from trading_bot.exchange.history_download import run_fetch

    fake.set_quote_volume("SOLUSDT", 9e12)
    settings = make_settings(tmp_path, symbols=(), universe=UniverseRule(1), timeframes=("1h",), exchange_url=fake.url)
    stream = io.StringIO()
    start = fake.now_ms() - 10 * 3_600_000
    report = await run_fetch(settings, start, None, stream=stream)
    assert [(r.plan.symbol, r.plan.timeframe) for r in report.series] == [("SOL/USDT:USDT", "1h")]
    assert "top:1: 1 symbols: SOL/USDT:USDT" in stream.getvalue()
