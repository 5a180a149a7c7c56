"""A loopback fake of Binance USDⓈ-M futures (fapi) for the real ccxt client to talk to over HTTP.

Public market data (server time, exchangeInfo, klines, the 24h ticker with volumes a test can set) and the private trading API:
signed requests (API key, HMAC-SHA256, timestamp/recvWindow), one-way positions with leverage and
isolated/crossed margin, market and limit orders, conditional (algo) orders that trigger when
set_price() crosses them, fills with fees and realized PnL, funding-rate history and the funding
fees it books for open positions at each funding moment its clock passes (with the fills' realized
PnL and commissions, in the income history), request weight per IP (other clients' included) with
429 + Retry-After and a 418 ban for going on over the limit or not waiting for Retry-After, and
injectable faults. Request and response shapes follow Binance's documented ones (numbers as strings),
so ccxt 4.5's binanceusdm parses them as it parses the real exchange's.

Candles come from the project's deterministic synthetic market, computed from the fake's clock, so a
test knows what the exchange "traded". Binds 127.0.0.1 on a free port; start() / stop() inside the
test. Nothing runs in the background: state only changes when a request arrives or the test calls a
method (set_price, inject, ...) — except, once a websocket or a listen key exists, the websocket
side's pump (fake_binance_ws.py: market and user data streams; the ws_* hooks below).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import math
import re
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any, NamedTuple
from urllib.parse import parse_qsl

from aiohttp import web

from fakes.fake_binance_ws import FakeBinanceWs
from fakes.loopback import serve_on_loopback
from trading_bot.domain.timeframes import TIMEFRAME_MS, last_closed_open_ms
from trading_bot.marketdata.synthetic import synthetic_candles

MARKETS = {
    # exchange id -> (base, quote, tick size, step size, min qty, min notional)
    "BTCUSDT": ("BTC", "USDT", "0.10", "0.001", "0.001", "100"),
    "ETHUSDT": ("ETH", "USDT", "0.01", "0.001", "0.001", "20"),
    "SOLUSDT": ("SOL", "USDT", "0.0100", "1", "1", "5"),
}
MARKET_MAX_QTY = "120"  # MARKET_LOT_SIZE maxQty
LIMIT_MAX_QTY = "1000"  # LOT_SIZE maxQty
MAX_ALGO_ORDERS = 10  # MAX_NUM_ALGO_ORDERS per symbol

# Notional and leverage brackets: (notional cap, max leverage, maintenance margin ratio). The floor
# of a bracket is the previous cap; `cum` (maintenance amount) is derived below as Binance defines it.
BRACKETS = {
    "BTCUSDT": [(50_000, 125, 0.004), (250_000, 100, 0.005), (3_000_000, 50, 0.01), (20_000_000, 20, 0.025),
                (40_000_000, 10, 0.05)],
    "ETHUSDT": [(100_000, 125, 0.005), (250_000, 100, 0.0065), (2_000_000, 50, 0.01), (15_000_000, 20, 0.02),
                (30_000_000, 10, 0.05)],
    "SOLUSDT": [(5_000, 75, 0.005), (50_000, 50, 0.01), (600_000, 25, 0.025), (3_000_000, 20, 0.05),
                (12_000_000, 10, 0.1)],
}
DEFAULT_LEVERAGE = 20


def add_markets(symbol_ids: list[str]) -> None:
    """More perpetuals shaped like SOLUSDT (for tests and benchmarks with hundreds of bots)."""
    for symbol_id in symbol_ids:
        if symbol_id not in MARKETS:
            MARKETS[symbol_id] = (symbol_id.removesuffix("USDT"), "USDT", "0.0100", "1", "1", "5")
            BRACKETS[symbol_id] = BRACKETS["SOLUSDT"]
CLIENT_ID_RE = re.compile(r"^[.A-Z:/a-z0-9_-]{1,36}$")
API_KEY_RE = re.compile(r"^[A-Za-z0-9_-]{1,128}$")
CONDITIONAL_TYPES = ("STOP", "STOP_MARKET", "TAKE_PROFIT", "TAKE_PROFIT_MARKET", "TRAILING_STOP_MARKET")
# Binance's 10xx server-side errors (HTTP 5xx: "execution status UNKNOWN"), as documented. Kind "-1001"
# answers one without executing the request; "-1001_executed" executes it, then answers the error.
SERVER_ERRORS = {
    -1000: (500, "An unknown error occured while processing the request."),
    -1001: (500, "Internal error; unable to process your request. Please try again."),
    -1006: (500, "An unexpected response was received from the message bus. Execution status unknown."),
    -1007: (503, "Timeout waiting for response from backend server. Send status unknown; execution status unknown."),
    -1008: (503, "Server is currently overloaded with other requests. Please try again in a few minutes."),
}
# Binance's documented refusals a test may inject: (HTTP status, message). -1125 is what the listen key
# endpoints answer for a key that no longer exists, -2015 what any keyed request gets for a refused key.
REFUSALS = {
    -1021: (400, "Timestamp for this request is outside of the recvWindow."),
    -2019: (400, "Margin is insufficient."),
    -1125: (400, "This listenKey does not exist."),
    -2015: (401, "Invalid API-key, IP, or permissions for action."),
}
FAULT_KINDS = ("429", "418", "500_html", "503_html", "timeout", "reset", "lost_response", "-4164",
               *(str(code) for code in REFUSALS),
               *(f"{code}{executed}" for code in SERVER_ERRORS for executed in ("", "_executed")))
ALL_DONE = {"code": 200, "msg": "The operation of cancel all open order is done."}
QUARTERLY_DELIVERY_MS = 1798185600000  # 2026-12-25 08:00 UTC (list_market's quarterly futures)
ONBOARD_MS = 1569398400000  # exchangeInfo's onboardDate: the default funding history starts here
FUNDING_INTERVAL_MS = 8 * 3_600_000
DAY_MS = 86_400_000
# GET /fapi/v1/income: the types Binance documents (any other is refused).
INCOME_TYPES = ("TRANSFER", "WELCOME_BONUS", "REALIZED_PNL", "FUNDING_FEE", "COMMISSION", "INSURANCE_CLEAR",
                "REFERRAL_KICKBACK", "COMMISSION_REBATE", "API_REBATE", "CONTEST_REWARD", "CROSS_COLLATERAL_TRANSFER",
                "OPTIONS_PREMIUM_FEE", "OPTIONS_SETTLE_PROFIT", "INTERNAL_TRANSFER", "AUTO_EXCHANGE",
                "DELIVERED_SETTELMENT", "COIN_SWAP_DEPOSIT", "COIN_SWAP_WITHDRAW", "POSITION_LIMIT_INCREASE_FEE",
                "STRATEGY_UMFUTURES_TRANSFER", "FEE_RETURN", "BFUSD_REWARD")


def market_info(symbol: str, spec: tuple[str, str, str, str, str, str], *, contract_type: str = "PERPETUAL",
                status: str = "TRADING") -> dict:
    base, quote, tick, step, min_qty, min_notional = spec
    # A perpetual's deliveryDate is Binance's 2100-12-25 (ccxt reads that as "no expiry"); a quarterly's its own.
    delivery = 4133404800000 if contract_type == "PERPETUAL" else QUARTERLY_DELIVERY_MS
    return {
        "symbol": symbol, "pair": symbol.partition("_")[0], "contractType": contract_type, "deliveryDate": delivery,
        "onboardDate": 1569398400000, "status": status, "maintMarginPercent": "2.5000",
        "requiredMarginPercent": "5.0000", "baseAsset": base, "quoteAsset": quote, "marginAsset": quote,
        "pricePrecision": 2, "quantityPrecision": 3, "baseAssetPrecision": 8, "quotePrecision": 8,
        "underlyingType": "COIN", "underlyingSubType": ["PoW"], "settlePlan": 0, "triggerProtect": "0.0500",
        "liquidationFee": "0.012500", "marketTakeBound": "0.05", "maxMoveOrderLimit": 10000,
        "filters": [
            {"filterType": "PRICE_FILTER", "minPrice": "0.01", "maxPrice": "4529764", "tickSize": tick},
            {"filterType": "LOT_SIZE", "maxQty": LIMIT_MAX_QTY, "minQty": min_qty, "stepSize": step},
            {"filterType": "MARKET_LOT_SIZE", "maxQty": MARKET_MAX_QTY, "minQty": min_qty, "stepSize": step},
            {"filterType": "MAX_NUM_ORDERS", "limit": 200},
            {"filterType": "MAX_NUM_ALGO_ORDERS", "limit": MAX_ALGO_ORDERS},
            {"filterType": "MIN_NOTIONAL", "notional": min_notional},
            {"filterType": "PERCENT_PRICE", "multiplierUp": "1.0500", "multiplierDown": "0.9500",
             "multiplierDecimal": "4"},
        ],
        "orderTypes": ["LIMIT", "MARKET", "STOP", "STOP_MARKET", "TAKE_PROFIT", "TAKE_PROFIT_MARKET",
                       "TRAILING_STOP_MARKET"],
        "timeInForce": ["GTC", "IOC", "FOK", "GTX", "GTD"],
    }


def brackets(symbol: str) -> list[dict]:
    """Binance's leverageBracket entries for one symbol."""
    out, floor, cum, prev_mmr = [], 0, 0.0, 0.0
    for i, (cap, max_leverage, mmr) in enumerate(BRACKETS[symbol], start=1):
        cum += floor * (mmr - prev_mmr)
        out.append({"bracket": i, "initialLeverage": max_leverage, "notionalCap": cap, "notionalFloor": floor,
                    "maintMarginRatio": mmr, "cum": round(cum, 8)})
        floor, prev_mmr = cap, mmr
    return out


def _decimals(step: str) -> int:
    return max(0, -Decimal(step).normalize().as_tuple().exponent)  # type: ignore[operator]


def _html(status: int, reason: str) -> web.Response:
    body = f"<html>\r\n<head><title>{status} {reason}</title></head>\r\n<body>\r\n<center><h1>{status} {reason}" \
           f"</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
    return web.Response(status=status, text=body, content_type="text/html")


