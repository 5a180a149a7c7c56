"""A loopback fake of Binance USDⓈ-M futures (fapi) for the real ccxt client to talk to over HTTP.

Public market data so far: server time, exchangeInfo, klines. Candles come from the project's
deterministic synthetic market, computed from the fake's clock, so a test knows what the exchange
"traded". Binds 127.0.0.1 on a free port; start() / stop() inside the test.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from aiohttp import web

from trading_bot.synthetic import synthetic_candles
from trading_bot.timeframes import TIMEFRAME_MS, last_closed_open_ms

MARKETS = {
    # exchange id -> (base, quote, tick size, step size, min qty, min notional)
    "BTCUSDT": ("BTC", "USDT", "0.10", "0.001", "0.001", "100"),
    "ETHUSDT": ("ETH", "USDT", "0.01", "0.001", "0.001", "20"),
    "SOLUSDT": ("SOL", "USDT", "0.0100", "1", "1", "5"),
}


def market_info(symbol: str, spec: tuple[str, str, str, str, str, str]) -> dict:
    base, quote, tick, step, min_qty, min_notional = spec
    return {
        "symbol": symbol, "pair": symbol, "contractType": "PERPETUAL", "deliveryDate": 4133404800000,
        "onboardDate": 1569398400000, "status": "TRADING", "maintMarginPercent": "2.5000",
        "requiredMarginPercent": "5.0000", "baseAsset": base, "quoteAsset": quote, "marginAsset": quote,
        "pricePrecision": 2, "quantityPrecision": 3, "baseAssetPrecision": 8, "quotePrecision": 8,
        "underlyingType": "COIN", "underlyingSubType": ["PoW"], "settlePlan": 0, "triggerProtect": "0.0500",
        "liquidationFee": "0.012500", "marketTakeBound": "0.05", "maxMoveOrderLimit": 10000,
        "filters": [
            {"filterType": "PRICE_FILTER", "minPrice": "0.01", "maxPrice": "4529764", "tickSize": tick},
            {"filterType": "LOT_SIZE", "maxQty": "1000", "minQty": min_qty, "stepSize": step},
            {"filterType": "MARKET_LOT_SIZE", "maxQty": "120", "minQty": min_qty, "stepSize": step},
            {"filterType": "MAX_NUM_ORDERS", "limit": 200},
            {"filterType": "MAX_NUM_ALGO_ORDERS", "limit": 10},
            {"filterType": "MIN_NOTIONAL", "notional": min_notional},
            {"filterType": "PERCENT_PRICE", "multiplierUp": "1.0500", "multiplierDown": "0.9500",
             "multiplierDecimal": "4"},
        ],
        "orderTypes": ["LIMIT", "MARKET", "STOP", "STOP_MARKET", "TAKE_PROFIT", "TAKE_PROFIT_MARKET",
                       "TRAILING_STOP_MARKET"],
        "timeInForce": ["GTC", "IOC", "FOK", "GTX", "GTD"],
    }


def _error(status: int, code: int, msg: str) -> web.Response:
    return web.json_response({"code": code, "msg": msg}, status=status)


@dataclass
class FakeBinance:
    now_ms: Callable[[], int] = field(default=lambda: int(time.time() * 1000))
    seed: int = 99
    requests: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    _runner: web.AppRunner | None = None
    port: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def candles(self, symbol: str, interval: str, start: int, end: int):
        """Closed and forming candles with open time in [start, end], continuous from a fixed origin."""
        tf = TIMEFRAME_MS[interval]
        origin = last_closed_open_ms(self.now_ms(), tf) - 5000 * tf
        first = max(origin, (start + tf - 1) // tf * tf)
        last = min(end // tf * tf, last_closed_open_ms(self.now_ms(), tf) + tf)
        if last < first:
            return []
        # Generate from the origin so every request sees the same path.
        rows = synthetic_candles(symbol.replace("USDT", "/USDT:USDT"), tf, origin, (last - origin) // tf + 1, None,
                                 self.seed)
        return [row for row in rows.tolist() if row[0] >= first]

    # --- handlers ------------------------------------------------------------------------------

    async def time(self, request: web.Request) -> web.Response:
        return web.json_response({"serverTime": self.now_ms()})

    async def exchange_info(self, request: web.Request) -> web.Response:
        return web.json_response({
            "timezone": "UTC", "serverTime": self.now_ms(), "futuresType": "U_MARGINED",
            "rateLimits": [
                {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": 2400},
                {"rateLimitType": "ORDERS", "interval": "MINUTE", "intervalNum": 1, "limit": 1200},
            ],
            "exchangeFilters": [],
            "assets": [{"asset": "USDT", "marginAvailable": True, "autoAssetExchange": "-10000"}],
            "symbols": [market_info(s, spec) for s, spec in MARKETS.items()],
        })

    async def klines(self, request: web.Request) -> web.Response:
        q = request.query
        symbol, interval = q.get("symbol", ""), q.get("interval", "")
        if symbol not in MARKETS:
            return _error(400, -1121, "Invalid symbol.")
        if interval not in TIMEFRAME_MS:
            return _error(400, -1120, "Invalid interval.")
        limit = min(int(q.get("limit", 500)), 1500)
        tf = TIMEFRAME_MS[interval]
        now = self.now_ms()
        if "startTime" in q:
            start = int(q["startTime"])
            end = int(q.get("endTime", start + (limit - 1) * tf))
            rows = self.candles(symbol, interval, start, end)[:limit]
        else:
            end = int(q.get("endTime", now))
            rows = self.candles(symbol, interval, end - limit * tf, end)[-limit:]
        body = [[int(r[0]), f"{r[1]:.8f}", f"{r[2]:.8f}", f"{r[3]:.8f}", f"{r[4]:.8f}", f"{r[5]:.3f}",
                 int(r[0]) + tf - 1, f"{r[4] * r[5]:.4f}", 100, f"{r[5] / 2:.3f}", f"{r[4] * r[5] / 2:.4f}", "0"]
                for r in rows]
        return web.json_response(body)

    # --- lifecycle -----------------------------------------------------------------------------

    @web.middleware
    async def _record(self, request: web.Request, handler):
        self.requests.append((request.path, dict(request.query)))
        return await handler(request)

    async def start(self) -> FakeBinance:
        app = web.Application(middlewares=[self._record])
        app.router.add_get("/fapi/v1/time", self.time)
        app.router.add_get("/fapi/v1/exchangeInfo", self.exchange_info)
        app.router.add_get("/fapi/v1/klines", self.klines)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
