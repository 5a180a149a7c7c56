"""The loopback fake Binance USDⓈ-M driven by the real ccxt client over real HTTP: trading, conditional
(algo) orders, authentication, Binance's errors and injected faults as the ccxt exceptions the trading
code will see, request weight with 429 and 418."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import time
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlencode

import aiohttp
import ccxt.async_support as ccxt_async
import pytest
from ccxt.base.errors import (
    AuthenticationError,
    DDoSProtection,
    ExchangeError,
    ExchangeNotAvailable,
    InsufficientFunds,
    InvalidNonce,
    InvalidOrder,
    MarginModeAlreadySet,
    NetworkError,
    OperationFailed,
    OrderImmediatelyFillable,
    OrderNotFound,
    RequestTimeout,
)

from fakes.ccxt_client import ccxt_client
from fakes.fake_binance import FakeBinance, RecordedRequest

NOW = 1_767_225_600_000 + 30 * 60_000 + 5_000  # a frozen exchange clock, far from the wall clock
BTC, ETH = "BTC/USDT:USDT", "ETH/USDT:USDT"


@pytest.fixture
def market_start_ms() -> int:
    return NOW  # a frozen exchange clock (the `fake` fixture never moves it)


@contextlib.asynccontextmanager
async def client_for(fake: FakeBinance, **options: Any) -> AsyncIterator[ccxt_async.binanceusdm]:
    client = ccxt_client(fake, **options)
    try:
        yield client
    finally:
        await client.close()


def calls(fake: FakeBinance, path: str, method: str | None = None) -> list[RecordedRequest]:
    return [r for r in fake.requests if r.path == path and method in (None, r.method)]


async def test_round_trip_with_a_stop_and_a_take_profit(fake):
    async with client_for(fake, adjustForTimeDifference=True) as client:
        await client.load_markets()
        balance = await client.fetch_balance()
        assert balance["USDT"] == {"free": 10_000.0, "used": 0.0, "total": 10_000.0}

        assert (await client.set_leverage(5, BTC))["leverage"] == 5
        assert await client.set_margin_mode("isolated", BTC) == {"code": 200, "msg": "success"}
        with pytest.raises(MarginModeAlreadySet):  # ccxt 4.5.90 raises on -4046 by default ...
            await client.set_margin_mode("isolated", BTC)
        client.options["setMarginMode"]["throwMarginModeAlreadySet"] = False  # ... or returns Binance's answer
        assert await client.set_margin_mode("isolated", BTC) == {"code": -4046, "msg": "No need to change margin type."}
        assert fake.positions["BTCUSDT"] == {"amount": 0.0, "entry_price": 0.0, "leverage": 5, "margin_type": "ISOLATED"}

        fake.set_price("BTCUSDT", 60_000)
        entry = await client.create_order(BTC, "market", "buy", 0.01, None, {"clientOrderId": "entry-1"})
        assert (entry["clientOrderId"], entry["status"], entry["filled"], entry["average"]) == ("entry-1", "closed",
                                                                                               0.01, 60_000)
        entry_fee = 0.01 * 60_000 * 0.0004
        assert fake.balance == pytest.approx(10_000 - entry_fee)
        assert fake.positions["BTCUSDT"]["amount"] == 0.01 and fake.positions["BTCUSDT"]["entry_price"] == 60_000
        [position] = await client.fetch_positions([BTC])
        assert (position["side"], position["contracts"], position["entryPrice"], position["marginMode"]) == (
            "long", 0.01, 60_000, "isolated")
        assert position["collateral"] == pytest.approx(120.0)  # 600 notional at 5x

        stop = await client.create_order(BTC, "market", "sell", 0.01, None,
                                         {"triggerPrice": 59_000, "reduceOnly": True, "clientOrderId": "sl-1"})
        take = await client.create_order(BTC, "market", "sell", 0.01, None,
                                         {"takeProfitPrice": 62_000, "reduceOnly": True, "clientOrderId": "tp-1"})
        sent = [r.params for r in calls(fake, "/fapi/v1/algoOrder", "POST")]
        assert [(p["type"], p["triggerPrice"], p["reduceOnly"], p["clientAlgoId"], p["algoType"]) for p in sent] == [
            ("STOP_MARKET", "59000", "true", "sl-1", "CONDITIONAL"),
            ("TAKE_PROFIT_MARKET", "62000", "true", "tp-1", "CONDITIONAL")]
        assert stop["id"] == str(next(iter(fake.algo_orders))) and stop["status"] == "open"

        open_orders = await client.fetch_open_orders(BTC, params={"trigger": True})
        assert [(o["id"], o["triggerPrice"], o["reduceOnly"], o["status"]) for o in open_orders] == [
            (stop["id"], 59_000, True, "open"), (take["id"], 62_000, True, "open")]
        assert await client.fetch_open_orders(BTC) == []  # the regular book knows nothing of them

        fake.set_price("BTCUSDT", 58_900)  # gaps through the stop: it fills at the new price
        assert fake.positions["BTCUSDT"]["amount"] == 0
        assert await client.fetch_positions([BTC]) == []
        stopped = await client.fetch_order(stop["id"], BTC, {"trigger": True})
        assert stopped["status"] == "closed" and stopped["info"]["algoStatus"] == "FINISHED"
        assert stopped["info"]["actualPrice"] == "58900.0"
        assert stopped["filled"] == 0 and stopped["average"] is None  # ccxt does not read the algo fill
        actual = await client.fetch_order(stopped["info"]["actualOrderId"], BTC)
        assert (actual["status"], actual["filled"], actual["average"], actual["clientOrderId"]) == (
            "closed", 0.01, 58_900, "sl-1")

        assert [o["id"] for o in await client.fetch_open_orders(BTC, params={"trigger": True})] == [take["id"]]
        canceled = await client.cancel_order(take["id"], BTC, {"trigger": True})
        assert canceled["id"] == take["id"] and fake.algo_orders[int(take["id"])]["algoStatus"] == "CANCELED"
        with pytest.raises(OrderNotFound):
            await client.cancel_order(take["id"], BTC, {"trigger": True})

        trades = await client.fetch_my_trades(BTC)
        assert [(t["side"], t["price"], t["amount"], t["order"]) for t in trades] == [
            ("buy", 60_000, 0.01, entry["id"]), ("sell", 58_900, 0.01, actual["id"])]
        realized = sum(float(t["info"]["realizedPnl"]) for t in trades)
        fees = sum(t["fee"]["cost"] for t in trades)
        assert realized == pytest.approx(fake.realized_pnl()) == pytest.approx(-11.0)
        assert fees == pytest.approx(entry_fee + 0.01 * 58_900 * 0.0004)
        assert fake.balance == pytest.approx(10_000 + realized - fees)
        assert (await client.fetch_balance())["USDT"]["total"] == pytest.approx(fake.balance)

        with pytest.raises(InvalidOrder, match="-4116"):
            await client.create_order(BTC, "market", "buy", 0.01, None, {"clientOrderId": "entry-1"})
        assert fake.duplicate_client_ids == ["entry-1"]
    assert fake.positions["BTCUSDT"]["amount"] == 0  # the duplicate did not trade


async def test_positions_flip_close_position_and_limit_orders(fake):
    async with client_for(fake, adjustForTimeDifference=True) as client:
        fake.set_price("ETHUSDT", 3_000)
        await client.create_order(ETH, "market", "buy", 1.0)
        fake.set_price("ETHUSDT", 3_100)
        await client.create_order(ETH, "market", "sell", 3.0)  # closes 1 (+100) and opens 2 short at 3100
        assert fake.positions["ETHUSDT"]["amount"] == -2.0 and fake.positions["ETHUSDT"]["entry_price"] == 3_100
        assert fake.realized_pnl() == pytest.approx(100.0)

        take = await client.create_order(ETH, "TAKE_PROFIT_MARKET", "buy", None, None,
                                         {"triggerPrice": 2_900, "closePosition": True})
        assert calls(fake, "/fapi/v1/algoOrder", "POST")[-1].params["closePosition"] == "true"
        resting = await client.create_order(ETH, "limit", "sell", 0.5, 3_200)  # adds to the short at 3200
        assert resting["status"] == "open" and fake.orders[int(resting["id"])]["status"] == "NEW"
        fake.set_price("ETHUSDT", 3_250)  # the limit fills at its price, as maker
        assert fake.positions["ETHUSDT"]["amount"] == -2.5
        assert fake.trades[-1]["maker"] is True and fake.trades[-1]["price"] == "3200.00"
        assert fake.positions["ETHUSDT"]["entry_price"] == pytest.approx((2 * 3_100 + 0.5 * 3_200) / 2.5)

        fake.set_price("ETHUSDT", 2_880)  # take-profit closes the whole position at the new price
        assert fake.positions["ETHUSDT"]["amount"] == 0
        assert fake.algo_orders[int(take["id"])]["algoStatus"] == "FINISHED"
        assert fake.realized_pnl() == pytest.approx(100 + 2 * (3_100 - 2_880) + 0.5 * (3_200 - 2_880))
        assert [t["maker"] for t in fake.trades] == [False, False, True, False]
        expected_fees = 0.0004 * (3_000 + 3 * 3_100 + 2.5 * 2_880) + 0.0002 * 0.5 * 3_200
        assert fake.balance == pytest.approx(10_000 + fake.realized_pnl() - expected_fees)

        pending = await client.create_order(ETH, "limit", "buy", 0.1, 2_500, {"clientOrderId": "bid-1"})
        assert [o["id"] for o in await client.fetch_open_orders(ETH)] == [pending["id"]]
        assert (await client.cancel_order(pending["id"], ETH))["status"] == "canceled"
        with pytest.raises(OrderNotFound):
            await client.fetch_order("123", ETH)
        assert (await client.fetch_order("", ETH, {"clientOrderId": "bid-1"}))["status"] == "canceled"


async def test_binance_rejections_become_the_ccxt_exceptions_of_the_real_exchange(fake):
    async with client_for(fake, adjustForTimeDifference=True) as client:
        fake.set_price("BTCUSDT", 60_000)
        with pytest.raises(InvalidOrder, match="-4164"):  # 0.001 BTC = 60 USDT < MIN_NOTIONAL 100
            await client.create_order(BTC, "market", "buy", 0.001)
        await client.set_leverage(1, BTC)
        with pytest.raises(InsufficientFunds, match="-2019"):  # 12 000 USDT at 1x with 10 000
            await client.create_order(BTC, "market", "buy", 0.2)
        with pytest.raises(InvalidOrder, match="-2022"):  # nothing to reduce
            await client.create_order(BTC, "market", "sell", 0.01, None, {"reduceOnly": True})
        await client.create_order(BTC, "market", "buy", 0.01)
        with pytest.raises(OrderImmediatelyFillable, match="-2021"):  # a sell stop above the market
            await client.create_order(BTC, "market", "sell", 0.01, None, {"triggerPrice": 61_000, "reduceOnly": True})
        with pytest.raises(InvalidOrder, match="-4120"):  # conditional types left the order endpoint
            await client.fapiPrivatePostOrder({"symbol": "BTCUSDT", "side": "SELL", "type": "STOP_MARKET",
                                               "quantity": "0.01", "stopPrice": "59000"})
        with pytest.raises(OrderNotFound, match="-2013"):
            await client.fetch_order("42", BTC, {"trigger": True})
        with pytest.raises(OrderNotFound, match="-2011"):
            await client.cancel_order("42", BTC)
        await client.create_order(BTC, "market", "sell", 0.01, None, {"triggerPrice": 59_000, "clientOrderId": "s"})
        with pytest.raises(InvalidOrder, match="-4116"):
            await client.create_order(BTC, "market", "sell", 0.01, None, {"triggerPrice": 58_000, "clientOrderId": "s"})
    assert fake.duplicate_client_ids == ["s"]
    assert len(fake.orders) == 1 and len(fake.algo_orders) == 1 and len(fake.trades) == 1
    assert [r.status for r in calls(fake, "/fapi/v1/order", "POST")] == [400, 400, 400, 200, 400]


async def test_authentication(fake):
    async with client_for(fake, adjustForTimeDifference=True, apiKey="someone-else") as client:
        with pytest.raises(AuthenticationError, match="-2015"):
            await client.fetch_balance()
    async with client_for(fake, adjustForTimeDifference=True, secret="not-the-secret") as client:
        with pytest.raises(AuthenticationError, match="-1022"):
            await client.fetch_balance()
    async with client_for(fake) as client:  # signs with the wall clock, far from the fake's NOW
        with pytest.raises(InvalidNonce, match="-1021"):
            await client.fetch_balance()
        client.options["timeDifference"] = client.milliseconds() - NOW  # what adjustForTimeDifference does
        assert (await client.fetch_balance())["USDT"]["free"] == 10_000
    assert [r.status for r in calls(fake, "/fapi/v3/account")] == [401, 400, 400, 200]

    async with aiohttp.ClientSession() as session:
        query = urlencode({"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET", "quantity": "0.01",
                           "timestamp": fake.server_time_ms()})
        signature = hmac.new(fake.api_secret.encode(), query.encode(), hashlib.sha256).hexdigest()
        url = f"{fake.url}/fapi/v1/order"
        async with session.post(url, data=f"{query}&signature={signature}") as response:
            assert response.status == 401 and (await response.json())["code"] == -2014  # no X-MBX-APIKEY
        tampered = query.replace("quantity=0.01", "quantity=1")
        async with session.post(url, data=f"{tampered}&signature={signature}",
                                headers={"X-MBX-APIKEY": fake.api_key}) as response:
            assert response.status == 400 and (await response.json())["code"] == -1022
            assert response.headers["X-MBX-USED-WEIGHT-1M"] == str(fake.weight_used())
        async with session.post(url, data=f"{query}&signature={signature}",
                                headers={"X-MBX-APIKEY": fake.api_key}) as response:
            assert response.status == 200 and (await response.json())["status"] == "FILLED"
    assert not fake.duplicate_client_ids and len(fake.orders) == 1


FAULTS = [
    # kind, path, the ccxt exception the trading code sees, HTTP status recorded (0 = no answer)
    ("429", "/fapi/v3/account", DDoSProtection, 429),  # binance.handle_errors: DDoSProtection, not RateLimitExceeded
    ("418", "/fapi/v3/account", DDoSProtection, 418),
    ("500_html", "/fapi/v3/account", ExchangeNotAvailable, 500),
    ("503_html", "/fapi/v3/account", ExchangeNotAvailable, 503),
    ("timeout", "/fapi/v3/account", RequestTimeout, None),
    ("reset", "/fapi/v1/order", ExchangeNotAvailable, 0),  # a POST: aiohttp retries GET/DELETE (see below)
    ("-1021", "/fapi/v3/account", InvalidNonce, 400),
    ("-2019", "/fapi/v1/order", InsufficientFunds, 400),
    ("-4164", "/fapi/v1/order", InvalidOrder, 400),
]


@pytest.mark.parametrize(("kind", "path", "error", "status"), FAULTS, ids=[f[0] for f in FAULTS])
async def test_injected_faults_surface_as_ccxt_exceptions(fake, kind, path, error, status):
    fake.set_price("BTCUSDT", 60_000)
    fake.inject(kind, path, retry_after=7, delay=5.0)

    async def call() -> Any:
        if path == "/fapi/v1/order":
            return await client.create_order(BTC, "market", "buy", 0.01)
        return await client.fetch_balance()

    async with client_for(fake, adjustForTimeDifference=True, timeout=1000) as client:  # < 2 s, > load jitter
        await client.load_markets()
        started = time.monotonic()
        with pytest.raises(error) as raised:
            await call()
        assert isinstance(raised.value, NetworkError) == (kind not in ("-2019", "-4164"))
        if kind in ("429", "418"):
            assert client.last_response_headers["Retry-After"] == "7" and f" {kind} " in str(raised.value)
        if kind == "timeout":
            assert time.monotonic() - started < 2
        else:
            assert calls(fake, path)[-1].status == status
        fake.backoff_until = 0.0  # as if a 429's Retry-After had passed
        await call()  # the fault was injected once
    assert len(fake.trades) == (1 if path == "/fapi/v1/order" else 0)


async def test_a_lost_response_still_trades_and_a_blind_retry_is_caught(fake):
    fake.set_price("BTCUSDT", 60_000)
    fake.inject("lost_response", "/fapi/v1/order", method="POST")
    async with client_for(fake, adjustForTimeDifference=True) as client:
        with pytest.raises(NetworkError):
            await client.create_order(BTC, "market", "buy", 0.01, None, {"clientOrderId": "open-1"})
        [order] = fake.orders.values()
        assert (order["clientOrderId"], order["status"]) == ("open-1", "FILLED")
        assert fake.positions["BTCUSDT"]["amount"] == 0.01 and calls(fake, "/fapi/v1/order")[-1].status == 0
        found = await client.fetch_order("", BTC, {"clientOrderId": "open-1"})  # the right way to resolve it
        assert found["status"] == "closed" and found["filled"] == 0.01
        with pytest.raises(InvalidOrder, match="-4116"):  # the wrong way: a blind retry
            await client.create_order(BTC, "market", "buy", 0.01, None, {"clientOrderId": "open-1"})
    assert fake.duplicate_client_ids == ["open-1"] and fake.positions["BTCUSDT"]["amount"] == 0.01


async def test_aiohttp_retries_a_dropped_get_or_delete_once(fake):
    """aiohttp's ClientSession resends an idempotent request (GET, DELETE, ...) once when the connection
    drops without an answer, below ccxt: one reset is invisible, and a cancel can reach Binance twice."""
    fake.set_price("BTCUSDT", 60_000)
    async with client_for(fake, adjustForTimeDifference=True) as client:
        fake.inject("reset", "/fapi/v3/account")
        await client.fetch_balance()
        fake.inject("reset", "/fapi/v3/account", times=2)
        with pytest.raises(ExchangeNotAvailable):
            await client.fetch_balance()
        assert [r.status for r in calls(fake, "/fapi/v3/account")] == [0, 200, 0, 0]

        order = await client.create_order(BTC, "limit", "buy", 0.01, 50_000)
        fake.inject("lost_response", "/fapi/v1/order", method="DELETE")
        with pytest.raises(OrderNotFound, match="-2011"):  # the resent cancel finds nothing left to cancel
            await client.cancel_order(order["id"], BTC)
        assert fake.orders[int(order["id"])]["status"] == "CANCELED"
        assert [r.status for r in calls(fake, "/fapi/v1/order", "DELETE")] == [0, 400]


async def test_request_weight_gives_429_then_a_418_ban(fake):
    fake.weight_limit = 10
    fake.clock = lambda: 6_000.0  # a frozen weight window, 60 s from its end
    async with client_for(fake, enableRateLimit=False) as client:
        for _ in range(10):
            await client.fetch_time()
        assert fake.weight_used() == 10 and client.last_response_headers["X-MBX-USED-WEIGHT-1M"] == "10"
        for _ in range(3):
            with pytest.raises(DDoSProtection, match=" 429 "):
                await client.fetch_time()
            assert client.last_response_headers["Retry-After"] == "60"
        with pytest.raises(DDoSProtection, match=" 418 "):
            await client.fetch_time()
        assert client.last_response_headers["Retry-After"] == str(fake.ban_seconds)
        assert fake.banned_until > time.monotonic() + 100
        assert fake.ignored_retry_after == 3  # the requests after the first 429 did not wait for its Retry-After
        fake.clock = lambda: 6_060.0  # a new minute does not lift a ban
        with pytest.raises(DDoSProtection, match=" 418 "):
            await client.fetch_time()
        fake.banned_until = time.monotonic() - 1  # the ban has run out
        await client.fetch_time()
        assert fake.weight_used() == 1
    assert [r.status for r in fake.requests] == [200] * 10 + [429] * 3 + [418, 418, 200]
    assert [r.weight for r in fake.requests] == [1] * 10 + [0] * 5 + [1]


async def test_market_data_account_views_weights_and_latency(fake):
    fake.clock = lambda: 6_000.0  # one weight window for the whole test
    async with client_for(fake, adjustForTimeDifference=True, rateLimit=5,  # ccxt would wait 40 × 50 ms for openOrders
                          options={"warnOnFetchOpenOrdersWithoutSymbol": False}) as client:
        ticker = await client.fetch_ticker(BTC)
        assert ticker["last"] == fake.price("BTCUSDT")
        fake.set_price("BTCUSDT", 61_234.56)
        assert fake.price("BTCUSDT") == 61_234.6  # on the tick grid
        assert (await client.fetch_ticker(BTC))["last"] == 61_234.6
        tiers = await client.fetch_leverage_tiers([BTC])
        assert tiers[BTC][0]["maxLeverage"] == 125 and tiers[BTC][0]["maxNotional"] == 50_000
        await client.fetch_ohlcv(BTC, "1m", limit=50)
        await client.fetch_ohlcv(BTC, "1m", limit=1000)
        await client.fetch_open_orders()
        await client.fetch_open_orders(BTC)
        await client.create_order(BTC, "market", "sell", 0.01)
        [position] = await client.fetch_positions()
        assert position["side"] == "short" and position["marginMode"] == "cross"
        assert position["unrealizedPnl"] == pytest.approx(0.0)
        fake.set_price("BTCUSDT", 60_234.6)
        balance = await client.fetch_balance()
        assert balance["USDT"]["total"] == pytest.approx(fake.balance + 10.0)  # wallet + unrealized PnL
        assert balance["USDT"]["used"] == pytest.approx(0.01 * 60_234.6 / 20)  # default leverage 20x

        fake.latency_ms = 150
        started = time.monotonic()
        await client.fetch_time()
        assert time.monotonic() - started >= 0.15
    weights = {(r.method, r.path, r.params.get("limit"), "symbol" in r.params): r.weight for r in fake.requests}
    assert weights[("GET", "/fapi/v1/klines", "50", True)] == 1
    assert weights[("GET", "/fapi/v1/klines", "1000", True)] == 5
    assert weights[("GET", "/fapi/v1/openOrders", None, False)] == 40
    assert weights[("GET", "/fapi/v1/openOrders", None, True)] == 1
    assert weights[("GET", "/fapi/v3/positionRisk", None, False)] == 5
    assert weights[("GET", "/fapi/v3/account", None, False)] == 5
    assert weights[("GET", "/fapi/v1/ticker/24hr", None, True)] == 1
    assert weights[("POST", "/fapi/v1/order", None, True)] == 1
    assert fake.weight_used() == sum(r.weight for r in fake.requests)


@pytest.mark.parametrize("code", [-1000, -1001, -1006, -1007, -1008])
@pytest.mark.parametrize("executed", [False, True])
async def test_server_errors_leave_the_outcome_unknown_to_ccxt(fake, code, executed):
    """Binance's 10xx server errors reach ccxt as OperationFailed (-1007 as RequestTimeout, a NetworkError):
    neither an ExchangeError nor, but for -1007, a NetworkError. "_executed": the order went through."""
    fake.set_price("BTCUSDT", 60_000)
    fake.inject(f"{code}_executed" if executed else str(code), "/fapi/v1/order", method="POST")
    async with client_for(fake, adjustForTimeDifference=True) as client:
        with pytest.raises(OperationFailed) as raised:
            await client.create_order(BTC, "market", "buy", 0.01, None, {"clientOrderId": "open-1"})
        assert not isinstance(raised.value, ExchangeError)
        assert isinstance(raised.value, NetworkError) == (code == -1007) and str(code) in str(raised.value)
        assert calls(fake, "/fapi/v1/order")[-1].status >= 500
    assert len(fake.orders) == (1 if executed else 0)


async def test_an_injection_can_pick_requests_by_their_params_and_spells_without_protection_are_measured(fake):
    fake.set_price("BTCUSDT", 60_000)
    target_fault = fake.inject("-1000", "/fapi/v1/algoOrder", method="POST",
                               match=lambda p: p.get("type") == "TAKE_PROFIT_MARKET")
    async with client_for(fake, adjustForTimeDifference=True) as client:
        await client.create_order(BTC, "market", "buy", 0.01, None, {"clientOrderId": "entry-1"})
        assert list(fake.unprotected_since) == ["BTCUSDT"] and fake.unprotected_spells == []
        await client.create_order(BTC, "market", "sell", 0.01, None,
                                  {"triggerPrice": 59_000, "reduceOnly": True, "clientOrderId": "sl-1"})
        assert target_fault.answered_at is None, "the stop is not the request it picks"
        with pytest.raises(OperationFailed):
            await client.create_order(BTC, "market", "sell", 0.01, None,
                                      {"takeProfitPrice": 62_000, "reduceOnly": True, "clientOrderId": "tp-1"})
        assert target_fault.answered_at is not None and list(fake.unprotected_since) == ["BTCUSDT"]
        await client.create_order(BTC, "market", "sell", 0.01, None,
                                  {"takeProfitPrice": 62_000, "reduceOnly": True, "clientOrderId": "tp-1"})
        [(symbol, seconds)] = fake.unprotected_spells
        assert symbol == "BTCUSDT" and 0 < seconds == fake.longest_unprotected_s() and fake.unprotected_since == {}
        await client.create_order(BTC, "market", "buy", 0.01, None, {"clientOrderId": "entry-2"})
        assert list(fake.unprotected_since) == ["BTCUSDT"], "orders for half the size do not protect it"
        fake.set_price("BTCUSDT", 58_900)  # the stop closes half: the take-profit alone does not protect the rest
        assert fake.positions["BTCUSDT"]["amount"] == pytest.approx(0.01) and list(fake.unprotected_since) == ["BTCUSDT"]
        await client.create_order(BTC, "market", "sell", 0.01, None,
                                  {"triggerPrice": 58_000, "reduceOnly": True, "clientOrderId": "sl-2"})
    assert len(fake.unprotected_spells) == 2 and fake.unprotected_since == {}
