"""Prometheus metrics (METRICS_PORT): what the running daemon shows a scraper.

Imported only when METRICS_PORT is set, so a run without it never loads prometheus_client.

A scrape builds the figures from the books, the wallet and the candles under the trading lock each
heartbeat holds, so it never reads them while a tick changes them (it waits for a tick in progress) and
shows one heartbeat's figures, never half of two. The heartbeat itself only adds its duration to the
histogram: building the figures costs 0.2 ms with 21 bots and 4 ms with 504 (proportional to the
series), once per scrape (every 15 s, say) rather than once per heartbeat. The HTTP server is aiohttp's,
on the loop (the daemon already depends on aiohttp): it stops at once at shutdown, where
prometheus_client's server thread would need its poll to end.

Names follow Prometheus' conventions: the `trading_bot_` prefix, seconds, `_total` for counters, and
labels from bounded sets (the traded symbols and timeframes, a handful of states and methods).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from trading_bot.domain.protections import ACTIVE, HALTED, REDUCING

if TYPE_CHECKING:
    from trading_bot.engine.notifications.outbox import Counters
    from trading_bot.engine.status import StatusReport
    from trading_bot.engine.supervision import ReconcileTally
    from trading_bot.exchange.client import ExchangeClient

log = logging.getLogger("trading_bot")

PREFIX = "trading_bot_"
TRADING_STATES = (ACTIVE, REDUCING, HALTED)
USER_STREAM_STATES = ("connected", "connecting", "reconnecting", "off")  # exchange/user_stream.py's StreamState
# A heartbeat is usually a few ms; a slow exchange or a big universe can take seconds.
HEARTBEAT_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class _Snapshot(Collector):
    """The figures built for the scrape in progress, as metric families."""

    def __init__(self) -> None:
        self.families: list[Metric] = []

    def collect(self) -> Iterable[Metric]:
        return self.families  # one reference read: a scrape sees the old list or the new one


def build_families(report: StatusReport, client: ExchangeClient | None = None,
                   tally: ReconcileTally | None = None) -> list[Metric]:
    """Every figure but the heartbeat histogram, from the status report's parts, the exchange client
    (once one was made) and the reconciliations' tally (live)."""
    broker, wallet, mdm = report.broker, report.broker.wallet, report.mdm
    families: list[Metric] = []

    def gauge(name: str, doc: str, value: float) -> None:
        families.append(GaugeMetricFamily(PREFIX + name, doc, value=value))

    positions = broker.open_positions()
    upnl = sum(p.unrealised(report.mark(p)) for p in positions)
    gauge("equity_usdt", "Balance plus the open positions' unrealised PnL at the last closes, USDT.",
          wallet.balance + upnl)
    gauge("balance_usdt", "The booked balance (closed trades, fees and funding), USDT.", wallet.balance)
    gauge("realised_pnl_usdt", "Balance minus the initial balance, USDT.", wallet.realised_pnl)
    gauge("unrealised_pnl_usdt", "The open positions' PnL at the last closes, USDT.", upnl)
    gauge("fees_paid_usdt", "Fees paid on closed trades since the books began, USDT.", wallet.fees_paid)
    gauge("funding_usdt", "Funding booked since the books began (+ received, − paid), USDT.", wallet.funding)
    gauge("bots", "Bots running (one per symbol and timeframe).", report.bots)
    gauge("pending_entries", "Signals waiting for their entry fill.", broker.pending_count())
    gauge("order_intents", "Orders sent whose outcome is not booked yet (live).", len(broker.intents))

    open_by_symbol = GaugeMetricFamily(PREFIX + "open_positions", "Open positions by symbol.", labels=["symbol"])
    counts = dict.fromkeys(sorted({s.symbol for s in mdm.series.values()}), 0)
    for p in positions:
        counts[p.symbol] = counts.get(p.symbol, 0) + 1
    for symbol, n in counts.items():
        open_by_symbol.add_metric([symbol], n)
    families.append(open_by_symbol)

    # Wallet figures that only grow (they survive restarts: the books are saved), so counters.
    trades = CounterMetricFamily(PREFIX + "trades_closed", "Trades closed, by outcome.", labels=["outcome"])
    trades.add_metric(["win"], wallet.wins)
    trades.add_metric(["loss"], wallet.trades - wallet.wins)
    families.append(trades)

    state = broker.trading_state().state
    states = GaugeMetricFamily(PREFIX + "trading_state", "1 for the trading state in force, 0 for the others.",
                               labels=["state"])
    for name in TRADING_STATES:
        states.add_metric([name], 1.0 if state == name else 0.0)
    families.append(states)

    stats = mdm.stats
    ratio = GaugeMetricFamily(PREFIX + "cache_hit_ratio", "Hits / lookups of the candle and feature caches.",
                              labels=["cache"])
    ratio.add_metric(["data"], stats.data_hit_rate)
    ratio.add_metric(["features"], stats.feature_hit_rate)
    families.append(ratio)
    lookups = CounterMetricFamily(PREFIX + "cache_lookups", "Cache lookups, by cache and result.",
                                  labels=["cache", "result"])
    for cache, hits, misses in (("data", stats.data_hits, stats.data_misses),
                                ("features", stats.feature_hits, stats.feature_misses)):
        lookups.add_metric([cache, "hit"], hits)
        lookups.add_metric([cache, "miss"], misses)
    families.append(lookups)
    families.append(CounterMetricFamily(PREFIX + "candle_fetch_errors", "Candle fetches that failed.",
                                        value=stats.fetch_errors))

    if client is not None:
        families.extend(exchange_families(client))
    if tally is not None:
        families.extend(reconciliation_families(tally))
    connections = mdm.feed_connections()
    if connections is not None:  # candles pushed over websockets
        feed = GaugeMetricFamily(PREFIX + "candle_feed_connections",
                                 "Websocket connections of the candle feed, by state (rest: polling for now).",
                                 labels=["state"])
        for name, n in sorted(connections.items()):
            feed.add_metric([name], n)
        families.append(feed)
    stream = broker.stream_state
    if stream is not None:  # live
        user_stream = GaugeMetricFamily(PREFIX + "user_stream_state",
                                        "1 for the account's user data stream state, 0 for the others (live).",
                                        labels=["state"])
        for name in USER_STREAM_STATES:
            user_stream.add_metric([name], 1.0 if stream == name else 0.0)
        families.append(user_stream)

    latency = broker.latency
    if latency is not None:  # live only
        entry = GaugeMetricFamily(PREFIX + "entry_latency_seconds",
                                  "Signal candle's close to entry order acknowledged, over the last 1000 entries.",
                                  labels=["quantile"])
        for q in (50, 99):
            value = latency.percentile(q)
            if value is not None:
                entry.add_metric([str(q / 100)], value / 1000)
        families.append(entry)
        gauge("entry_latency_orders", "Entries the latency quantiles are computed over.", len(latency.samples))

    now_ms = report.clock.now_ms()
    age = GaugeMetricFamily(PREFIX + "candle_age_seconds",
                            "Seconds since the series' last closed candle closed, on the bot's clock.",
                            labels=["symbol", "timeframe"])
    for s in mdm.series.values():
        if s.last_ts is not None:
            age.add_metric([s.symbol, s.timeframe], (now_ms - (s.last_ts + s.tf_ms)) / 1000)
    families.append(age)
    # How long the next candle is overdue (0 while it is not due yet): what a stale-feed alert asks,
    # the same for every timeframe.
    overdue = GaugeMetricFamily(PREFIX + "candle_overdue_seconds",
                                "Seconds since the series' next candle was due and did not come (0: not due yet).",
                                labels=["symbol", "timeframe"])
    for s in mdm.series.values():
        if s.last_ts is not None:
            overdue.add_metric([s.symbol, s.timeframe], max(0.0, (now_ms - (s.last_ts + 2 * s.tf_ms)) / 1000))
    families.append(overdue)
    # Live: a position the exchange holds without our stop or target order (paper: the rules are its
    # stop and target, always).
    unprotected = sum(1 for p in positions if p.missing_protection()) if broker.mode == "live" else 0
    gauge("unprotected_positions", "Open positions without a stop or a target order on the exchange (live).",
          unprotected)

    figures = report.figures
    gauge("start_time_seconds", "When this run started, seconds since the epoch.", figures.started_ms / 1000)
    return families