class BinanceError(Exception):
    """An error answer: HTTP status plus Binance's {"code", "msg"} body."""

    def __init__(self, status: int, code: int, msg: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(f"{status} {code} {msg}")
        self.status, self.code, self.msg, self.headers = status, code, msg, headers or {}


def _reject(code: int, msg: str, status: int = 400) -> BinanceError:
    return BinanceError(status, code, msg)


class RecordedRequest(NamedTuple):
    method: str
    path: str
    params: dict[str, str]  # query string and form body, decoded (signature and timestamp included)
    weight: int  # request weight charged (0 when rejected before the weight check)
    status: int  # HTTP status answered; 0 when the connection was dropped without an answer
    time: float  # time.monotonic() when the request arrived


@dataclass
class Injection:
    kind: str
    path: str
    method: str | None
    times: int
    retry_after: int
    delay: float
    match: Callable[[dict[str, str]], bool] | None = None  # only requests whose params it accepts
    answered_at: float | None = None  # time.monotonic() when the faulted request was answered (or dropped)


@dataclass(frozen=True)
class Endpoint:
    handler: Callable[[dict[str, str]], Any]
    signed: bool
    weight: Callable[[dict[str, str]], int]
    funding_limited: bool = False  # counts against the funding endpoints' own limit (500 per 5 minutes per IP)
    keyed: bool = False  # USER_STREAM: the API key header, no signature (the listen key endpoints)


def _fixed(n: int) -> Callable[[dict[str, str]], int]:
    return lambda params: n


def _by_symbol(with_symbol: int, without: int) -> Callable[[dict[str, str]], int]:
    return lambda params: with_symbol if params.get("symbol") else without


def _klines_weight(params: dict[str, str]) -> int:
    try:
        limit = int(params.get("limit", 500))
    except ValueError:
        limit = 500
    return 1 if limit < 100 else 2 if limit < 500 else 5 if limit <= 1000 else 10


class FakeBinance:
    """Binance USDⓈ-M futures on 127.0.0.1. See the module docstring; attributes are the test's view."""

    def __init__(self, now_ms: Callable[[], int] | None = None, seed: int = 99, api_key: str = "fake-key",
                 api_secret: str = "fake-secret", balance: float = 10_000.0, fee_rate: float = 0.0004,
                 weight_limit: int = 2400, maker_fee_rate: float = 0.0002) -> None:
        self.now_ms: Callable[[], int] = now_ms or (lambda: int(time.time() * 1000))
        self.seed = seed
        self.api_key = api_key
        self.api_secret = api_secret
        self.balance = float(balance)
        self.fee_rate = fee_rate
        self.maker_fee_rate = maker_fee_rate
        self.weight_limit = weight_limit
        self.latency_ms = 0.0
        self.clock: Callable[[], float] = time.time  # wall clock of the 1-minute weight windows
        self.window_s = 60.0  # length of a weight window on self.clock (a test may shorten it)
        self.other_clients_weight = 0  # weight other clients on the same IP use in every window
        self.ban_after_429s = 3  # 429 answers in one window before the next over-limit request is banned
        # Requests that arrived while an earlier 429's Retry-After was still running (Binance bans an
        # IP for "failing to back off after receiving 429s"; each one counts as a violation).
        self.ignored_retry_after = 0
        self.ban_seconds = 120
        self.strict_client_ids = True  # False: like Binance, ids only need to be unique among open orders
        self.refuse_entries = False  # True: anything that would open or grow a position gets -2019
        self.lagging_fill_answers = 0  # the next N userTrades answers list nothing yet (the list lags positions)
        self.trigger_fill_parts = 1  # a triggered stop or take-profit market order fills in this many trades
        # Called with (method, path, params) after a request was executed, before it is answered.
        self.on_executed: Callable[[str, str, dict[str, str]], None] | None = None
        self.requests: list[RecordedRequest] = []  # answered ones, as they complete
        self.arrivals: list[tuple[str, str]] = []  # (method, path) of every request, as it arrives
        self.orders: dict[int, dict] = {}
        self.algo_orders: dict[int, dict] = {}
        self.trades: list[dict] = []
        self.duplicate_client_ids: list[str] = []
        # Spells a position went without its protection (a reduce-only stop and take-profit for its full
        # size, or closePosition ones): (symbol, seconds of time.monotonic()), and the open spells' starts.
        self.unprotected_spells: list[tuple[str, float]] = []
        self.unprotected_since: dict[str, float] = {}
        self.positions: dict[str, dict] = {
            s: {"amount": 0.0, "entry_price": 0.0, "leverage": DEFAULT_LEVERAGE, "margin_type": "CROSSED"}
            for s in MARKETS}
        self.banned_until = 0.0
        self.backoff_until = 0.0  # time.monotonic() until which the last 429's Retry-After runs
        self.port = 0
        self._prices: dict[str, float] = {}
        self._price_cache: dict[tuple[str, int], float] = {}
        self._candle_origins: dict[int, int] = {}  # interval ms -> open time of the first candle candles() serves
        self._candle_cache: dict[tuple[str, int], Any] = {}  # (symbol id, interval ms) -> candles from the origin
        self._injections: list[Injection] = []
        self._window = -1
        self._weight_used = 0
        self._over_limit_answers = 0
        self._next_order_id = 8_389_765_000
        self._next_algo_id = 3_000_000_001
        self._next_trade_id = 5_000_000
        self.income: list[dict] = []  # /fapi/v1/income records, as Binance sends them, in time order
        self._next_tran_id = 9_689_322_392
        self._funding_series: dict[str, list[tuple[int, float]]] = {}  # set_funding_rates()
        self._funding_settled_ms = self.now_ms()  # funding is booked for moments after this
        self._charged_marks: dict[tuple[str, int], float] = {}  # (symbol, fundingTime) -> markPrice charged at
        # The symbol universe's view: 24 h quote volumes the ticker reports (symbol id -> USDT; else the
        # synthetic candles' own), exchangeInfo statuses other than TRADING, and markets listed in
        # exchangeInfo and the tickers that are not tradeable here (list_market).
        self.quote_volumes: dict[str, float] = {}
        self.market_status: dict[str, str] = {}
        self.listed_only: dict[str, tuple[tuple[str, str, str, str, str, str], str]] = {}
        self.funding_rate_limit = 500  # requests to /fapi/v1/fundingRate (and fundingInfo) per window ...
        self.funding_window_s = 300.0  # ... of five minutes, on self.clock
        self._funding_window = -1
        self._funding_requests = 0
        self._position_update_ms = dict.fromkeys(MARKETS, 0)
        self._balance_update_ms = 0
        self._anchor: tuple[int, float] | None = None
        self._closing: asyncio.Event | None = None
        self._inflight: set[asyncio.Future] = set()
        self._runner: web.AppRunner | None = None
        self._endpoints = self._build_endpoints()
        self.ws = FakeBinanceWs(self)

    # --- the test's controls ------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        """The websocket base, as ccxt.pro's urls['api']['ws']['linear'] (it adds /market, /private)."""
        return f"ws://127.0.0.1:{self.port}/ws"

    def ws_drop(self) -> int:
        """Cut every websocket connection now (no close frame); how many were cut."""
        return self.ws.drop()

    def ws_stall(self, seconds: float | None = None, *, answer_pings: bool = False) -> None:
        """Stop sending on every websocket without closing, for `seconds` or until ws_release()."""
        self.ws.stall(seconds, answer_pings=answer_pings)

    def ws_release(self) -> None:
        self.ws.release()

    def ws_expire_listen_key(self) -> None:
        self.ws.expire_listen_key()

    async def ws_flush(self) -> None:
        """Until the events put on the websockets so far have been written and the client had a moment
        to read them (a test's clock jumps where a real client would have had them in milliseconds)."""
        await self.ws.flush()

    def price(self, symbol_id: str) -> float:
        """The current trade/mark price: the last set_price(), else synthetic_price()."""
        if symbol_id in self._prices:
            return self._prices[symbol_id]
        return self.synthetic_price(symbol_id)

    def clear_price(self, symbol_id: str) -> None:
        """Back to the synthetic path after set_price()."""
        self._prices.pop(symbol_id, None)

    def synthetic_price(self, symbol_id: str) -> float:
        """The close of the last closed synthetic 1m candle at now, on the tick grid."""
        last = last_closed_open_ms(self.now_ms(), 60_000)
        key = (symbol_id, last)
        if key not in self._price_cache:
            rows = self.candles(symbol_id, "1m", last, last)
            self._price_cache[key] = self._round_price(symbol_id, float(rows[-1][4]))
        return self._price_cache[key]

    def set_price(self, symbol_id: str, price: float) -> None:
        """Move the market; conditional orders the new price crosses trigger and resting limit orders
        it reaches fill, in id order."""
        if symbol_id not in MARKETS:
            raise KeyError(symbol_id)
        self._settle_funding()  # funding moments already passed were charged at the price before this move
        self._prices[symbol_id] = self._round_price(symbol_id, price)
        self._match(symbol_id)
        self._note_protection()

    def set_quote_volume(self, symbol_id: str, usdt: float) -> None:
        """What GET /fapi/v1/ticker/24hr reports as the symbol's 24 h quote volume from now on."""
        if symbol_id not in MARKETS and symbol_id not in self.listed_only:
            raise KeyError(symbol_id)
        self.quote_volumes[symbol_id] = float(usdt)

    def set_market_status(self, symbol_id: str, status: str) -> None:
        """exchangeInfo's status for the symbol (Binance: PENDING_TRADING, TRADING, PRE_SETTLE, SETTLING,
        CLOSE, …; ccxt calls a market active only while TRADING)."""
        if symbol_id not in MARKETS:
            raise KeyError(symbol_id)
        self.market_status[symbol_id] = status

    def list_market(self, symbol_id: str, base: str, quote: str, contract_type: str = "PERPETUAL") -> None:
        """A market this fake lists (exchangeInfo, the 24 h tickers) but does not trade: a USDC
        perpetual, a quarterly future (symbol id like BTCUSDT_261225) … for the universe's filter."""
        self.listed_only[symbol_id] = ((base, quote, "0.10", "0.001", "0.001", "5"), contract_type)

    def inject(self, kind: str, path: str, *, method: str | None = None, times: int = 1, retry_after: int = 2,
               delay: float = 30.0, match: Callable[[dict[str, str]], bool] | None = None) -> Injection:
        """Answer the next `times` requests to `path` ("*" = any; optionally only `method`, only those whose
        params `match` accepts) with a fault (FAULT_KINDS; "-1001" answers Binance's -1001 without
        executing, "-1001_executed" after executing). The Injection returned tells when it was used."""
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; one of {FAULT_KINDS}")
        injection = Injection(kind, path, method.upper() if method else None, times, retry_after, delay, match)
        self._injections.append(injection)
        return injection

    def longest_unprotected_s(self) -> float:
        """The longest spell any position went without its stop and target, open spells included."""
        now = time.monotonic()
        return max([s for _, s in self.unprotected_spells] + [now - t for t in self.unprotected_since.values()],
                   default=0.0)

    def realized_pnl(self) -> float:
        return sum(float(t["realizedPnl"]) for t in self.trades)

    def funding_fees(self) -> float:
        """Every funding fee booked so far (positive: received)."""
        return sum(float(r["income"]) for r in self.income if r["incomeType"] == "FUNDING_FEE")

    def set_funding_rates(self, symbol_id: str, records: list[tuple[int, float]]) -> None:
        """Replace the symbol's funding history with these (fundingTime ms, rate) records: the moments
        /fapi/v1/fundingRate lists and the fake charges open positions at (any spacing, e.g. 4 h)."""
        if symbol_id not in MARKETS:
            raise KeyError(symbol_id)
        self._funding_series[symbol_id] = sorted((int(t), float(r)) for t, r in records)

    @staticmethod
    def default_funding_rate(symbol_id: str, grid_ms: int) -> tuple[int, float]:
        """The default history's (fundingTime, rate) at the 8-hour moment grid_ms: stamped 0-19 ms
        late as Binance stamps it, the rate in [-0.005 %, 0.035 %] (mostly positive, as on Binance)."""
        h = zlib.crc32(f"{symbol_id}:{grid_ms}".encode())
        return grid_ms + h % 20, round(0.0001 + ((h >> 8) % 401 - 150) * 1e-6, 8)

    def funding_rates(self, symbol_id: str, after_ms: int, until_ms: int) -> list[tuple[int, float]]:
        """The symbol's funding records with after_ms < fundingTime ≤ until_ms: set_funding_rates()'s, or by
        default one every 8 hours (00:00, 08:00, 16:00 UTC) from the listing on."""
        if symbol_id in self._funding_series:
            return [(t, r) for t, r in self._funding_series[symbol_id] if after_ms < t <= until_ms]
        first = max(ONBOARD_MS, after_ms - 20) // FUNDING_INTERVAL_MS * FUNDING_INTERVAL_MS
        rows = (self.default_funding_rate(symbol_id, g) for g in range(first, until_ms + 1, FUNDING_INTERVAL_MS))
        return [(t, r) for t, r in rows if after_ms < t <= until_ms and t >= ONBOARD_MS]

    def weight_used(self) -> int:
        self._roll_window()
        return self._weight_used

    def set_other_clients_weight(self, weight: int) -> None:
        """Other clients on our IP use `weight` in this window and every later one (the shared count
        X-MBX-USED-WEIGHT-1M reports includes them)."""
        self._roll_window()
        self._weight_used += weight - self.other_clients_weight
        self.other_clients_weight = weight

    def server_time_ms(self) -> int:
        """The exchange's clock: now_ms(), ticking with the wall clock while now_ms() stands still (a
        frozen test clock), so a client that synced with /fapi/v1/time stays inside recvWindow."""
        now, mono = self.now_ms(), time.monotonic()
        if self._anchor is None or self._anchor[0] != now:
            self._anchor = (now, mono)
        return now + int((mono - self._anchor[1]) * 1000)

    def kline_rows(self, symbol: str, interval: str, start: int, end: int) -> list[list]:
        """candles() as Binance's kline arrays (the REST klines' rows; the kline stream's fields too)."""
        tf = TIMEFRAME_MS[interval]
        return [[int(r[0]), f"{r[1]:.8f}", f"{r[2]:.8f}", f"{r[3]:.8f}", f"{r[4]:.8f}", f"{r[5]:.3f}",
                 int(r[0]) + tf - 1, f"{r[4] * r[5]:.4f}", 100, f"{r[5] / 2:.3f}", f"{r[4] * r[5] / 2:.4f}", "0"]
                for r in self.candles(symbol, interval, start, end)]

    def candles(self, symbol: str, interval: str, start: int, end: int):
        """Closed and forming candles with open time in [start, end], continuous from a fixed origin."""
        tf = TIMEFRAME_MS[interval]
        # Fixed at the first request per interval: an origin that moved with the clock re-priced every
        # candle (the walk starts at the origin), so a candle fetched later differed from one pushed earlier.
        origin = self._candle_origins.setdefault(tf, last_closed_open_ms(self.now_ms(), tf) - 5000 * tf)
        first = max(origin, (start + tf - 1) // tf * tf)
        last = min(end // tf * tf, last_closed_open_ms(self.now_ms(), tf) + tf)
        if last < first:
            return []
        # Generate from the origin so every request sees the same path; kept and grown (doubling) so a
        # clock run of weeks does not regenerate weeks of candles per request. A longer walk of the same
        # seed starts with the shorter one (checked where it is regrown).
        count = (last - origin) // tf + 1
        key = (symbol, tf)
        rows = self._candle_cache.get(key)
        if rows is None or rows.shape[0] < count:
            grown = synthetic_candles(symbol.replace("USDT", "/USDT:USDT"), tf, origin,
                                      max(count, 2 * (rows.shape[0] if rows is not None else 0)), None, self.seed)
            assert rows is None or (grown[: rows.shape[0]] == rows).all()
            self._candle_cache[key] = rows = grown
        lo = (first - origin) // tf
        return rows[lo:count].tolist()

    # --- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> FakeBinance:
        self._closing = asyncio.Event()
        app = web.Application()
        self.ws.add_routes(app)
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        self._runner, self.port = await serve_on_loopback(app)
        return self

    async def stop(self) -> None:
        if self._closing is not None:
            self._closing.set()  # ends injected delays and latency sleeps at once
        await self.ws.close()
        if self._inflight:
            await asyncio.gather(*self._inflight, return_exceptions=True)
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _sleep(self, seconds: float) -> None:
        if seconds <= 0 or self._closing is None:
            return
        try:
            await asyncio.wait_for(self._closing.wait(), seconds)
        except TimeoutError:
            pass

    # --- request pipeline ----------------------------------------------------------------------

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        arrived = time.monotonic()
        method, path = request.method, request.path
        self.arrivals.append((method, path))
        raw_query = request.raw_path.partition("?")[2]
        raw_body = await request.text() if request.can_read_body else ""
        params = dict(parse_qsl(raw_query, keep_blank_values=True))
        params.update(parse_qsl(raw_body, keep_blank_values=True))
        # Like a real exchange, a request keeps going when the client stops waiting for the answer.
        served = asyncio.ensure_future(self._serve(request, method, path, params, raw_query, raw_body))
        self._inflight.add(served)
        served.add_done_callback(self._inflight.discard)
        served.add_done_callback(lambda task: self._record(task, method, path, params, arrived))
        response, _ = await asyncio.shield(served)
        if response is None:
            return self._drop(request)
        response.headers["X-MBX-USED-WEIGHT-1M"] = str(self._weight_used)
        return response

    def _record(self, task: asyncio.Future, method: str, path: str, params: dict[str, str], arrived: float) -> None:
        response, weight = (None, 0) if task.cancelled() or task.exception() else task.result()
        status = response.status if response is not None else 0
        self.requests.append(RecordedRequest(method, path, params, weight, status, arrived))

    async def _serve(self, request: web.Request, method: str, path: str, params: dict[str, str], raw_query: str,
                     raw_body: str) -> tuple[web.Response | None, int]:
        """(response or None for a dropped connection, weight charged)."""
        arrived = time.monotonic()
        if self.latency_ms:
            await self._sleep(self.latency_ms / 1000)
        self._roll_window()
        if self.banned_until:
            remaining = self.banned_until - time.monotonic()
            if remaining > 0:
                return self._banned(math.ceil(remaining)), 0
            self.banned_until = self.backoff_until = 0.0  # a ban outlasts the back-off before it
        if arrived < self.backoff_until:  # the client did not wait for Retry-After: a violation
            self.ignored_retry_after += 1
            try:
                self._violation(math.ceil(self.backoff_until - arrived))
            except BinanceError as e:
                return self._json_error(e.status, e.code, e.msg, int(e.headers["Retry-After"])), 0
        endpoint = self._endpoints.get((method, path))
        if endpoint is None:
            return web.Response(status=404, text=""), 0
        injection = self._take_injection(method, path, params)
        if injection is not None:
            try:
                return await self._serve_faulted(request, endpoint, injection, params, raw_query, raw_body)
            finally:
                injection.answered_at = time.monotonic()
        return self._execute(request, endpoint, None, params, raw_query, raw_body)

    async def _serve_faulted(self, request: web.Request, endpoint: Endpoint, injection: Injection,
                             params: dict[str, str], raw_query: str, raw_body: str) -> tuple[web.Response | None, int]:
        answer = await self._fault(injection, params)
        if answer is not False:
            return answer, 0  # type: ignore[return-value]
        return self._execute(request, endpoint, injection.kind, params, raw_query, raw_body)

    def _execute(self, request: web.Request, endpoint: Endpoint, after: str | None, params: dict[str, str],
                 raw_query: str, raw_body: str) -> tuple[web.Response | None, int]:
        """Serve the request; `after` is a fault that comes once it has executed."""
        weight = endpoint.weight(params)
        self._settle_funding()  # the funding moments the clock passed since the last request
        try:
            self._charge(weight)
            if endpoint.funding_limited:
                self._count_funding_request()
            if endpoint.signed:
                self._authenticate(request, params, raw_query, raw_body)
            elif endpoint.keyed:
                self._check_api_key(request)
            body = endpoint.handler(params)
            response = web.json_response(body)
            self._note_protection()
            if self.on_executed is not None:
                self.on_executed(request.method, request.path, params)
        except BinanceError as e:
            response = web.json_response({"code": e.code, "msg": e.msg}, status=e.status, headers=e.headers)
            if e.code == -1003:
                weight = 0
        if after == "lost_response":
            return None, weight
        if after is not None and after.endswith("_executed") and response.status == 200:
            return self._server_error(int(after.removesuffix("_executed"))), weight
        return response, weight

    def _drop(self, request: web.Request) -> web.Response:
        """Close the TCP connection without an answer (the response written after this goes nowhere)."""
        if request.transport is not None:
            request.transport.abort()
        return web.Response(status=500)

    def _note_protection(self) -> None:
        """Open or close the unprotected spells (see unprotected_spells) after anything that may change them."""
        now = time.monotonic()
        for symbol, position in self.positions.items():
            amount = position["amount"]
            covered = set()
            for algo in self.algo_orders.values():
                if (algo["symbol"] == symbol and algo["algoStatus"] == "NEW" and amount
                        and algo["side"] == ("SELL" if amount > 0 else "BUY")
                        and (algo["closePosition"] or (algo["reduceOnly"] and float(algo["quantity"]) >= abs(amount)))):
                    covered.add("stop" if algo["orderType"].startswith("STOP") else "target")
            since = self.unprotected_since.get(symbol)
            if amount and covered != {"stop", "target"}:
                self.unprotected_since.setdefault(symbol, now)
            elif since is not None:
                self.unprotected_spells.append((symbol, now - self.unprotected_since.pop(symbol)))

    def _take_injection(self, method: str, path: str, params: dict[str, str]) -> Injection | None:
        for injection in self._injections:
            if (injection.times > 0 and injection.path in (path, "*") and injection.method in (None, method)
                    and (injection.match is None or injection.match(params))):
                injection.times -= 1
                if injection.times == 0:
                    self._injections.remove(injection)
                return injection
        return None

    async def _fault(self, injection: Injection, params: dict[str, str]) -> web.Response | bool | None:
        """The injected answer; None = drop the connection; False = go on and serve the request."""
        kind = injection.kind
        if kind == "429":
            self.backoff_until = max(self.backoff_until, time.monotonic() + injection.retry_after)
            return self._json_error(429, -1003, "Too many requests; current limit of IP(127.0.0.1) is "
                                    f"{self.weight_limit} requests per minute. Please use the websocket for live "
                                    "updates to avoid polling the API.", injection.retry_after)
        if kind == "418":
            until = self.now_ms() + injection.retry_after * 1000
            return self._json_error(418, -1003, f"Way too many requests; IP(127.0.0.1) banned until {until}. "
                                    "Please use the websocket for live updates to avoid bans.", injection.retry_after)
        if kind == "500_html":
            return _html(500, "Internal Server Error")
        if kind == "503_html":
            return _html(503, "Service Temporarily Unavailable")
        if kind == "reset":
            return None
        if kind == "timeout":
            await self._sleep(injection.delay)
            return False
        if kind == "lost_response" or kind.endswith("_executed"):
            return False
        if kind.lstrip("-").isdigit() and int(kind) in SERVER_ERRORS:
            return self._server_error(int(kind))
        if kind.lstrip("-").isdigit() and int(kind) in REFUSALS:
            status, msg = REFUSALS[int(kind)]
            return self._json_error(status, int(kind), msg)
        spec = MARKETS.get(params.get("symbol", ""))
        minimum = spec[5] if spec else "5"
        return self._json_error(400, -4164, f"Order's notional must be no smaller than {minimum} (unless you "
                                "choose reduce only).")

    def _server_error(self, code: int) -> web.Response:
        status, msg = SERVER_ERRORS[code]
        return self._json_error(status, code, msg)

    def _json_error(self, status: int, code: int, msg: str, retry_after: int | None = None) -> web.Response:
        headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
        return web.json_response({"code": code, "msg": msg}, status=status, headers=headers)

    def _banned(self, retry_after: int) -> web.Response:
        until = self.now_ms() + retry_after * 1000
        return self._json_error(418, -1003, f"Way too many requests; IP(127.0.0.1) banned until {until}. Please "
                                "use the websocket for live updates to avoid bans.", retry_after)

    # --- weight ----------------------------------------------------------------------------------

    def _roll_window(self) -> None:
        window = int(self.clock() // self.window_s)
        if window != self._window:
            self._window, self._weight_used, self._over_limit_answers = window, self.other_clients_weight, 0

    def _charge(self, weight: int) -> None:
        if self._weight_used + weight <= self.weight_limit:
            self._weight_used += weight
            return
        self._violation(max(1, math.ceil(self.window_s - self.clock() % self.window_s)))

    def _count_funding_request(self) -> None:
        """/fapi/v1/fundingRate weighs 0 but shares a limit of its own with /fapi/v1/fundingInfo: 500
        requests per 5 minutes per IP (Binance's docs); past it, a 429 like any other."""
        window = int(self.clock() // self.funding_window_s)
        if window != self._funding_window:
            self._funding_window, self._funding_requests = window, 0
        if self._funding_requests >= self.funding_rate_limit:
            self._violation(max(1, math.ceil(self.funding_window_s - self.clock() % self.funding_window_s)),
                            f"{self.funding_rate_limit} requests per 5 minutes")
        self._funding_requests += 1

    def _violation(self, retry_after: int, limit: str | None = None) -> None:
        """429 with Retry-After; past ban_after_429s violations in one window, a 418 ban instead."""
        self._over_limit_answers += 1
        if self._over_limit_answers > self.ban_after_429s:
            self.banned_until = time.monotonic() + self.ban_seconds
            until = self.now_ms() + self.ban_seconds * 1000
            raise BinanceError(418, -1003, f"Way too many requests; IP(127.0.0.1) banned until {until}. Please use "
                               "the websocket for live updates to avoid bans.", {"Retry-After": str(self.ban_seconds)})
        self.backoff_until = max(self.backoff_until, time.monotonic() + retry_after)
        limit = limit or f"{self.weight_limit} requests per minute"
        raise BinanceError(429, -1003, f"Too many requests; current limit of IP(127.0.0.1) is {limit}. "
                           "Please use the websocket for live updates to avoid polling the API.",
                           {"Retry-After": str(retry_after)})

    # --- authentication --------------------------------------------------------------------------

    def _check_api_key(self, request: web.Request) -> None:
        key = request.headers.get("X-MBX-APIKEY", "")
        if not API_KEY_RE.match(key):
            raise _reject(-2014, "API-key format invalid.", 401)
        if not hmac.compare_digest(key, self.api_key):
            raise _reject(-2015, "Invalid API-key, IP, or permissions for action.", 401)

    def _authenticate(self, request: web.Request, params: dict[str, str], raw_query: str, raw_body: str) -> None:
        self._check_api_key(request)
        if "timestamp" not in params:
            raise _reject(-1102, "Mandatory parameter 'timestamp' was not sent, was empty/null, or malformed.")
        signature = params.get("signature", "")
        # Binance signs totalParams = query string + request body, exactly as sent, minus the signature.
        total = _without_signature(raw_query) + _without_signature(raw_body)
        expected = hmac.new(self.api_secret.encode(), total.encode(), hashlib.sha256).hexdigest()
        if not signature or not hmac.compare_digest(signature.lower(), expected):
            raise _reject(-1022, "Signature for this request is not valid.")
        try:
            timestamp = int(params["timestamp"])
            recv_window = int(params.get("recvWindow", 5000))
        except ValueError:
            raise _reject(-1102, "Mandatory parameter 'timestamp' was not sent, was empty/null, or malformed.") from None
        if recv_window > 60_000:
            raise _reject(-1131, "recvWindow must be less than 60000")
        server = self.server_time_ms()
        if timestamp >= server + 1000:
            raise _reject(-1021, "Timestamp for this request was 1000ms ahead of the server's time.")
        if server - timestamp > recv_window:
            raise _reject(-1021, "Timestamp for this request is outside of the recvWindow.")

    # --- endpoints -------------------------------------------------------------------------------

    def _build_endpoints(self) -> dict[tuple[str, str], Endpoint]:
        public, signed = False, True
        table: dict[tuple[str, str], Endpoint] = {
            ("GET", "/fapi/v1/time"): Endpoint(self._time, public, _fixed(1)),
            ("GET", "/fapi/v1/ping"): Endpoint(lambda p: {}, public, _fixed(1)),
            ("GET", "/fapi/v1/exchangeInfo"): Endpoint(self._exchange_info, public, _fixed(1)),
            ("GET", "/fapi/v1/klines"): Endpoint(self._klines, public, _klines_weight),
            ("GET", "/fapi/v1/ticker/24hr"): Endpoint(self._ticker_24hr, public, _by_symbol(1, 40)),
            ("GET", "/fapi/v1/fundingRate"): Endpoint(self._funding_rate, public, _fixed(0), funding_limited=True),
            ("GET", "/fapi/v1/income"): Endpoint(self._income, signed, _fixed(30)),
            ("GET", "/fapi/v1/leverageBracket"): Endpoint(self._leverage_bracket, signed, _fixed(1)),
            ("POST", "/fapi/v1/leverage"): Endpoint(self._set_leverage, signed, _fixed(1)),
            ("POST", "/fapi/v1/marginType"): Endpoint(self._set_margin_type, signed, _fixed(1)),
            ("POST", "/fapi/v1/order"): Endpoint(self._new_order, signed, _fixed(1)),
            ("GET", "/fapi/v1/order"): Endpoint(self._query_order, signed, _fixed(1)),
            ("DELETE", "/fapi/v1/order"): Endpoint(self._cancel_order, signed, _fixed(1)),
            ("GET", "/fapi/v1/openOrders"): Endpoint(self._open_orders, signed, _by_symbol(1, 40)),
            ("GET", "/fapi/v1/allOrders"): Endpoint(self._all_orders, signed, _fixed(5)),
            ("DELETE", "/fapi/v1/allOpenOrders"): Endpoint(self._cancel_all_orders, signed, _fixed(1)),
            ("POST", "/fapi/v1/algoOrder"): Endpoint(self._new_algo_order, signed, _fixed(1)),
            ("GET", "/fapi/v1/algoOrder"): Endpoint(self._query_algo_order, signed, _fixed(1)),
            ("DELETE", "/fapi/v1/algoOrder"): Endpoint(self._cancel_algo_order, signed, _fixed(1)),
            ("GET", "/fapi/v1/openAlgoOrders"): Endpoint(self._open_algo_orders, signed, _by_symbol(1, 40)),
            ("GET", "/fapi/v1/allAlgoOrders"): Endpoint(self._all_algo_orders, signed, _fixed(5)),
            ("DELETE", "/fapi/v1/algoOpenOrders"): Endpoint(self._cancel_all_algo_orders, signed, _fixed(1)),
            ("GET", "/fapi/v1/userTrades"): Endpoint(self._user_trades, signed, _fixed(5)),
        }
        for method in ("POST", "PUT", "DELETE"):
            table[(method, "/fapi/v1/listenKey")] = Endpoint(
                lambda p, m=method: self._listen_key(m), public, _fixed(1), keyed=True)
        for version in ("v2", "v3"):
            table[("GET", f"/fapi/{version}/account")] = Endpoint(
                lambda p, v=version: self._account(p, v), signed, _fixed(5))
            table[("GET", f"/fapi/{version}/balance")] = Endpoint(self._balance, signed, _fixed(5))
            table[("GET", f"/fapi/{version}/positionRisk")] = Endpoint(
                lambda p, v=version: self._position_risk(p, v), signed, _fixed(5))
        return table

    def _listen_key(self, method: str) -> dict:
        key = self.ws.listen_key_request(method)
        if key is None:
            raise _reject(-1125, "This listenKey does not exist.")
        return {} if method == "DELETE" else {"listenKey": key}

    # --- public market data ----------------------------------------------------------------------

    def _time(self, params: dict[str, str]) -> dict:
        return {"serverTime": self.server_time_ms()}

    def _exchange_info(self, params: dict[str, str]) -> dict:
        return {
            "timezone": "UTC", "serverTime": self.server_time_ms(), "futuresType": "U_MARGINED",
            "rateLimits": [
                {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": self.weight_limit},
                {"rateLimitType": "ORDERS", "interval": "MINUTE", "intervalNum": 1, "limit": 1200},
            ],
            "exchangeFilters": [],
            "assets": [{"asset": "USDT", "marginAvailable": True, "autoAssetExchange": "-10000"}],
            "symbols": [*(market_info(s, spec, status=self.market_status.get(s, "TRADING")) for s, spec in MARKETS.items()),
                        *(market_info(s, spec, contract_type=kind) for s, (spec, kind) in self.listed_only.items())],
        }

    def _klines(self, q: dict[str, str]) -> list:
        symbol, interval = q.get("symbol", ""), q.get("interval", "")
        if symbol not in MARKETS:
            raise _reject(-1121, "Invalid symbol.")
        if interval not in TIMEFRAME_MS:
            raise _reject(-1120, "Invalid interval.")
        limit = min(int(q.get("limit", 500)), 1500)
        tf = TIMEFRAME_MS[interval]
        now = self.now_ms()
        if "startTime" in q:
            start = int(q["startTime"])
            end = int(q.get("endTime", start + (limit - 1) * tf))
            return self.kline_rows(symbol, interval, start, end)[:limit]
        end = int(q.get("endTime", now))
        return self.kline_rows(symbol, interval, end - limit * tf, end)[-limit:]

    def _ticker_24hr(self, q: dict[str, str]) -> dict | list:
        """GET /fapi/v1/ticker/24hr: one symbol's object (weight 1), or without a symbol every listed
        symbol's, in an array (weight 40). A malformed symbol is -1100, an unknown one -1121."""
        if "symbol" in q:
            symbol = q["symbol"]
            if symbol and not re.fullmatch(r"[A-Z0-9-_.]{1,20}", symbol):
                raise _reject(-1100, "Illegal characters found in parameter 'symbol'; legal range is '^[A-Z0-9-_.]{1,20}$'.")
            return self._ticker(symbol if symbol in self.listed_only else self._symbol(q))
        return [self._ticker(s) for s in [*MARKETS, *self.listed_only]]

    def _ticker(self, symbol: str) -> dict:
        now = self.now_ms()
        rows = self.candles(symbol, "1m", now - 86_400_000, now)
        last = self.price(symbol)
        open_ = rows[0][1] if rows else last
        high = max([r[2] for r in rows] + [last])
        low = min([r[3] for r in rows] + [last])
        volume = sum(r[5] for r in rows)
        quote_volume = sum(r[4] * r[5] for r in rows)
        if symbol in self.quote_volumes:  # the test's figure, with a base volume to match
            quote_volume = self.quote_volumes[symbol]
            volume = quote_volume / last
        return {
            "symbol": symbol, "priceChange": self._fmt_price(symbol, last - open_),
            "priceChangePercent": f"{(last / open_ - 1) * 100:.3f}",
            "weightedAvgPrice": self._fmt_price(symbol, quote_volume / volume if volume else last),
            "lastPrice": self._fmt_price(symbol, last), "lastQty": self._fmt_qty(symbol, 0),
            "openPrice": self._fmt_price(symbol, open_), "highPrice": self._fmt_price(symbol, high),
            "lowPrice": self._fmt_price(symbol, low), "volume": f"{volume:.3f}", "quoteVolume": f"{quote_volume:.2f}",
            "openTime": now - 86_400_000, "closeTime": now, "firstId": 1, "lastId": len(rows), "count": len(rows),
        }

    # --- funding -------------------------------------------------------------------------------

    def _funding_rate(self, q: dict[str, str]) -> list:
        """GET /fapi/v1/fundingRate: ascending; from startTime, the first `limit` (default 100, at most
        1000) up to endTime or now; with endTime alone the last `limit` up to it; with neither the most
        recent `limit`, 200 when no limit is sent (Binance's docs)."""
        symbols = [self._symbol(q)] if "symbol" in q else list(MARKETS)
        limit = _limit(q, 100, 1000)
        start, end = _time_range(q)
        now = self.now_ms()
        if start is None and end is None and "limit" not in q:
            limit = 200
        until = now if end is None else min(end, now)
        if start is not None:
            rows = sorted((t, s, r) for s in symbols for t, r in self._first_funding_rates(s, start, until, limit))[:limit]
        else:
            rows = sorted((t, s, r) for s in symbols for t, r in self._last_funding_rates(s, until, limit))[-limit:]
        marks = {s: self._funding_marks(s, [t for t, sym, _ in rows if sym == s]) for s in symbols}
        return [{"symbol": s, "fundingRate": f"{r:.8f}", "fundingTime": t, "markPrice": marks[s].get(t, "")}
                for t, s, r in rows]

    def _first_funding_rates(self, symbol: str, start_ms: int, until_ms: int, count: int) -> list[tuple[int, float]]:
        if symbol not in self._funding_series:  # the default history: no need to compute past the page
            until_ms = min(until_ms, start_ms + (count + 1) * FUNDING_INTERVAL_MS)
        return self.funding_rates(symbol, start_ms - 1, until_ms)[:count]

    def _last_funding_rates(self, symbol: str, until_ms: int, count: int) -> list[tuple[int, float]]:
        after = -1 if symbol in self._funding_series else until_ms - (count + 1) * FUNDING_INTERVAL_MS
        return self.funding_rates(symbol, after, until_ms)[-count:]

    def _funding_marks(self, symbol: str, times: list[int]) -> dict[int, str]:
        """markPrice of each funding record: the one a funding fee was charged at, else set_price()'s
        price, else the fake's synthetic price then (the close of the 1m candle ending at the moment);
        "" beyond the fake's 1m history, as Binance answers for its oldest records."""
        marks = {t: f"{self._charged_marks[(symbol, t)]:.8f}" for t in times if (symbol, t) in self._charged_marks}
        rest = [t for t in times if t not in marks]
        if not rest:
            return marks
        if symbol in self._prices:
            return {**marks, **dict.fromkeys(rest, f"{self._prices[symbol]:.8f}")}
        minutes = [t // 60_000 * 60_000 for t in rest]
        closes = {int(row[0]) + 60_000: row[4] for row in self.candles(symbol, "1m", min(minutes) - 60_000,
                                                                         max(minutes) - 60_000)}
        marks.update({t: f"{self._round_price(symbol, closes[m]):.8f}" for t, m in zip(rest, minutes) if m in closes})
        return marks

    def _settle_funding(self) -> None:
        """Charge or pay every open position at each funding moment the clock has passed since the last
        settlement: income = -positionAmt x markPrice x rate, booked to the wallet and the income history
        at the funding time (the position is the one held then: positions only change on requests and
        set_price(), which settle first)."""
        now = self.now_ms()
        since = self._funding_settled_ms
        if now <= since:
            return
        self._funding_settled_ms = now
        for symbol, position in self.positions.items():
            amount = position["amount"]
            if not amount:
                continue
            for time_ms, rate in self.funding_rates(symbol, since, now):
                mark = self._funding_marks(symbol, [time_ms]).get(time_ms)
                price = float(mark) if mark else self.price(symbol)
                self._charged_marks[(symbol, time_ms)] = price
                fee = round(-amount * price * rate, 8)
                self.balance = round(self.balance + fee, 8)
                self._balance_update_ms = max(self._balance_update_ms, time_ms)
                self._book_income(symbol, "FUNDING_FEE", fee, time_ms, "")
                self.ws.account_update("FUNDING_FEE", symbol)

    def _book_income(self, symbol: str, income_type: str, amount: float, time_ms: int, trade_id: str) -> None:
        self.income.append({"symbol": symbol, "incomeType": income_type, "income": f"{amount:.8f}", "asset": "USDT",
                            "info": income_type, "time": time_ms, "tranId": self._next_tran_id, "tradeId": trade_id})
        self._next_tran_id += 1

    def _income(self, q: dict[str, str]) -> list:
        """GET /fapi/v1/income: ascending, the first `limit` (default 100, at most 1000) from startTime;
        with neither startTime nor endTime the last 7 days; nothing older than 3 months (Binance's docs)."""
        symbol = self._symbol(q) if "symbol" in q else None
        income_type = q.get("incomeType")
        if income_type is not None and income_type not in INCOME_TYPES:
            raise _reject(-1130, "Data sent for parameter 'incomeType' is not valid.")
        limit = _limit(q, 100, 1000)
        start, end = _time_range(q)
        now = self.now_ms()
        if start is None and end is None:
            start = now - 7 * DAY_MS
        oldest = max(now - 90 * DAY_MS, start if start is not None else 0)
        rows = [r for r in self.income if symbol in (None, r["symbol"]) and income_type in (None, r["incomeType"])
                and r["time"] >= oldest and (end is None or r["time"] <= end)]
        return [dict(r) for r in sorted(rows, key=lambda r: r["time"])[:limit]]

    # --- account configuration -------------------------------------------------------------------

    def _leverage_bracket(self, q: dict[str, str]) -> dict | list:
        if "symbol" in q:
            symbol = self._symbol(q)
            return {"symbol": symbol, "notionalCoef": 1.0, "brackets": brackets(symbol)}
        return [{"symbol": s, "notionalCoef": 1.0, "brackets": brackets(s)} for s in MARKETS]

    def _set_leverage(self, q: dict[str, str]) -> dict:
        symbol = self._symbol(q)
        try:
            leverage = int(q.get("leverage", ""))
        except ValueError:
            raise _reject(-1102, "Mandatory parameter 'leverage' was not sent, was empty/null, or malformed.") from None
        if not 1 <= leverage <= BRACKETS[symbol][0][1]:
            raise _reject(-4028, f"Leverage {leverage} is not valid")
        cap = self._max_notional(symbol, leverage)
        if abs(self.positions[symbol]["amount"]) * self.price(symbol) > cap:
            raise _reject(-2027, "Exceeded the maximum allowable position at current leverage.")
        self.positions[symbol]["leverage"] = leverage
        return {"leverage": leverage, "maxNotionalValue": str(cap), "symbol": symbol}

    def _set_margin_type(self, q: dict[str, str]) -> dict:
        symbol = self._symbol(q)
        margin_type = q.get("marginType", "").upper()
        if margin_type not in ("ISOLATED", "CROSSED"):
            raise _reject(-1102, "Mandatory parameter 'marginType' was not sent, was empty/null, or malformed.")
        position = self.positions[symbol]
        if position["margin_type"] == margin_type:
            raise _reject(-4046, "No need to change margin type.")
        if position["amount"]:
            raise _reject(-4048, "Margin type cannot be changed if there exists position.")
        if any(o["symbol"] == symbol and o["status"] in ("NEW", "PARTIALLY_FILLED") for o in self.orders.values()):
            raise _reject(-4047, "Margin type cannot be changed if there exists open orders.")
        position["margin_type"] = margin_type
        return {"code": 200, "msg": "success"}

    # --- regular orders --------------------------------------------------------------------------

    def _new_order(self, q: dict[str, str]) -> dict:
        symbol = self._symbol(q)
        side = self._side(q)
        order_type = q.get("type", "").upper()
        if order_type in CONDITIONAL_TYPES:
            raise _reject(-4120, "Order type not supported for this endpoint. Please use the Algo Order API "
                          "endpoints instead.")
        if order_type not in ("MARKET", "LIMIT"):
            raise _reject(-1116, "Invalid orderType.")
        self._check_position_side(q)
        if _truthy(q.get("closePosition")):
            raise _reject(-1106, "Parameter 'closePosition' sent when not required.")
        client_id = q.get("newClientOrderId") or self._generated_client_id("web_")
        self._check_client_id(client_id, algo=False)
        reduce_only = _truthy(q.get("reduceOnly"))
        quantity = self._quantity(symbol, q, MARKET_MAX_QTY if order_type == "MARKET" else LIMIT_MAX_QTY)
        now = self.now_ms()
        if order_type == "MARKET":
            market = self.price(symbol)
            qty = self._reduce_only_qty(symbol, side, quantity) if reduce_only else quantity
            if not reduce_only:
                self._check_notional(symbol, qty * market)
                self._check_margin(symbol, side, qty, market)
            order = self._order_record(symbol, side, "MARKET", "MARKET", qty, 0.0, client_id, reduce_only, "GTC", now)
            self._fill(order, qty, market, maker=False)
            return _without(order, "time")
        time_in_force = q.get("timeInForce", "").upper()
        if time_in_force not in ("GTC", "IOC", "FOK", "GTX", "GTD"):
            raise _reject(-1102, "Mandatory parameter 'timeInForce' was not sent, was empty/null, or malformed.")
        limit_price = self._price_param(symbol, q, "price")
        if reduce_only:
            quantity = self._reduce_only_qty(symbol, side, quantity)
        else:
            self._check_notional(symbol, quantity * limit_price)
        order = self._order_record(symbol, side, "LIMIT", "LIMIT", quantity, limit_price, client_id, reduce_only,
                                   time_in_force, now)
        market = self.price(symbol)
        marketable = market <= limit_price if side == "BUY" else market >= limit_price
        if marketable and time_in_force == "GTX":
            raise _reject(-5022, "Due to the order could not be executed as maker, the Post Only order will be "
                          "rejected.")
        if not reduce_only:
            self._check_margin(symbol, side, quantity, limit_price)
        if marketable:
            self._fill(order, quantity, market, maker=False)
        elif time_in_force in ("IOC", "FOK"):
            order["status"] = "EXPIRED"
            self.orders[order["orderId"]] = order
        else:
            self.orders[order["orderId"]] = order
            self.ws.order_update(order, "NEW")
        return _without(order, "time")

    def _query_order(self, q: dict[str, str]) -> dict:
        order = self._find_order(q)
        if order is None:
            raise _reject(-2013, "Order does not exist.")
        return dict(order)

    def _cancel_order(self, q: dict[str, str]) -> dict:
        order = self._find_order(q)
        if order is None or order["status"] not in ("NEW", "PARTIALLY_FILLED"):
            raise _reject(-2011, "Unknown order sent.")
        order["status"] = "CANCELED"
        order["updateTime"] = self.now_ms()
        self.ws.order_update(order, "CANCELED")
        return dict(order)

    def _open_orders(self, q: dict[str, str]) -> list:
        symbol = self._symbol(q) if "symbol" in q else None
        return [dict(o) for o in self.orders.values()
                if o["status"] in ("NEW", "PARTIALLY_FILLED") and symbol in (None, o["symbol"])]

    def _all_orders(self, q: dict[str, str]) -> list:
        symbol = self._symbol(q)
        rows = [o for o in self.orders.values() if o["symbol"] == symbol]
        if "orderId" in q:
            rows = [o for o in rows if o["orderId"] >= int(q["orderId"])]
        rows = _time_filter(rows, q, "time")
        return [dict(o) for o in rows[: min(int(q.get("limit", 500)), 1000)]]

    def _cancel_all_orders(self, q: dict[str, str]) -> dict:
        symbol = self._symbol(q)
        for order in self.orders.values():
            if order["symbol"] == symbol and order["status"] in ("NEW", "PARTIALLY_FILLED"):
                order["status"], order["updateTime"] = "CANCELED", self.now_ms()
                self.ws.order_update(order, "CANCELED")
        return dict(ALL_DONE)

    # --- conditional (algo) orders ---------------------------------------------------------------

    def _new_algo_order(self, q: dict[str, str]) -> dict:
        if q.get("algoType", "") != "CONDITIONAL":
            raise _reject(-1102, "Mandatory parameter 'algoType' was not sent, was empty/null, or malformed.")
        symbol = self._symbol(q)
        side = self._side(q)
        order_type = q.get("type", "").upper()
        if order_type not in ("STOP", "STOP_MARKET", "TAKE_PROFIT", "TAKE_PROFIT_MARKET"):
            raise _reject(-1116, "Invalid orderType.")  # TRAILING_STOP_MARKET is not simulated
        self._check_position_side(q)
        client_id = q.get("clientAlgoId") or self._generated_client_id("algo_")
        self._check_client_id(client_id, algo=True)
        close_position = _truthy(q.get("closePosition"))
        reduce_only = _truthy(q.get("reduceOnly"))
        trigger = self._price_param(symbol, q, "triggerPrice")
        limit_price = self._price_param(symbol, q, "price") if order_type in ("STOP", "TAKE_PROFIT") else 0.0
        if close_position:
            if order_type not in ("STOP_MARKET", "TAKE_PROFIT_MARKET"):
                raise _reject(-1106, "Parameter 'closePosition' sent when not required.")
            if "quantity" in q:
                raise _reject(-1106, "Parameter 'quantity' sent when not required.")
            if "reduceOnly" in q:
                raise _reject(-1106, "Parameter 'reduceOnly' sent when not required.")
            quantity = 0.0
        else:
            quantity = self._quantity(symbol, q, MARKET_MAX_QTY if order_type.endswith("MARKET") else LIMIT_MAX_QTY)
        if self._triggered(order_type, side, trigger, self.price(symbol)):
            raise _reject(-2021, "Order would immediately trigger.")
        if not (close_position or reduce_only):
            self._check_notional(symbol, quantity * (limit_price or trigger))
        open_algos = [a for a in self.algo_orders.values() if a["symbol"] == symbol and a["algoStatus"] == "NEW"]
        if len(open_algos) >= MAX_ALGO_ORDERS:
            raise _reject(-4045, "Reach max stop order limit.")
        now = self.now_ms()
        algo_id = self._next_algo_id
        self._next_algo_id += 1
        algo = {
            "algoId": algo_id, "clientAlgoId": client_id, "algoType": "CONDITIONAL", "orderType": order_type,
            "symbol": symbol, "side": side, "positionSide": "BOTH", "timeInForce": q.get("timeInForce", "GTC"),
            "quantity": self._fmt_qty(symbol, quantity), "algoStatus": "NEW", "actualOrderId": "",
            "actualPrice": self._fmt_price(symbol, 0), "triggerPrice": self._fmt_price(symbol, trigger),
            "price": self._fmt_price(symbol, limit_price), "icebergQuantity": None,
            "tpTriggerPrice": self._fmt_price(symbol, 0), "tpPrice": self._fmt_price(symbol, 0),
            "slTriggerPrice": self._fmt_price(symbol, 0), "slPrice": self._fmt_price(symbol, 0), "tpOrderType": "",
            "selfTradePreventionMode": q.get("selfTradePreventionMode", "EXPIRE_MAKER"),
            "workingType": q.get("workingType", "CONTRACT_PRICE"), "priceMatch": q.get("priceMatch", "NONE"),
            "closePosition": close_position, "priceProtect": _truthy(q.get("priceProtect")),
            "reduceOnly": reduce_only, "createTime": now, "updateTime": now, "triggerTime": 0,
            "goodTillDate": int(q.get("goodTillDate", 0)),
        }
        self.algo_orders[algo_id] = algo
        return _without(algo, "actualOrderId", "actualPrice", "tpTriggerPrice", "tpPrice", "slTriggerPrice", "slPrice",
                        "tpOrderType")

    def _query_algo_order(self, q: dict[str, str]) -> dict:
        algo = self._find_algo(q)
        if algo is None:
            raise _reject(-2013, "Order does not exist.")
        return dict(algo)

    def _cancel_algo_order(self, q: dict[str, str]) -> dict:
        algo = self._find_algo(q)
        if algo is None or algo["algoStatus"] != "NEW":
            raise _reject(-2011, "Unknown order sent.")
        algo["algoStatus"], algo["updateTime"] = "CANCELED", self.now_ms()
        self.ws.algo_update(algo)
        return {"algoId": algo["algoId"], "clientAlgoId": algo["clientAlgoId"], "code": "200", "msg": "success"}

    def _open_algo_orders(self, q: dict[str, str]) -> list:
        symbol = self._symbol(q) if "symbol" in q else None
        return [dict(a) for a in self.algo_orders.values()
                if a["algoStatus"] in ("NEW", "TRIGGERING") and symbol in (None, a["symbol"])]

    def _all_algo_orders(self, q: dict[str, str]) -> list:
        symbol = self._symbol(q)
        rows = _time_filter([a for a in self.algo_orders.values() if a["symbol"] == symbol], q, "createTime")
        return [dict(a) for a in rows[: min(int(q.get("limit", 500)), 1000)]]

    def _cancel_all_algo_orders(self, q: dict[str, str]) -> dict:
        symbol = self._symbol(q)
        for algo in self.algo_orders.values():
            if algo["symbol"] == symbol and algo["algoStatus"] == "NEW":
                algo["algoStatus"], algo["updateTime"] = "CANCELED", self.now_ms()
                self.ws.algo_update(algo)
        return dict(ALL_DONE)

    @staticmethod
    def _triggered(order_type: str, side: str, trigger: float, price: float) -> bool:
        stop = order_type in ("STOP", "STOP_MARKET")
        if side == "SELL":
            return price <= trigger if stop else price >= trigger
        return price >= trigger if stop else price <= trigger

    def _match(self, symbol: str) -> None:
        """Trigger the algo orders and fill the resting limit orders the current price reaches."""
        price = self.price(symbol)
        for algo in sorted(self.algo_orders.values(), key=lambda a: a["algoId"]):
            if (algo["symbol"] == symbol and algo["algoStatus"] == "NEW"
                    and self._triggered(algo["orderType"], algo["side"], float(algo["triggerPrice"]), price)):
                self._trigger(algo, price)
                self.ws.algo_update(algo)
        for order in sorted(self.orders.values(), key=lambda o: o["orderId"]):
            if order["symbol"] != symbol or order["status"] != "NEW" or order["type"] != "LIMIT":
                continue
            limit = float(order["price"])
            if not (price <= limit if order["side"] == "BUY" else price >= limit):
                continue
            qty = float(order["origQty"])
            if order["reduceOnly"]:
                try:
                    qty = self._reduce_only_qty(symbol, order["side"], qty)
                except BinanceError:
                    order["status"], order["updateTime"] = "EXPIRED", self.now_ms()
                    self._finish_algo_of(order)
                    continue
            self._fill(order, qty, limit, maker=True)
            self._finish_algo_of(order)

    def _trigger(self, algo: dict, price: float) -> None:
        """The algo service sends the order to the matching engine: a market order filled at the current
        price (STOP_MARKET / TAKE_PROFIT_MARKET) or a GTC limit order (STOP / TAKE_PROFIT)."""
        symbol, side, now = algo["symbol"], algo["side"], self.now_ms()
        algo["triggerTime"] = algo["updateTime"] = now
        position = self.positions[symbol]["amount"]
        closing = position < 0 if side == "BUY" else position > 0
        qty = float(algo["quantity"])
        try:
            if algo["closePosition"]:
                if not closing:
                    algo["algoStatus"] = "EXPIRED"
                    return
                qty = abs(position)
            elif algo["reduceOnly"]:
                qty = self._reduce_only_qty(symbol, side, qty)
            else:
                self._check_margin(symbol, side, qty, price)
        except BinanceError:
            algo["algoStatus"] = "REJECTED"
            return
        market = algo["orderType"].endswith("MARKET")
        order = self._order_record(symbol, side, "MARKET" if market else "LIMIT", algo["orderType"], qty,
                                   0.0 if market else float(algo["price"]), algo["clientAlgoId"],
                                   algo["reduceOnly"] or algo["closePosition"], algo["timeInForce"], now)
        order["stopPrice"] = algo["triggerPrice"]
        order["closePosition"] = algo["closePosition"]
        algo["actualOrderId"] = str(order["orderId"])
        algo["algoStatus"] = "TRIGGERED"
        limit = float(order["price"])
        if market or (price <= limit if side == "BUY" else price >= limit):
            for part in self._parts(symbol, qty, self.trigger_fill_parts if market else 1):
                self._fill(order, part, price, maker=False)
            algo["algoStatus"] = "FINISHED"
            algo["actualPrice"] = order["avgPrice"]
        else:
            self.orders[order["orderId"]] = order
            self.ws.order_update(order, "NEW")

    def _parts(self, symbol: str, qty: float, parts: int) -> list[float]:
        """qty split into `parts` fills at the symbol's step (the last takes the rest)."""
        step = float(MARKETS[symbol][3])
        each = max(step, math.floor(qty / parts / step) * step)
        sizes: list[float] = []
        while len(sizes) < parts - 1 and sum(sizes) + each < qty - 1e-12:
            sizes.append(each)
        return [*sizes, round(qty - sum(sizes), _decimals(MARKETS[symbol][3]))]

    def _finish_algo_of(self, order: dict) -> None:
        for algo in self.algo_orders.values():
            if algo["actualOrderId"] == str(order["orderId"]):
                algo["algoStatus"], algo["updateTime"] = "FINISHED", self.now_ms()
                algo["actualPrice"] = order["avgPrice"]

    # --- fills, positions, balance ---------------------------------------------------------------

    def _order_record(self, symbol: str, side: str, order_type: str, orig_type: str, qty: float, price: float,
                      client_id: str, reduce_only: bool, time_in_force: str, now: int) -> dict:
        order_id = self._next_order_id
        self._next_order_id += 1
        return {
            "orderId": order_id, "symbol": symbol, "status": "NEW", "clientOrderId": client_id,
            "price": self._fmt_price(symbol, price), "avgPrice": self._fmt_price(symbol, 0),
            "origQty": self._fmt_qty(symbol, qty), "executedQty": self._fmt_qty(symbol, 0),
            "cumQty": self._fmt_qty(symbol, 0), "cumQuote": "0.00000", "timeInForce": time_in_force,
            "type": order_type, "reduceOnly": reduce_only, "closePosition": False, "side": side,
            "positionSide": "BOTH", "stopPrice": self._fmt_price(symbol, 0), "workingType": "CONTRACT_PRICE",
            "priceProtect": False, "origType": orig_type, "priceMatch": "NONE",
            "selfTradePreventionMode": "EXPIRE_MAKER", "goodTillDate": 0, "time": now, "updateTime": now,
        }

    def _fill(self, order: dict, qty: float, price: float, maker: bool) -> None:
        """Execute `qty` of `order` at `price`: position, realized PnL, fee, balance, one userTrades row."""
        symbol, side, now = order["symbol"], order["side"], self.now_ms()
        rested = order["orderId"] in self.orders  # its NEW went out when it was placed
        position = self.positions[symbol]
        amount, entry = position["amount"], position["entry_price"]
        delta = qty if side == "BUY" else -qty
        decimals = _decimals(MARKETS[symbol][3])
        new_amount = round(amount + delta, decimals)
        realized = 0.0
        if amount == 0 or (amount > 0) == (delta > 0):
            entry = (abs(amount) * entry + qty * price) / abs(new_amount)
        else:
            realized = min(qty, abs(amount)) * (price - entry) * (1 if amount > 0 else -1)
            if new_amount == 0:
                entry = 0.0
            elif (new_amount > 0) != (amount > 0):
                entry = price  # flipped: the rest opens at the fill price
        position["amount"], position["entry_price"] = new_amount, entry
        realized = round(realized, 8)
        commission = round(qty * price * (self.maker_fee_rate if maker else self.fee_rate), 8)
        self.balance = round(self.balance + realized - commission, 8)
        self._position_update_ms[symbol] = self._balance_update_ms = now
        trade = {
            "symbol": symbol, "id": self._next_trade_id, "orderId": order["orderId"], "side": side,
            "price": self._fmt_price(symbol, price), "qty": self._fmt_qty(symbol, qty),
            "realizedPnl": f"{realized:.8f}", "marginAsset": "USDT", "quoteQty": f"{qty * price:.8f}",
            "commission": f"{commission:.8f}", "commissionAsset": "USDT", "time": now, "positionSide": "BOTH",
            "maker": maker, "buyer": side == "BUY",
        }
        self._next_trade_id += 1
        self.trades.append(trade)
        if realized:
            self._book_income(symbol, "REALIZED_PNL", realized, now, str(trade["id"]))
        if commission:
            self._book_income(symbol, "COMMISSION", -commission, now, str(trade["id"]))
        executed = float(order["executedQty"]) + qty
        cum_quote = float(order["cumQuote"]) + qty * price
        order.update({
            "executedQty": self._fmt_qty(symbol, executed), "cumQty": self._fmt_qty(symbol, executed),
            "cumQuote": f"{cum_quote:.5f}", "avgPrice": self._fmt_price(symbol, cum_quote / executed),
            "status": "FILLED" if executed >= float(order["origQty"]) - 1e-12 else "PARTIALLY_FILLED",
            "updateTime": now,
        })
        self.orders[order["orderId"]] = order
        self.ws.fill(order, trade, first=not rested)

    def _reduce_only_qty(self, symbol: str, side: str, qty: float) -> float:
        amount = self.positions[symbol]["amount"]
        if amount == 0 or (amount > 0) == (side == "BUY"):
            raise _reject(-2022, "ReduceOnly Order is rejected.")
        return min(qty, abs(amount))

    def _check_notional(self, symbol: str, notional: float) -> None:
        minimum = MARKETS[symbol][5]
        if notional < float(minimum) - 1e-9:
            raise _reject(-4164, f"Order's notional must be no smaller than {minimum} (unless you choose reduce "
                          "only).")

    def _check_margin(self, symbol: str, side: str, qty: float, price: float) -> None:
        position = self.positions[symbol]
        amount = position["amount"]
        delta = qty if side == "BUY" else -qty
        increase = qty if amount == 0 or (amount > 0) == (delta > 0) else max(0.0, qty - abs(amount))
        if increase <= 0:
            return
        if self.refuse_entries:
            raise _reject(-2019, "Margin is insufficient.")
        if abs(amount + delta) * price > self._max_notional(symbol, position["leverage"]) + 1e-9:
            raise _reject(-2027, "Exceeded the maximum allowable position at current leverage.")
        if increase * price / position["leverage"] > self._available_balance() + 1e-9:
            raise _reject(-2019, "Margin is insufficient.")

    def _max_notional(self, symbol: str, leverage: int) -> int:
        return max(cap for cap, max_leverage, _ in BRACKETS[symbol] if max_leverage >= leverage)

    def _maintenance(self, symbol: str, notional: float) -> tuple[float, float, float]:
        """(maintenance margin, ratio, cum) for a position notional."""
        for entry in brackets(symbol):
            if notional <= entry["notionalCap"]:
                break
        return notional * entry["maintMarginRatio"] - entry["cum"], entry["maintMarginRatio"], entry["cum"]

    def _position_figures(self, symbol: str) -> dict[str, float]:
        position = self.positions[symbol]
        amount, entry, leverage = position["amount"], position["entry_price"], position["leverage"]
        mark = self.price(symbol)
        notional = amount * mark
        upnl = amount * (mark - entry) if amount else 0.0
        initial = abs(notional) / leverage
        maint, mmr, cum = self._maintenance(symbol, abs(notional))
        isolated = position["margin_type"] == "ISOLATED"
        isolated_wallet = abs(amount) * entry / leverage if isolated else 0.0
        wallet = isolated_wallet if isolated else self.balance
        liquidation = 0.0
        if amount:
            denominator = abs(amount) * mmr - amount
            value = (wallet + cum - amount * entry) / denominator if denominator else 0.0
            liquidation = max(0.0, value)
        fee = self.fee_rate
        break_even = entry * (1 + fee) if amount > 0 else entry * (1 - fee) if amount < 0 else 0.0
        return {"amount": amount, "entry": entry, "mark": mark, "notional": notional, "upnl": upnl,
                "initial": initial, "maint": max(0.0, maint) if amount else 0.0, "isolated_wallet": isolated_wallet,
                "isolated_margin": isolated_wallet + upnl if isolated else 0.0, "liquidation": liquidation,
                "break_even": break_even, "leverage": leverage}

    def _open_order_margin(self) -> float:
        return sum(float(o["origQty"]) * float(o["price"]) / self.positions[o["symbol"]]["leverage"]
                   for o in self.orders.values() if o["status"] == "NEW" and o["type"] == "LIMIT" and not o["reduceOnly"])

    def _available_balance(self) -> float:
        available = self.balance - self._open_order_margin()
        for symbol, position in self.positions.items():
            if not position["amount"]:
                continue
            f = self._position_figures(symbol)
            if position["margin_type"] == "ISOLATED":
                available -= f["isolated_wallet"]
            else:
                available += f["upnl"] - f["initial"]
        return available

    # --- account, balance, positions, trades -----------------------------------------------------

    def _account(self, q: dict[str, str], version: str) -> dict:
        figures = {s: self._position_figures(s) for s in MARKETS}
        cross = [s for s in MARKETS if self.positions[s]["margin_type"] == "CROSSED"]
        upnl = sum(f["upnl"] for f in figures.values())
        cross_upnl = sum(figures[s]["upnl"] for s in cross)
        position_im = sum(f["initial"] for f in figures.values())
        order_im = self._open_order_margin()
        maint = sum(f["maint"] for f in figures.values())
        available = self._available_balance()
        isolated_wallets = sum(f["isolated_wallet"] for f in figures.values())
        money = "{:.8f}".format
        asset = {
            "asset": "USDT", "walletBalance": money(self.balance), "unrealizedProfit": money(upnl),
            "marginBalance": money(self.balance + upnl), "maintMargin": money(maint),
            "initialMargin": money(position_im + order_im), "positionInitialMargin": money(position_im),
            "openOrderInitialMargin": money(order_im), "crossWalletBalance": money(self.balance - isolated_wallets),
            "crossUnPnl": money(cross_upnl), "availableBalance": money(available),
            "maxWithdrawAmount": money(max(0.0, min(available, self.balance))), "marginAvailable": True,
            "updateTime": self._balance_update_ms or max(1, self.now_ms()),
        }
        open_symbols = [s for s in MARKETS if figures[s]["amount"]]
        body = {
            "totalInitialMargin": money(position_im + order_im), "totalMaintMargin": money(maint),
            "totalWalletBalance": money(self.balance), "totalUnrealizedProfit": money(upnl),
            "totalMarginBalance": money(self.balance + upnl), "totalPositionInitialMargin": money(position_im),
            "totalOpenOrderInitialMargin": money(order_im), "totalCrossWalletBalance": asset["crossWalletBalance"],
            "totalCrossUnPnl": money(cross_upnl), "availableBalance": money(available),
            "maxWithdrawAmount": asset["maxWithdrawAmount"], "assets": [asset],
        }
        if version == "v2":
            body = {"feeTier": 0, "feeBurn": True, "canTrade": True, "canDeposit": True, "canWithdraw": True,
                    "updateTime": 0, "multiAssetsMargin": False, "tradeGroupId": -1, **body}
        positions = []
        for s in (MARKETS if version == "v2" else open_symbols):
            f = figures[s]
            row = {"symbol": s, "positionSide": "BOTH", "positionAmt": self._fmt_qty(s, f["amount"]),
                   "unrealizedProfit": money(f["upnl"]), "isolatedMargin": money(f["isolated_margin"]),
                   "notional": money(f["notional"]), "isolatedWallet": money(f["isolated_wallet"]),
                   "initialMargin": money(f["initial"]), "maintMargin": money(f["maint"]),
                   "updateTime": self._position_update_ms[s]}
            if version == "v2":
                row.update({"leverage": str(f["leverage"]), "isolated": self.positions[s]["margin_type"] == "ISOLATED",
                            "entryPrice": self._fmt_price(s, f["entry"]),
                            "maxNotional": str(self._max_notional(s, f["leverage"])),
                            "positionInitialMargin": money(f["initial"]), "openOrderInitialMargin": "0",
                            "bidNotional": "0", "askNotional": "0"})
            positions.append(row)
        body["positions"] = positions
        return body

    def _balance(self, q: dict[str, str]) -> list:
        account = self._account(q, "v3")
        asset = account["assets"][0]
        return [{"accountAlias": "SgsR", "asset": "USDT", "balance": asset["walletBalance"],
                 "crossWalletBalance": asset["crossWalletBalance"], "crossUnPnl": asset["crossUnPnl"],
                 "availableBalance": asset["availableBalance"], "maxWithdrawAmount": asset["maxWithdrawAmount"],
                 "marginAvailable": True, "updateTime": asset["updateTime"]}]

    def _position_risk(self, q: dict[str, str], version: str) -> list:
        symbols = [self._symbol(q)] if "symbol" in q else list(MARKETS)
        money = "{:.8f}".format
        rows = []
        for s in symbols:
            f = self._position_figures(s)
            if version == "v3" and not f["amount"]:
                continue  # v3 lists only symbols with a position
            row = {
                "symbol": s, "positionSide": "BOTH", "positionAmt": self._fmt_qty(s, f["amount"]),
                "entryPrice": self._fmt_price(s, f["entry"]), "breakEvenPrice": money(f["break_even"]),
                "markPrice": money(f["mark"]), "unRealizedProfit": money(f["upnl"]),
                "liquidationPrice": money(f["liquidation"]), "isolatedMargin": money(f["isolated_margin"]),
                "notional": money(f["notional"]), "marginAsset": "USDT", "isolatedWallet": money(f["isolated_wallet"]),
                "initialMargin": money(f["initial"]), "maintMargin": money(f["maint"]),
                "positionInitialMargin": money(f["initial"]), "openOrderInitialMargin": "0", "adl": 1,
                "bidNotional": "0", "askNotional": "0", "updateTime": self._position_update_ms[s],
            }
            if version == "v2":
                for key in ("marginAsset", "initialMargin", "maintMargin", "positionInitialMargin",
                            "openOrderInitialMargin", "adl", "bidNotional", "askNotional"):
                    del row[key]
                row.update({"leverage": str(f["leverage"]), "maxNotionalValue": str(self._max_notional(s, f["leverage"])),
                            "marginType": "isolated" if self.positions[s]["margin_type"] == "ISOLATED" else "cross",
                            "isAutoAddMargin": "false", "adlQuantile": 1})
            rows.append(row)
        return rows

    def _user_trades(self, q: dict[str, str]) -> list:
        symbol = self._symbol(q)
        if self.lagging_fill_answers:
            self.lagging_fill_answers -= 1
            return []
        rows = [t for t in self.trades if t["symbol"] == symbol]
        if "orderId" in q:
            rows = [t for t in rows if t["orderId"] == int(q["orderId"])]
        limit = min(int(q.get("limit", 500)), 1000)
        if "fromId" in q:
            return [dict(t) for t in rows if t["id"] >= int(q["fromId"])][:limit]
        if "startTime" in q or "endTime" in q:
            return [dict(t) for t in _time_filter(rows, q, "time")][:limit]
        return [dict(t) for t in rows[-limit:]]

    # --- parameter checks ------------------------------------------------------------------------

    def _symbol(self, q: dict[str, str]) -> str:
        symbol = q.get("symbol", "")
        if not symbol:
            raise _reject(-1102, "Mandatory parameter 'symbol' was not sent, was empty/null, or malformed.")
        if symbol not in MARKETS:
            raise _reject(-1121, "Invalid symbol.")
        return symbol

    @staticmethod
    def _side(q: dict[str, str]) -> str:
        side = q.get("side", "").upper()
        if side not in ("BUY", "SELL"):
            raise _reject(-1102, "Mandatory parameter 'side' was not sent, was empty/null, or malformed.")
        return side

    @staticmethod
    def _check_position_side(q: dict[str, str]) -> None:
        if q.get("positionSide", "BOTH").upper() != "BOTH":
            raise _reject(-4061, "Order's position side does not match user's setting.")

    def _check_client_id(self, client_id: str, algo: bool) -> None:
        if not CLIENT_ID_RE.match(client_id):
            raise _reject(-4015, "Client order id is not valid.")
        if algo:
            used = [a for a in self.algo_orders.values() if a["clientAlgoId"] == client_id]
            live = [a for a in used if a["algoStatus"] == "NEW"]
        else:
            used = [o for o in self.orders.values() if o["clientOrderId"] == client_id]
            live = [o for o in used if o["status"] in ("NEW", "PARTIALLY_FILLED")]
        if used:
            self.duplicate_client_ids.append(client_id)
            if self.strict_client_ids or live:
                raise _reject(-4116, "ClientOrderId is duplicated.")

    def _generated_client_id(self, prefix: str) -> str:
        return f"{prefix}{self._next_order_id:x}{self._next_algo_id:x}"

    def _quantity(self, symbol: str, q: dict[str, str], max_qty: str) -> float:
        raw = q.get("quantity")
        if raw is None or raw == "":
            raise _reject(-1102, "Mandatory parameter 'quantity' was not sent, was empty/null, or malformed.")
        try:
            qty = Decimal(raw)
        except InvalidOperation:
            raise _reject(-1102, "Mandatory parameter 'quantity' was not sent, was empty/null, or malformed.") from None
        _, _, _, step, min_qty, _ = MARKETS[symbol]
        if qty <= 0:
            raise _reject(-4003, "Quantity less than or equal to zero.")
        if qty % Decimal(step) != 0:
            raise _reject(-1111, "Precision is over the maximum defined for this asset.")
        if qty < Decimal(min_qty):
            raise _reject(-4003, "Quantity less than or equal to zero.")
        if qty > Decimal(max_qty):
            raise _reject(-4005, "Quantity greater than max quantity.")
        return float(qty)

    def _price_param(self, symbol: str, q: dict[str, str], name: str) -> float:
        raw = q.get(name)
        if raw is None or raw == "":
            raise _reject(-1102, f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed.")
        try:
            value = Decimal(raw)
        except InvalidOperation:
            raise _reject(-1102, f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed.") from None
        if value <= 0:
            raise _reject(-4006, "Stop price less than zero." if name == "triggerPrice" else "Price less than zero.")
        if value % Decimal(MARKETS[symbol][2]) != 0:
            raise _reject(-4014, "Price not increased by tick size.")
        return float(value)

    # --- formatting ------------------------------------------------------------------------------

    def _spec(self, symbol: str) -> tuple[str, str, str, str, str, str]:
        return MARKETS[symbol] if symbol in MARKETS else self.listed_only[symbol][0]

    def _round_price(self, symbol: str, price: float) -> float:
        tick = self._spec(symbol)[2]
        return round(round(price / float(tick)) * float(tick), _decimals(tick))

    def _fmt_price(self, symbol: str, price: float) -> str:
        return f"{price:.{_decimals(self._spec(symbol)[2])}f}"

    def _fmt_qty(self, symbol: str, qty: float) -> str:
        return f"{qty:.{_decimals(self._spec(symbol)[3])}f}"

    def _find_order(self, q: dict[str, str]) -> dict | None:
        symbol = self._symbol(q)
        if "orderId" in q:
            try:
                order = self.orders.get(int(q["orderId"]))
            except ValueError:
                return None
        elif "origClientOrderId" in q:
            matches = [o for o in self.orders.values() if o["clientOrderId"] == q["origClientOrderId"]]
            order = matches[-1] if matches else None
        else:
            raise _reject(-1102, "Param 'origClientOrderId' or 'orderId' must be sent, but both were empty/null!")
        return order if order is not None and order["symbol"] == symbol else None

    def _find_algo(self, q: dict[str, str]) -> dict | None:
        if "algoId" in q:
            try:
                return self.algo_orders.get(int(q["algoId"]))
            except ValueError:
                return None
        if "clientAlgoId" in q:
            matches = [a for a in self.algo_orders.values() if a["clientAlgoId"] == q["clientAlgoId"]]
            return matches[-1] if matches else None
        raise _reject(-1102, "Param 'clientAlgoId' or 'algoId' must be sent, but both were empty/null!")


def _truthy(value: str | None) -> bool:
    return str(value).lower() == "true"


def _without(record: dict, *keys: str) -> dict:
    return {k: v for k, v in record.items() if k not in keys}


def _without_signature(raw: str) -> str:
    return "&".join(part for part in raw.split("&") if part and not part.startswith("signature="))


def _long_param(q: dict[str, str], name: str) -> int | None:
    if name not in q:
        return None
    try:
        return int(q[name])
    except ValueError:
        raise _reject(-1102, f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed.") from None


def _limit(q: dict[str, str], default: int, maximum: int) -> int:
    limit = _long_param(q, "limit")
    if limit is None:
        return default
    if not 1 <= limit <= maximum:
        raise _reject(-1130, "Data sent for parameter 'limit' is not valid.")
    return limit


def _time_range(q: dict[str, str]) -> tuple[int | None, int | None]:
    start, end = _long_param(q, "startTime"), _long_param(q, "endTime")
    if start is not None and end is not None and start > end:
        raise _reject(-1023, "Start time is greater than end time.")
    return start, end


def _time_filter(rows: list[dict], q: dict[str, str], key: str) -> list[dict]:
    if "startTime" in q:
        rows = [r for r in rows if r[key] >= int(q["startTime"])]
    if "endTime" in q:
        rows = [r for r in rows if r[key] <= int(q["endTime"])]
    return rows
