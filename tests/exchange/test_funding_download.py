"""`trading-bot fetch` downloads each symbol's funding-rate history beside its candles, through the real
ccxt client against the loopback fake exchange: paging, resuming from the cache, the summary, failures."""

from __future__ import annotations

import io

import pytest

from fakes.fake_binance import FakeBinance
from trading_bot.exchange.history_download import fetch_history, render_summary
from trading_bot.marketdata.funding_csv import funding_path, load_funding_schedule, merge_funding_rates, read_funding_rates

DAY = 86_400_000
H8 = 8 * 3_600_000
NOW = 1_767_225_600_000 + 30 * 60_000 + 5_000  # 2026-01-01 00:30:05 UTC
BTC, ETH = "BTC/USDT:USDT", "ETH/USDT:USDT"


@pytest.fixture
def market_start_ms() -> int:
    return NOW


def funding_requests(fake: FakeBinance) -> list:
    return [r for r in fake.requests if r.path == "/fapi/v1/fundingRate"]


async def test_a_long_history_is_paged_and_cached_exactly(tmp_path, market, pool):
    _, fake = market
    since = NOW - 420 * DAY  # 1,260 funding moments: two pages of at most 1000
    report = await fetch_history(pool, tmp_path, [BTC], ["1d"], since, stream=io.StringIO())
    assert report.ok
    expected = fake.funding_rates("BTCUSDT", since - 1, NOW)
    assert len(expected) == 1260
    cached, read = read_funding_rates(funding_path(tmp_path, BTC))
    assert cached == expected and read.dropped == 0
    [funding] = report.funding
    assert (funding.added, funding.requests) == (1260, 2)
    pages = funding_requests(fake)
    assert [(int(r.params["startTime"]), r.params["limit"], r.params["symbol"]) for r in pages] == [
        (since, "1000", "BTCUSDT"), (expected[999][0] + 1, "1000", "BTCUSDT")]
    assert all(int(r.params["endTime"]) == report.now_ms for r in pages)  # up to the exchange's now
    assert pool.own_budgets["funding"].requests == 2  # through the endpoints' own 500-per-5-minutes limit
    assert {r.weight for r in pages} == {0}
    schedule = load_funding_schedule(tmp_path, BTC)
    events = schedule.events_between(since, NOW)
    assert len(events) == 1260 and all(e.from_history and e.time_ms % 60_000 == 0 for e in events)
    assert "BTC/USDT:USDT funding: +1,260 rates; cached 2024-11-07 08:00 → 2026-01-01 00:00 UTC" in render_summary(report)


async def test_a_rerun_resumes_after_the_cached_tail(tmp_path, market, pool):
    clock, fake = market
    since = NOW - 10 * DAY
    first = await fetch_history(pool, tmp_path, [BTC], ["1d"], since, stream=io.StringIO())
    assert first.funding[0].added == 30
    path = funding_path(tmp_path, BTC)
    before = path.read_bytes()

    again = await fetch_history(pool, tmp_path, [BTC], ["1d"], since, stream=io.StringIO())
    assert again.funding[0].added == 0 and path.read_bytes() == before
    assert "BTC/USDT:USDT funding: +0 rates (up to date); cached" in render_summary(again)
    last = read_funding_rates(path)[0][-1][0]
    assert int(funding_requests(fake)[-1].params["startTime"]) == last + 1  # not from --since again

    clock.advance(H8)  # 08:30: the 08:00 moment has been paid
    third = await fetch_history(pool, tmp_path, [BTC], ["1d"], since, stream=io.StringIO())
    assert third.funding[0].added == 1
    assert read_funding_rates(path)[0] == fake.funding_rates("BTCUSDT", since - 1, NOW + H8)


async def test_one_symbols_failure_is_reported_and_the_others_go_on(tmp_path, market, pool):
    _, fake = market
    fake.inject("500_html", "/fapi/v1/fundingRate", times=10, match=lambda p: p.get("symbol") == "ETHUSDT")
    out = io.StringIO()
    report = await fetch_history(pool, tmp_path, [BTC, ETH], ["1d"], NOW - 5 * DAY, stream=out)
    assert not report.ok and not report.failed  # the candles are complete ...
    [failed] = report.funding_failed  # ... ETH's funding is not
    assert failed.plan.symbol == ETH and "ExchangeNotAvailable" in (failed.error or "")
    assert report.incomplete() == "1 funding history incomplete"
    assert read_funding_rates(funding_path(tmp_path, BTC))[0] == fake.funding_rates("BTCUSDT", NOW - 5 * DAY - 1, NOW)
    assert not funding_path(tmp_path, ETH).exists()
    summary = render_summary(report)
    assert "ETH/USDT:USDT funding: +0 rates; nothing cached\n  incomplete: ExchangeNotAvailable" in summary
    assert "(rerun to resume)" in summary
    assert "ETH/USDT:USDT funding: +0 rates; nothing cached — incomplete: ExchangeNotAvailable" in out.getvalue()
    assert "fetch_funding_rate_history failed" in out.getvalue()  # the retry warning came through the display


async def test_history_before_the_cache_start_is_reported_and_until_includes_its_minute(tmp_path, market, pool):
    _, fake = market
    cache_start = NOW - 3 * DAY
    merge_funding_rates(funding_path(tmp_path, BTC), fake.funding_rates("BTCUSDT", cache_start, NOW - DAY))
    until = 1_767_225_600_000  # 2026-01-01 00:00:00.000; its funding record is stamped a few ms later
    report = await fetch_history(pool, tmp_path, [BTC], ["1d"], NOW - 10 * DAY, until, stream=io.StringIO())
    [funding] = report.funding
    cached = read_funding_rates(funding_path(tmp_path, BTC))[0]
    assert funding.added == 3 and cached == fake.funding_rates("BTCUSDT", cache_start, until + 59_999)
    assert cached[-1][0] > until  # the 00:00 record, stamped just after --until, belongs to it
    assert "funding before 2025-12-29 08:00 not fetched: the cache starts there (move BTC_USDT_USDT_funding.csv away" \
        in render_summary(report)
