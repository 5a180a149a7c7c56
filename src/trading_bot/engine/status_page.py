"""The live status page (METRICS_PORT): one HTML page and its JSON endpoints under /api/, served
read-only on the metrics port (engine/metrics.py's aiohttp app).

Imported only when METRICS_PORT is set, like metrics.py. What it keeps is bounded and cheap to keep:
per heartbeat one (time, equity) point into `EquityCurve` (≤ EQUITY_POINTS, the older the coarser);
per closed trade one record into `TradeTape` (the last TRADES_KEPT, and each bot's tally), which is
seeded once at start from the journal, read line by line in a thread (which also gives the curve the
books' history: the balance after each trade before this run). A request builds its answer
from the status report (StatusReport.status() is status.json's content) under the daemon's trading
lock, so it never sees a tick's books half-changed; nothing is read from disk per request or per tick.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiohttp import web

from trading_bot.domain.trades import ClosedTrade
from trading_bot.domain.wallet import bot_id
from trading_bot.persistence.state_store import iter_journal, journal_trades, trade_key

if TYPE_CHECKING:
    from trading_bot.engine.status import StatusReport

EQUITY_POINTS = 2_000
TRADES_KEPT = 200  # the most /api/trades?limit= returns
TRADES_DEFAULT = 50
REFRESH_HEADERS = {"Cache-Control": "no-store"}
# The page is self-contained: its own inline script and style, and fetches to this origin only.
PAGE_HEADERS = {
    **REFRESH_HEADERS,
    "Content-Security-Policy": "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
                               "connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'; "
                               "frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
}


class EquityCurve:
    """(time ms, equity) per heartbeat, at most `max_points`, the older the coarser, the whole run covered:
    `levels` rings of max_points / levels points each; ring 0 takes every heartbeat, and ring k, when
    full, hands every other point it drops on to ring k+1, so ring k holds every 2**k-th point. With
    2,000 points in 20 rings: the last 100 heartbeats at full resolution, and 100 × (2**20 - 1)
    heartbeats (16 years at 5 s) in all before the last ring drops its oldest. Amortised O(1) a point."""

    def __init__(self, max_points: int = EQUITY_POINTS, levels: int = 20) -> None:
        if levels < 1 or max_points // levels < 2:
            raise ValueError("an equity curve needs room for at least 2 points per level")
        self.per_level = max_points // levels
        self.max_points = self.per_level * levels
        self.rings: list[deque[tuple[int, float]]] = [deque() for _ in range(levels)]

    def add(self, time_ms: int, equity: float) -> None:
        newest = self.rings[0]
        if newest and newest[-1][0] >= time_ms:  # a second tick at the same instant: the newer figure
            newest[-1] = (newest[-1][0], equity)
            return
        newest.append((time_ms, equity))
        for k, ring in enumerate(self.rings):
            if len(ring) <= self.per_level:
                return
            ring.popleft()  # the older of the two oldest goes; the other moves one ring up
            kept = ring.popleft()
            if k + 1 < len(self.rings):
                self.rings[k + 1].append(kept)

    @property
    def points(self) -> list[tuple[int, float]]:
        """Oldest first."""
        return [point for ring in reversed(self.rings) for point in ring]


@dataclass
class BotTally:
    trades: int = 0
    wins: int = 0
    pnl: float = 0.0  # net of fees, as ClosedTrade.pnl
    funding: float = 0.0


class TradeTape:
    """The last closed trades (journal records, oldest first) and each bot's tally of all of them."""

    def __init__(self, keep: int = TRADES_KEPT) -> None:
        self.recent: deque[dict[str, Any]] = deque(maxlen=keep)
        self.tallies: dict[str, BotTally] = {}

    @classmethod
    def from_journal(cls, path: Path, keep: int = TRADES_KEPT, curve: EquityCurve | None = None,
                     initial_balance: float = 0.0) -> TradeTape:
        """Every trade of the journal, one line at a time (the journal holds each trade once). With
        `curve`: the books' history before this run, the balance from `initial_balance` after each
        trade (its PnL net of fees and the funding it booked), at its exit."""
        tape = cls(keep)
        balance, last_ms = initial_balance, None
        for record in iter_journal(path):
            if not tape._count(record) or curve is None:
                continue
            trades, _ = journal_trades((record,))
            if not trades:
                continue
            trade = trades[0]
            if last_ms is None:
                curve.add(trade.entry_ts, balance)  # where the books began
            balance += trade.net
            last_ms = max(trade.exit_ts, last_ms or trade.exit_ts)  # the journal is in closing order; never back in time
            curve.add(last_ms, balance)
        return tape

    def add(self, trade: ClosedTrade) -> None:
        record = trade.to_json()
        key = trade_key(record)
        # A resumed replay may close a trade again that the journal already has (StateStore keeps one).
        if any(trade_key(r) == key for r in self.recent):
            return
        self._count(record)

    def _count(self, record: dict[str, Any]) -> bool:
        symbol, timeframe, pnl = record.get("symbol"), record.get("timeframe"), record.get("pnl")
        if not isinstance(symbol, str) or not isinstance(timeframe, str) or not isinstance(pnl, (int, float)):
            return False  # not a trade record: nothing to show
        self.recent.append(record)
        tally = self.tallies.setdefault(bot_id(symbol, timeframe), BotTally())
        tally.trades += 1
        tally.wins += pnl > 0
        tally.pnl += pnl
        funding = record.get("funding", 0.0)
        tally.funding += funding if isinstance(funding, (int, float)) else 0.0
        return True

    def newest(self, limit: int) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for record in reversed(self.recent):
            if len(out) >= limit:
                break
            out.append(record)
        return out


