"""The fake's funding: GET /fapi/v1/fundingRate (public history) and GET /fapi/v1/income (the funding fees
it charges open positions at each funding moment its clock passes), through the real ccxt client."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import ccxt.async_support as ccxt_async
import pytest
from ccxt.base.errors import BadRequest, BadSymbol, DDoSProtection

from fakes.ccxt_client import ccxt_client
from fakes.clocks import JAN_1_2026_MS, SharedClock
from fakes.fake_binance import MARKETS, FakeBinance

H = 3_600_000
H8 = 8 * H
START = JAN_1_2026_MS + 7 * H + 50 * 60_000  # 07:50 UTC: ten minutes before a funding moment
BTC, ETH = "BTC/USDT:USDT", "ETH/USDT:USDT"


@pytest.fixture
def market_start_ms() -> int:
    return START


@contextlib.asynccontextmanager
async def client_on(clock: SharedClock, fake: FakeBinance) -> AsyncIterator[ccxt_async.binanceusdm]:
    # ccxt's own limiter would wait 1.5 s before each income request (weight 30 at its default pace).
    client = ccxt_client(fake, enableRateLimit=False)
    client.milliseconds = clock  # signed requests stamped on the test's clock, as the bot's are
    try:
        await client.load_markets()
        yield client
    finally:
        await client.close()


async def test_funding_rate_history_as_binance_sends_it(market):
    clock, fake = market
    async with client_on(clock, fake) as client:
        raw = await client.fapiPublicGetFundingRate({"symbol": "BTCUSDT", "startTime": JAN_1_2026_MS - 3 * H8,
                                                     "limit": 5})
        # Ascending, from startTime, only moments already passed: 16:00 and 00:00 the day before …, 00:00 today.
        assert [r["fundingTime"] // 60_000 * 60_000 for r in raw] == [JAN_1_2026_MS + k * H8 for k in (-3, -2, -1, 0)]
        assert all(list(r) == ["symbol", "fundingRate", "fundingTime", "markPrice"] for r in raw)
        assert all(r["symbol"] == "BTCUSDT" and isinstance(r["fundingTime"], int) for r in raw)
        assert any(r["fundingTime"] % 60_000 for r in raw)  # stamped a few ms late, like Binance's
        assert all(len(r["fundingRate"].split(".")[1]) == 8 for r in raw)
        expected = [fake.default_funding_rate("BTCUSDT", JAN_1_2026_MS + k * H8) for k in (-3, -2, -1, 0)]
        assert [(r["fundingTime"], float(r["fundingRate"])) for r in raw] == expected
        # markPrice: the fake's own price at that moment (within its 1m history), "" before it, as for Binance's oldest.
        assert float(raw[-1]["markPrice"]) > 0 and len(raw[-1]["markPrice"].split(".")[1]) == 8
        old = await client.fapiPublicGetFundingRate({"symbol": "BTCUSDT", "startTime": JAN_1_2026_MS - 400 * 86_400_000,
                                                     "limit": 1})
        assert old[0]["markPrice"] == ""

        parsed = await client.fetch_funding_rate_history(BTC, JAN_1_2026_MS - 3 * H8, 5)
        assert [(p["symbol"], p["timestamp"], p["fundingRate"]) for p in parsed] == [(BTC, t, r) for t, r in expected]

    pages = [r for r in fake.requests if r.path == "/fapi/v1/fundingRate"]
    assert pages and all(r.weight == 0 and r.status == 200 for r in pages)  # weight 0: a limit of its own


async def test_which_records_a_request_gets(market):
    clock, fake = market
    fake.set_funding_rates("ETHUSDT", [(JAN_1_2026_MS - k * 4 * H + 3, k * 1e-5) for k in range(300)])  # every 4 h
    async with client_on(clock, fake) as client:
        latest = await client.fapiPublicGetFundingRate({"symbol": "ETHUSDT"})
        assert len(latest) == 200 and latest[-1]["fundingTime"] == JAN_1_2026_MS + 3  # no range: the latest 200
        assert [r["fundingTime"] for r in latest] == sorted(r["fundingTime"] for r in latest)
        assert len(await client.fapiPublicGetFundingRate({"symbol": "ETHUSDT", "limit": 7})) == 7
        until = await client.fapiPublicGetFundingRate({"symbol": "ETHUSDT", "endTime": JAN_1_2026_MS - H8, "limit": 3})
        assert [r["fundingTime"] for r in until] == [JAN_1_2026_MS - k * 4 * H + 3 for k in (5, 4, 3)]  # 3 ms past it: not yet
        ranged = await client.fapiPublicGetFundingRate({"symbol": "ETHUSDT", "startTime": JAN_1_2026_MS - 12 * H,
                                                        "endTime": JAN_1_2026_MS - 4 * H + 3})
        assert [float(r["fundingRate"]) for r in ranged] == [3e-5, 2e-5, 1e-5]
        both = await client.fapiPublicGetFundingRate({"startTime": JAN_1_2026_MS - 4 * H, "limit": 1000})
        assert {r["symbol"] for r in both} == set(MARKETS)  # no symbol: every market (other tests may add some)
        assert [r["fundingTime"] for r in both] == sorted(r["fundingTime"] for r in both)


async def test_bad_requests_get_binances_errors(market):
    clock, fake = market
    async with client_on(clock, fake) as client:
        for params, error, code in [
            ({"symbol": "DOGEUSDT"}, BadSymbol, "-1121"),
            ({"symbol": "BTCUSDT", "startTime": JAN_1_2026_MS, "endTime": JAN_1_2026_MS - 1}, BadRequest, "-1023"),
            ({"symbol": "BTCUSDT", "limit": 1001}, BadRequest, "-1130"),
            ({"symbol": "BTCUSDT", "limit": 0}, BadRequest, "-1130"),
            ({"symbol": "BTCUSDT", "startTime": "soon"}, BadRequest, "-1102"),
        ]:
            with pytest.raises(error, match=code):
                await client.fapiPublicGetFundingRate(params)
    assert [r.status for r in fake.requests if r.path == "/fapi/v1/fundingRate"] == [400] * 5


async def test_the_funding_endpoints_own_limit_answers_429(market):
    clock, fake = market
    fake.funding_rate_limit = 2
    async with client_on(clock, fake) as client:
        for _ in range(2):
            await client.fapiPublicGetFundingRate({"symbol": "BTCUSDT", "limit": 1})
        with pytest.raises(DDoSProtection, match="2 requests per 5 minutes"):
            await client.fapiPublicGetFundingRate({"symbol": "BTCUSDT", "limit": 1})
    [refused] = [r for r in fake.requests if r.status == 429]
    assert refused.path == "/fapi/v1/fundingRate"


async def test_open_positions_pay_or_get_funding_when_the_clock_passes_a_funding_moment(market):
    clock, fake = market
    fake.set_price("BTCUSDT", 60_000)
    fake.set_price("ETHUSDT", 3_000)
    fake.set_funding_rates("ETHUSDT", [(JAN_1_2026_MS + H8 + 4, -0.0002), (JAN_1_2026_MS + 2 * H8 + 9, 0.0003)])
    btc_rate = fake.default_funding_rate("BTCUSDT", JAN_1_2026_MS + H8)
    async with client_on(clock, fake) as client:
        await client.create_order(BTC, "market", "buy", 0.01, None)  # long
        await client.create_order(ETH, "market", "sell", 0.5, None)  # short
        balance = fake.balance
        clock.advance(9 * 60_000)  # 07:59: nothing yet
        assert await client.fetch_funding_history(BTC) == []

        clock.advance(2 * 60_000)  # 08:01: the 08:00 moment has passed
        [btc_fee] = await client.fetch_funding_history(BTC)
        assert btc_fee["timestamp"] == btc_rate[0] and btc_fee["code"] == "USDT" and btc_fee["symbol"] == BTC
        assert btc_fee["amount"] == pytest.approx(-0.01 * 60_000 * btc_rate[1])  # the long pays a positive rate
        [eth_fee] = await client.fetch_funding_history(ETH)
        assert eth_fee["amount"] == pytest.approx(-0.5 * 3_000 * 0.0002)  # the short pays a negative rate
        assert fake.balance == pytest.approx(balance + btc_fee["amount"] + eth_fee["amount"])
        assert (await client.fetch_balance())["USDT"]["total"] == pytest.approx(fake.balance)
        info = eth_fee["info"]
        assert list(info) == ["symbol", "incomeType", "income", "asset", "info", "time", "tranId", "tradeId"]
        assert (info["incomeType"], info["info"], info["tradeId"], info["income"]) == (
            "FUNDING_FEE", "FUNDING_FEE", "", "-0.30000000")
        # The fee's mark price is the one the rate history shows for that moment.
        [record] = await client.fapiPublicGetFundingRate({"symbol": "ETHUSDT", "startTime": JAN_1_2026_MS + H8})
        assert record["markPrice"] == "3000.00000000"

        await client.create_order(BTC, "market", "sell", 0.01, None, {"reduceOnly": True})  # BTC closed
        fake.set_price("ETHUSDT", 3_100)
        clock.advance(8 * H)  # 16:01: ETH only
        assert len(await client.fetch_funding_history(BTC)) == 1
        eth = await client.fetch_funding_history(ETH)
        assert [f["amount"] for f in eth] == pytest.approx([-0.3, 0.5 * 3_100 * 0.0003])  # the short receives
        assert fake.funding_fees() == pytest.approx(btc_fee["amount"] - 0.3 + 0.465)

        types = await client.fapiPrivateGetIncome({"symbol": "BTCUSDT"})
        # Closed at its entry price: no REALIZED_PNL record, only the two commissions around the fee.
        assert [r["incomeType"] for r in types] == ["COMMISSION", "FUNDING_FEE", "COMMISSION"]
        assert float(types[0]["income"]) == pytest.approx(-0.01 * 60_000 * fake.fee_rate)
        assert types[2]["tradeId"] == str(fake.trades[-1]["id"])


async def test_income_filters_and_errors(market):
    clock, fake = market
    fake.set_price("BTCUSDT", 60_000)
    async with client_on(clock, fake) as client:
        await client.create_order(BTC, "market", "buy", 0.01, None)
        clock.advance(3 * 86_400_000)  # nine funding moments
        fake.set_price("BTCUSDT", 61_000)
        await client.create_order(BTC, "market", "sell", 0.01, None)
        fees = await client.fapiPrivateGetIncome({"incomeType": "FUNDING_FEE"})
        assert len(fees) == 9 and [r["time"] for r in fees] == sorted(r["time"] for r in fees)
        assert len({r["tranId"] for r in fees}) == 9
        page = await client.fapiPrivateGetIncome({"incomeType": "FUNDING_FEE", "startTime": fees[3]["time"], "limit": 2})
        assert page == fees[3:5]
        [pnl] = await client.fapiPrivateGetIncome({"incomeType": "REALIZED_PNL"})
        assert float(pnl["income"]) == pytest.approx(10.0) and pnl["tradeId"] == str(fake.trades[-1]["id"])
        clock.advance(8 * 86_400_000)  # neither startTime nor endTime: the last 7 days only
        assert await client.fapiPrivateGetIncome({"incomeType": "FUNDING_FEE"}) == []
        assert len(await client.fapiPrivateGetIncome({"startTime": START})) == 9 + 3
        for params, code in [({"incomeType": "FUNDING"}, "-1130"), ({"limit": 1001}, "-1130"),
                             ({"symbol": "DOGEUSDT"}, "-1121"), ({"startTime": START, "endTime": START - 1}, "-1023")]:
            with pytest.raises((BadRequest, BadSymbol), match=code):
                await client.fapiPrivateGetIncome(params)
    assert {r.weight for r in fake.requests if r.path == "/fapi/v1/income"} == {30}
