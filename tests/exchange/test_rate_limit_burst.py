"""A candle close while other clients on our IP have used most of the exchange's weight: the real
ccxt client against the fake, which counts the IP's weight, answers 429 with Retry-After and bans
(418) an IP that keeps going over the limit or does not wait for Retry-After, as Binance documents.
A "minute" lasts 2 s on both sides so the test is quick."""

from __future__ import annotations

import time

import pytest

from fakes.fake_binance import FakeBinance, add_markets
from trading_bot.exchange.client import ExchangeClient
from trading_bot.exchange.retry import RetryPolicy
from trading_bot.exchange.source import ExchangeSource
from trading_bot.marketdata.manager import MarketDataManager

LIMIT = 100
WINDOW_S = 2.0
SYMBOLS = [f"Q{i:02d}/USDT:USDT" for i in range(8)]


@pytest.fixture
async def exchange():
    add_markets([s.split("/")[0] + "USDT" for s in SYMBOLS])
    fake = await FakeBinance(weight_limit=LIMIT).start()
    fake.window_s = WINDOW_S
    fake.ban_seconds = 3  # short, so a failing run does not hang
    pool = ExchangeClient("binanceusdm", fake.url, weight_limit=LIMIT,
                          retry=RetryPolicy(attempts=8, base_delay=0.05, max_delay=0.2))
    pool.budget.window_s = WINDOW_S
    try:
        yield fake, pool
    finally:
        await pool.close()
        await fake.stop()


def manager(tmp_path, pool: ExchangeClient) -> MarketDataManager:
    # 50 one-minute candles per series: one klines request of weight 1 each.
    return MarketDataManager([(s, "1m") for s in SYMBOLS], tmp_path, ExchangeSource(pool), history_limit=50,
                             concurrency=8, write_cache=False)


def assert_never_banned(fake: FakeBinance) -> None:
    statuses = [r.status for r in fake.requests]
    assert 418 not in statuses and fake.banned_until == 0, statuses
    assert fake.ignored_retry_after == 0, "a request went out before an earlier 429's Retry-After had passed"


async def test_a_close_with_the_ip_near_its_limit_never_earns_a_ban(tmp_path, exchange):
    fake, pool = exchange
    await pool.markets()  # the budget's last look at the exchange's count: nearly nothing used
    fake.set_other_clients_weight(LIMIT - 4)  # since then, other clients used all but 4 of every window
    time.sleep(1.2)  # the next close comes later (blocking: nothing else runs meanwhile)
    mdm = manager(tmp_path, pool)
    started = time.monotonic()
    await mdm.refresh(fake.now_ms())  # 8 series due at once, 4 weight of room per window
    assert_never_banned(fake)
    assert all(s.candles.shape[0] == 50 for s in mdm.series.values()), "every candle fetched"
    assert mdm.stats.fetch_errors == 0
    assert time.monotonic() - started >= WINDOW_S * 0.9, "the second half waited for the next window"


async def test_a_429_holds_every_waiting_request_for_its_retry_after(tmp_path, exchange):
    fake, pool = exchange
    await pool.markets()
    time.sleep(1.2)  # the budget's count is out of date: the first request of the close goes alone ...
    fake.inject("429", "/fapi/v1/klines", retry_after=1)  # ... and is answered 429 while the 7 others wait
    mdm = manager(tmp_path, pool)
    await mdm.refresh(fake.now_ms())
    assert_never_banned(fake)
    assert all(s.candles.shape[0] == 50 for s in mdm.series.values()) and mdm.stats.fetch_errors == 0
    klines = sorted((r for r in fake.requests if r.path == "/fapi/v1/klines"), key=lambda r: r.time)
    assert [r.status for r in klines] == [429] + [200] * 8
    assert klines[1].time - klines[0].time >= 1.0, "nothing went out before Retry-After had passed"