def page_html() -> bytes:
    return resources.files("trading_bot.engine").joinpath("status_page.html").read_bytes()


def trades_limit(raw: str | None) -> int:
    """`?limit=N`, clamped to 1 … TRADES_KEPT; not a whole number: a 400."""
    if raw is None:
        return TRADES_DEFAULT
    try:
        limit = int(raw)
    except ValueError:
        raise web.HTTPBadRequest(text='{"error": "limit must be a whole number"}',
                                 content_type="application/json", headers=REFRESH_HEADERS) from None
    return max(1, min(limit, TRADES_KEPT))


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class StatusPage:
    """The page, its endpoints, and what it keeps of each heartbeat and closed trade."""

    def __init__(self, report: StatusReport, trading: asyncio.Lock, tape: TradeTape,
                 curve: EquityCurve | None = None) -> None:
        self.report = report
        self.trading = trading  # held by each tick and each flatten: an answer never sees half of one
        self.tape = tape
        self.curve = curve or EquityCurve()
        self.heartbeat_ms: int | None = None  # the bot's clock at the last heartbeat
        self.html = page_html()

    @classmethod
    async def load(cls, report: StatusReport, trading: asyncio.Lock) -> StatusPage:
        """The tape and the curve's history from the journal (in a thread: a long journal takes a while),
        then the equity at ready."""
        curve = EquityCurve()
        tape = await asyncio.to_thread(TradeTape.from_journal, report.store.trades_path, TRADES_KEPT, curve,
                                       report.broker.wallet.initial_balance)
        page = cls(report, trading, tape, curve)
        page.curve.add(report.clock.now_ms(), report.equity())
        return page

    # --- kept per heartbeat and per closed trade: cheap, on the loop -----------------------------

    def record(self, report: StatusReport) -> None:
        now = report.clock.now_ms()
        self.heartbeat_ms = now
        self.curve.add(now, report.equity())

    def on_closed(self, trade: ClosedTrade) -> None:
        self.tape.add(trade)

    # --- the endpoints ---------------------------------------------------------------------------

    def routes(self) -> list[web.RouteDef]:
        # GET only (no HEAD either): aiohttp answers any other method with 405.
        endpoints: Iterable[tuple[str, Handler]] = (
            ("/", self._page), ("/api/status", self._status), ("/api/positions", self._positions),
            ("/api/trades", self._trades), ("/api/equity", self._equity), ("/api/bots", self._bots))
        return [web.get(path, handler, allow_head=False) for path, handler in endpoints]

    async def _page(self, request: web.Request) -> web.Response:
        return web.Response(body=self.html, content_type="text/html", charset="utf-8", headers=PAGE_HEADERS)

    async def _json(self, build: Callable[[], Any]) -> web.Response:
        async with self.trading:
            document = build()
        return web.json_response(document, headers=REFRESH_HEADERS)

    async def _status(self, request: web.Request) -> web.Response:
        return await self._json(lambda: {**self.report.status(), "heartbeat_ms": self.heartbeat_ms})

    async def _positions(self, request: web.Request) -> web.Response:
        return await self._json(lambda: {"positions": self.report.positions()})

    async def _trades(self, request: web.Request) -> web.Response:
        limit = trades_limit(request.query.get("limit"))
        return await self._json(lambda: {"trades": self.tape.newest(limit), "limit": limit})

    async def _equity(self, request: web.Request) -> web.Response:
        return await self._json(lambda: {"points": self.curve.points, "max_points": self.curve.max_points})

    async def _bots(self, request: web.Request) -> web.Response:
        return await self._json(self.bots)

    def bots(self) -> dict[str, Any]:
        """Each running bot (the settings' order), then any other with a position or a closed trade."""
        positions = {bot_id(p["symbol"], p["timeframe"]): p for p in self.report.positions()}
        running = [bot_id(*key) for key in self.report.mdm.series]
        running_set = set(running)
        others = sorted((positions.keys() | self.tape.tallies.keys()) - running_set)
        bots = []
        for key in [*running, *others]:
            symbol, _, timeframe = key.rpartition("|")
            tally = self.tape.tallies.get(key, BotTally())
            bots.append({"bot": key, "symbol": symbol, "timeframe": timeframe, "running": key in running_set,
                         **asdict(tally), "position": positions.get(key)})
        return {"bots": bots}
