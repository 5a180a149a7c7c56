"""The exchange layer: one pooled ccxt client per (exchange, account), shared by every bot.

- Created inside the running event loop on first use; `close()` on shutdown (no unclosed sessions).
- Every call goes through one request-weight budget (budget.py) and, for reads, a retry policy
  (retry.py) that only retries transient errors. Orders are never retried blindly: the caller
  passes retry=False and resolves timeouts by looking its client order id up (execution/live/broker.py).
- 429/418 pause the whole pool for the exchange's Retry-After; -1021 (clock skew) resyncs the time
  offset and retries once.
- ccxt is imported on first use only: it costs about a second and most of the memory budget, and a
  paper run on a warm cache must be ready before that.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from typing import Any
from urllib.parse import urlparse

from trading_bot.exchange.budget import WeightBudget
from trading_bot.exchange.request_stats import RequestStats
from trading_bot.exchange.retry import RetryPolicy

log = logging.getLogger(__name__)


MARKETS_TTL_S = 3600.0


OUTAGE_S = 60.0  # failing this long counts as an outage: reconcile when it ends


DEFAULT_PAUSE_S = {429: 10.0, 418: 120.0}


# The headers of the answer to the request this task is making. ccxt's last_response_headers is
# shared by every concurrent request (and kept when a request gets no answer at all), so the weight
# count and Retry-After are read from the request's own answer instead.
_ANSWER_HEADERS: ContextVar[dict[str, str] | None] = ContextVar("answer_headers", default=None)


def capture_answer_headers(client: Any) -> None:
    original = client.on_rest_response

    def on_rest_response(code: Any, reason: Any, url: Any, method: Any, response_headers: Any, *rest: Any) -> Any:
        headers = _ANSWER_HEADERS.get()
        if headers is not None and response_headers:
            headers.update(response_headers)
        return original(code, reason, url, method, response_headers, *rest)

    client.on_rest_response = on_rest_response


def _header(headers: Mapping[str, str], name: str) -> str | None:
    return next((value for key, value in headers.items() if key.lower() == name), None)


# Binance USDⓈ-M request weights: exchange quirks as data, not branches.
WEIGHTS: dict[str, int] = {
    "load_markets": 1, "fetch_time": 1, "fetch_ticker": 1, "fetch_balance": 5, "fetch_positions": 5,
    "create_order": 1, "fetch_order": 1, "cancel_order": 1, "fetch_open_orders": 1, "fetch_my_trades": 5,
    "set_leverage": 1, "set_margin_mode": 1, "fetch_funding_history": 30,  # GET /fapi/v1/income
    "fetch_funding_rate_history": 0, "fetch_funding_intervals": 0,  # limited on their own (OWN_LIMITS)
    "fetch_tickers": 40,  # GET /fapi/v1/ticker/24hr without a symbol: every market's 24 h figures
    "fapiPrivatePostListenKey": 1, "fapiPrivatePutListenKey": 1,  # the user data stream's listen key
}


# Requests with a limit of their own beside the IP's weight per minute: method -> (limit, requests,
# seconds). Binance: GET /fapi/v1/fundingRate and /fapi/v1/fundingInfo weigh 0 and share 500 requests
# per 5 minutes per IP.
OWN_LIMITS: dict[str, tuple[str, int, float]] = {
    "fetch_funding_rate_history": ("funding", 500, 300.0),
    "fetch_funding_intervals": ("funding", 500, 300.0),
}


def point_client_at(client: Any, base_url: str) -> None:
    """Send every REST endpoint family to base_url (a proxy, a demo endpoint, our fake exchange),
    keeping each path. ccxt picks some exchanges' error-code maps by URL (Binance maps -2019 to
    InsufficientFunds only for https://fapi.binance.com/…), so errors are looked up as if the
    request had gone to the original host: the trading code sees the same exceptions either way."""
    api = client.urls.get("api", {})
    if not isinstance(api, dict):
        return
    originals: list[tuple[str, str]] = []
    for name, url in api.items():
        if isinstance(url, str):
            moved = base_url.rstrip("/") + urlparse(url).path
            originals.append((moved, url))
            api[name] = moved
    originals.sort(key=lambda pair: len(pair[0]), reverse=True)  # longest prefix first
    by_url = getattr(client, "get_exceptions_by_url", None)
    if by_url is None:
        return

    def exceptions_as_on_original_host(url: str | None, exact_or_broad: str) -> Any:
        if url is not None:
            for moved, original in originals:
                if url.startswith(moved):
                    url = original + url[len(moved):]
                    break
        return by_url(url, exact_or_broad)

    client.get_exceptions_by_url = exceptions_as_on_original_host


def stream_url_for(exchange_url: str) -> str:
    """The websocket base beside a REST base given by EXCHANGE_URL (a proxy, our fake exchange):
    the same host, ws:// for http:// and wss:// for https://, path /ws; '' keeps ccxt's own."""
    if not exchange_url:
        return ""
    parsed = urlparse(exchange_url)
    scheme = "wss" if parsed.scheme == "https" else "ws"
    return f"{scheme}://{parsed.netloc}/ws"