def exchange_families(client: ExchangeClient) -> list[Metric]:
    """Requests, errors and their time on the wire, and the weight budget of the minute."""
    stats = client.stats
    requests = CounterMetricFamily(PREFIX + "exchange_requests", "Exchange REST requests, by ccxt method.",
                                   labels=["method"])
    for method, n in sorted(stats.calls.items()):
        requests.add_metric([method], n)
    errors = CounterMetricFamily(PREFIX + "exchange_errors",
                                 "Exchange REST requests that failed, by ccxt method and ccxt error class.",
                                 labels=["method", "error"])
    for (method, kind), n in sorted(stats.errors.items()):
        errors.add_metric([method, kind], n)
    duration = HistogramMetricFamily(PREFIX + "exchange_request_duration_seconds",
                                     "Exchange REST requests, sent to answered (not the wait for the weight budget).")
    duration.add_metric([], stats.cumulative_buckets(), sum_value=stats.duration_sum_s)
    budget = client.budget
    used = GaugeMetricFamily(PREFIX + "exchange_weight_used",
                             "Request weight counted against the last minute (ours, or the exchange's count if higher).",
                             value=budget.used())
    limit = GaugeMetricFamily(PREFIX + "exchange_weight_limit", "The exchange's request weight limit per minute.",
                              value=budget.limit)
    waited = CounterMetricFamily(PREFIX + "exchange_weight_wait_seconds",
                                 "Seconds requests waited for the weight budget (or a 429/418 pause).",
                                 value=budget.waited_s)
    return [requests, errors, duration, used, limit, waited]