def is_clock_skew(exc: BaseException) -> bool:
    return "-1021" in str(exc)


class ExchangeClient:
    """One ccxt client for one (exchange id, account), its weight budget and its retry policy."""

    def __init__(self, exchange_id: str, exchange_url: str = "", api_key: str = "", api_secret: str = "",
                 weight_limit: int = 2400, retry: RetryPolicy | None = None, timeout_ms: int = 10_000,
                 on_activity: Callable[[], None] | None = None, demo: bool = False,
                 now_ms: Callable[[], int] | None = None, recv_window_ms: int = 5000) -> None:
        self.exchange_id = exchange_id
        self.exchange_url = exchange_url
        self._credentials = (api_key, api_secret)
        self.timeout_ms = timeout_ms
        self.recv_window_ms = recv_window_ms  # a signed request older than this is refused by the exchange
        self.demo = demo
        self.budget = WeightBudget(weight_limit)
        self.retry = retry or RetryPolicy()
        self.on_activity = on_activity or (lambda: None)
        self.now_ms = now_ms  # the bot's clock (request timestamps follow it); None = the system clock
        self._client: Any = None
        self._failing_since: float | None = None
        self.outage_recovered = False  # set when requests work again after failing for OUTAGE_S
        self._markets_loaded_at = 0.0
        self._markets_lock: asyncio.Lock | None = None
        self.stats = RequestStats()  # requests by method, errors, durations (the metrics read them)
        self.own_budgets: dict[str, WeightBudget] = {}  # OWN_LIMITS' budgets, by limit name

    @property
    def calls(self) -> dict[str, int]:
        """Requests sent so far, by ccxt method."""
        return self.stats.calls

    def _own_budget(self, method: str) -> WeightBudget | None:
        if method not in OWN_LIMITS:
            return None
        name, requests, seconds = OWN_LIMITS[method]
        if name not in self.own_budgets:
            budget = WeightBudget(requests)  # the same headroom as the weight budget's
            budget.window_s = seconds
            self.own_budgets[name] = budget
        return self.own_budgets[name]

    async def client(self) -> Any:
        if self._client is None:
            import ccxt.async_support as ccxt_async

            klass = getattr(ccxt_async, self.exchange_id, None)
            if klass is None:
                raise ValueError(f"unknown ccxt exchange id {self.exchange_id!r}")
            api_key, secret = self._credentials
            config: dict[str, Any] = {
                # ccxt's limiter stays on as a backstop, modelled like Binance's own: a rolling minute
                # of request weight (60000 ms / 25 ms = 2400), bursts allowed. Our WeightBudget, at
                # 80 % of that and shared by the whole process, normally binds first.
                "enableRateLimit": True,
                "rateLimit": 25,
                "rateLimiterAlgorithm": "rollingWindow",
                "rollingWindowSize": 60_000,
                "timeout": self.timeout_ms,
                "options": {"fetchCurrencies": False, "adjustForTimeDifference": bool(api_key),
                            "recvWindow": self.recv_window_ms,
                            "setMarginMode": {"throwMarginModeAlreadySet": False}},
            }
            if api_key:
                config.update(apiKey=api_key, secret=secret)
            client = klass(config)
            if self.demo and hasattr(client, "enable_demo_trading"):
                client.enable_demo_trading(True)
            if self.exchange_url:
                point_client_at(client, self.exchange_url)
                if urlparse(self.exchange_url).scheme == "http":
                    client.timeout_on_exit = 0  # ccxt's wait at close is for TLS transports to wind down
            if self.now_ms is not None:
                client.milliseconds = self.now_ms
            capture_answer_headers(client)
            self._client = client
        return self._client

    async def _once(self, method: str, args: tuple[Any, ...], kwargs: dict[str, Any], weight: int) -> Any:
        import ccxt

        client = await self.client()
        own = self._own_budget(method)
        async with own.take(1) if own is not None else contextlib.nullcontext(), self.budget.take(weight):
            self.stats.sent(method)
            answer: dict[str, str] = {}
            token = _ANSWER_HEADERS.set(answer)
            started = time.perf_counter()
            failure: BaseException | None = None
            try:
                result = await getattr(client, method)(*args, **kwargs)
            except ccxt.DDoSProtection as exc:
                failure = exc
                self._pause_for(exc, answer)
                raise
            except ccxt.OperationFailed as exc:  # unreachable, or failing on its side (Binance -1001, …)
                failure = exc
                if self._failing_since is None:
                    self._failing_since = time.monotonic()
                raise
            except BaseException as exc:  # cancelled too: a request cut short has no answer
                failure = exc
                raise
            finally:
                self.stats.answered(method, time.perf_counter() - started, failure)
                _ANSWER_HEADERS.reset(token)
                self._observe(answer)
                self.on_activity()
            if self._failing_since is not None:
                if time.monotonic() - self._failing_since >= OUTAGE_S:
                    self.outage_recovered = True
                self._failing_since = None
            return result

    def _observe(self, headers: Mapping[str, str]) -> None:
        used = _header(headers, "x-mbx-used-weight-1m")
        if used and used.isdigit():
            self.budget.observe_server_usage(int(used))

    def _pause_for(self, exc: BaseException, headers: Mapping[str, str]) -> None:
        status = 418 if "418" in str(exc) else 429
        retry_after = _header(headers, "retry-after")
        try:
            seconds = float(retry_after) if retry_after else DEFAULT_PAUSE_S[status]
        except ValueError:
            seconds = DEFAULT_PAUSE_S[status]
        self.budget.pause(seconds, f"exchange answered {status} ({'IP banned' if status == 418 else 'rate limit'})")

    async def _with_clock_sync(self, method: str, args: tuple[Any, ...], kwargs: dict[str, Any], weight: int) -> Any:
        try:
            return await self._once(method, args, kwargs, weight)
        except Exception as exc:
            if not is_clock_skew(exc):
                raise
            log.warning("%s: exchange says our clock is off (-1021); resyncing the time offset", method)
            client = await self.client()
            async with self.budget.take(1):
                await client.load_time_difference()
            return await self._once(method, args, kwargs, weight)

    async def call(self, method: str, *args: Any, weight: int | None = None, retry: bool = True, **kwargs: Any) -> Any:
        """A throttled ccxt call. retry=False for anything that must not happen twice (orders)."""
        cost = WEIGHTS.get(method, 1) if weight is None else weight
        if method != "load_markets":
            await self.markets()
        if not retry:
            return await self._with_clock_sync(method, args, kwargs, cost)
        return await self.retry.run(lambda: self._with_clock_sync(method, args, kwargs, cost), f"{self.exchange_id} {method}")

    async def markets(self) -> dict[str, Any]:
        """Markets loaded once and refreshed hourly (one request at a time)."""
        if self._markets_lock is None:
            self._markets_lock = asyncio.Lock()
        async with self._markets_lock:
            client = await self.client()
            if not client.markets or time.monotonic() - self._markets_loaded_at > MARKETS_TTL_S:
                reload = bool(client.markets)
                await self.retry.run(lambda: self._once("load_markets", (reload,), {}, 1),
                                     f"{self.exchange_id} load_markets")
                self._markets_loaded_at = time.monotonic()
            return client.markets

    async def stream_client(self, ws_url: str, keepalive_ms: int) -> Any:
        """A ccxt.pro client of the same exchange for public streams, sharing this client's markets
        (loaded through the budget) so it sends no REST request of its own. ws_url: ccxt.pro's linear
        websocket base (empty: ccxt's; with EXCHANGE_URL set: the same host, `/ws`)."""
        import ccxt.pro as ccxt_pro

        klass = getattr(ccxt_pro, self.exchange_id, None)
        if klass is None:
            raise ValueError(f"ccxt.pro has no websocket client for {self.exchange_id!r}")
        markets = await self.markets()
        # OHLCVLimit: ccxt keeps this many candles per series itself; ours are in the manager.
        client = klass({"options": {"fetchCurrencies": False, "OHLCVLimit": 2}})
        if self.demo and hasattr(client, "enable_demo_trading"):
            client.enable_demo_trading(True)
        client.set_markets(markets)
        client.streaming["keepAlive"] = keepalive_ms  # a ping this often; two unanswered: the connection is dead
        # close() waits this long for TLS transports to wind down; the REST client's close, which
        # always comes after at shutdown, waits the same for every connection of the process
        client.timeout_on_exit = 0
        url = ws_url or stream_url_for(self.exchange_url)
        ws_urls = client.urls.get("api", {}).get("ws")
        if url and isinstance(ws_urls, dict):
            ws_urls["linear"] = url
        return client

    async def close(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            await client.close()