def reconciliation_families(tally: ReconcileTally) -> list[Metric]:
    rounds = CounterMetricFamily(PREFIX + "reconciliations", "Reconciliations with the exchange, by result.",
                                 labels=["result"])
    rounds.add_metric(["done"], tally.rounds)
    rounds.add_metric(["failed"], tally.failed)
    found = CounterMetricFamily(PREFIX + "reconciliation_problems_found",
                                "Problems reconciliations left for a person, since the start.", value=tally.problems)
    last = GaugeMetricFamily(PREFIX + "reconciliation_problems",
                             "Problems the last completed reconciliation left for a person (live).",
                             value=tally.last_problems)
    return [rounds, found, last]


def notification_families(counters: Mapping[str, Counters]) -> list[Metric]:
    """What became of the notifications, by destination (telegram, webhook)."""
    outcomes = CounterMetricFamily(PREFIX + "notifications",
                                   "Notifications by destination and outcome (dropped: the queue was full; failed: given up).",
                                   labels=["destination", "outcome"])
    retries = CounterMetricFamily(PREFIX + "notification_retries", "Notification sends tried again, by destination.",
                                  labels=["destination"])
    for name, c in sorted(counters.items()):
        for outcome, n in (("sent", c.sent), ("dropped", c.dropped), ("failed", c.failed)):
            outcomes.add_metric([name, outcome], n)
        retries.add_metric([name], c.retries)
    return [outcomes, retries]


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host.lower() == "localhost"


def loopback_only(bound_to: str) -> Callable[..., Awaitable[web.StreamResponse]]:
    """Bound to loopback, answer only requests addressed to a loopback name: a web page the operator
    visits could otherwise point its own host name at 127.0.0.1 (DNS rebinding) and read the account
    through the operator's browser. A METRICS_HOST opened wider is the operator's choice: no check."""
    check = is_loopback(bound_to)

    @web.middleware
    async def middleware(request: web.Request,
                         handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
        if check:
            name = urlsplit("//" + request.host).hostname or ""
            if not is_loopback(name):
                return web.Response(status=421, text="this server answers only at 127.0.0.1 or localhost\n")
        return await handler(request)

    return middleware


class Metrics:
    """The registry, its HTTP endpoint, and the update the status report calls after each heartbeat."""

    def __init__(self, host: str, port: int, exchange: Callable[[], ExchangeClient | None] = lambda: None,
                 tally: ReconcileTally | None = None,
                 notifications: Callable[[], Mapping[str, Counters]] = dict,
                 report: StatusReport | None = None, trading: asyncio.Lock | None = None) -> None:
        self.host = host
        self.port = port
        self.report = report  # None: only the heartbeat histogram to show
        self.trading = trading or asyncio.Lock()  # the daemon's: held by each heartbeat and by a scrape
        self.exchange = exchange  # the process's exchange client once one was made (paper offline: never)
        self.tally = tally
        self.notifications = notifications  # each destination's counters, while the notifications run
        self.registry = CollectorRegistry(auto_describe=True)  # our own: nothing of the process's global one
        self._snapshot = _Snapshot()
        self.registry.register(self._snapshot)
        self.heartbeat = Histogram(PREFIX + "heartbeat_duration_seconds", "One heartbeat, start to end.",
                                   buckets=HEARTBEAT_BUCKETS, registry=self.registry)
        self._runner: web.AppRunner | None = None

    def update(self, report: StatusReport) -> None:
        """After a heartbeat: its duration (the figures are built when a scrape asks)."""
        self.heartbeat.observe(report.figures.cycle_ms / 1000)

    def refresh(self, report: StatusReport) -> None:
        """Build the figures from the report's parts now (between heartbeats: the caller sees to it)."""
        families = build_families(report, self.exchange(), self.tally)
        counters = self.notifications()
        if counters:
            families.extend(notification_families(counters))
        self._snapshot.families = families

    def exposition(self) -> bytes:
        return generate_latest(self.registry)

    async def _scrape(self, request: web.Request) -> web.Response:
        if self.report is not None:
            async with self.trading:  # between heartbeats
                self.refresh(self.report)
        return web.Response(body=self.exposition(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def start(self, routes: Sequence[web.AbstractRouteDef] = ()) -> bool:
        """Listen on METRICS_HOST:METRICS_PORT; False (logged) if the address is taken or invalid:
        the metrics are not worth stopping the trading for. `routes`: more to serve on the same port
        (the status page, engine/status_page.py)."""
        app = web.Application(middlewares=[loopback_only(self.host)])
        app.router.add_get("/metrics", self._scrape)
        app.router.add_routes(routes)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        try:
            await web.TCPSite(runner, self.host, self.port).start()
        except OSError as exc:
            await runner.cleanup()
            log.error("METRICS_PORT: cannot listen on %s:%d (%s): running without metrics", self.host, self.port, exc)
            return False
        self._runner = runner
        log.info("metrics: http://%s:%d/metrics", self.host, self.port)
        return True

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
