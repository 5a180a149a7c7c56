"""`trading-bot fetch`: download long candle history into the CSV cache (data/candles), and each
symbol's funding-rate history beside it (exchange/funding_download.py, over the same range).

The daemon's ExchangeSource asks for the newest few hundred candles per heartbeat; the analyzer and
the backtest want months of them, hundreds of requests per series. This module does that download
with the same guarantees the daemon relies on:

- Every request goes through the shared ExchangeClient, so the process-wide request-weight budget,
  the 429/418 pause and the transient-error retry policy apply unchanged.
- The cache file is the only resume point (no separate progress file to get out of step): a run
  starts after the newest cached candle, and each page is appended the moment it arrives, so an
  interrupted run keeps what it got and the next run neither re-downloads nor duplicates it.
- Only closed candles, judged by the exchange's clock: with a local clock running ahead, the
  forming candle would otherwise reach an append-only file and stay there with a wrong close.
- The cache is append-only by design (readers may be tailing it), so history older than a file's
  first candle is not prepended; the summary says so instead of silently ignoring --since.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Iterator, Sequence
from contextlib import aclosing, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

import numpy as np

from trading_bot.domain.candles import COLUMNS, EMPTY, TS
from trading_bot.domain.formatting import format_ms
from trading_bot.domain.timeframes import last_closed_open_ms, timeframe_ms
from trading_bot.exchange.client import ExchangeClient
from trading_bot.exchange.errors import is_exchange_error, short_error
from trading_bot.exchange.funding_download import FundingPlan, FundingResult, fetch_funding, plan_funding
from trading_bot.exchange.klines import kline_pages
from trading_bot.exchange.network import exchange_host, network_reachable
from trading_bot.exchange.universe import UniverseUnavailable, exchange_universe
from trading_bot.marketdata.candle_csv import (
    ReadReport,
    append_candles,
    cache_file_name,
    clean_candles,
    parse_candle_lines,
    read_candles,
)
from trading_bot.ops.progress import Progress

if TYPE_CHECKING:
    from trading_bot.settings import Settings


DEFAULT_SINCE_DAYS = 90


DAY_MS = 86_400_000


DEFAULT_CONCURRENCY = 4


class FetchUsageError(ValueError):
    """Something the user asked for cannot be done (bad range, unknown symbol): exit code 2."""


class FetchUnavailable(RuntimeError):
    """The exchange cannot be reached or refuses to serve: exit code 1."""


def align_up(ms: int, tf_ms: int) -> int:
    """The open time of the first candle opening at or after ms (1w candles open on Mondays)."""
    at_or_before = last_closed_open_ms(ms, tf_ms) + tf_ms
    return at_or_before if at_or_before == ms else at_or_before + tf_ms


def check_range(since_ms: int | None, until_ms: int | None) -> None:
    if since_ms is not None and until_ms is not None and since_ms >= until_ms:
        raise FetchUsageError(f"--since ({format_ms(since_ms)}) must be before --until ({format_ms(until_ms)})")


def first_cached_ms(path: Path) -> int | None:
    """The oldest cached candle's open time, from the head of the file only (files can be large)."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(1 << 14)
    except FileNotFoundError:
        return None
    lines = [line for line in head.split(b"\n")[:-1] if line.strip() and not line.startswith(b"timestamp")]
    rows = parse_candle_lines(lines[:64], ReadReport())  # [:-1] above: the last piece may be cut
    return int(rows[0, TS]) if rows.shape[0] else None


@dataclass(frozen=True)
class SeriesPlan:
    """What one series needs: candles opening in [start_ms, end_ms], appended to path."""

    symbol: str
    timeframe: str
    tf_ms: int
    path: Path
    start_ms: int
    end_ms: int
    cache_first_ms: int | None
    cache_last_ms: int | None
    not_fetched_before_ms: int | None  # --since was earlier than the cache's first candle

    @property
    def expected(self) -> int:
        return max(0, (self.end_ms - self.start_ms) // self.tf_ms + 1)


def plan_series(candles_dir: Path, symbol: str, timeframe: str, since_ms: int, until_ms: int | None,
                now_ms: int) -> SeriesPlan:
    """Continue after the newest cached candle, or start at since_ms on an empty cache.

    With a cache, the download always continues from its end even when --since is later, so the
    file never gets a hole the daemon and the backtest would have to cope with."""
    tf_ms = timeframe_ms(timeframe)
    path = candles_dir / cache_file_name(symbol, timeframe)
    newest, _ = read_candles(path, limit=1)
    cache_last = int(newest[-1, TS]) if newest.shape[0] else None
    cache_first = first_cached_ms(path) if cache_last is not None else None
    end = last_closed_open_ms(now_ms, tf_ms)
    if until_ms is not None:
        end = min(end, align_up(until_ms, tf_ms) - tf_ms)  # candles opening before --until
    first_wanted = align_up(since_ms, tf_ms)
    if cache_last is None:
        return SeriesPlan(symbol, timeframe, tf_ms, path, first_wanted, end, None, None, None)
    skipped = cache_first if cache_first is not None and first_wanted < cache_first else None
    return SeriesPlan(symbol, timeframe, tf_ms, path, cache_last + tf_ms, end, cache_first, cache_last, skipped)


@dataclass
class SeriesResult:
    plan: SeriesPlan
    added: int = 0
    requests: int = 0
    empty_pages: int = 0
    first_ms: int | None = None  # the range cached after this run
    last_ms: int | None = None
    error: str | None = None

    def line(self) -> str:
        p = self.plan
        head = f"{p.symbol} {p.timeframe}: +{self.added:,} candles"
        if self.first_ms is None or self.last_ms is None:
            span = "nothing cached"
        else:
            span = f"cached {format_ms(self.first_ms)} → {format_ms(self.last_ms)} UTC"
        state = "" if self.error or self.added or p.expected else " (up to date)"
        return f"{head}{state}; {span}"


@dataclass
class FetchReport:
    series: list[SeriesResult]
    requests: int  # every request this run sent (markets, server time and retries included)
    since_ms: int
    until_ms: int | None
    now_ms: int
    funding: list[FundingResult] = field(default_factory=list)  # one per symbol

    @property
    def added(self) -> int:
        return sum(r.added for r in self.series)

    @property
    def funding_added(self) -> int:
        return sum(r.added for r in self.funding)

    @property
    def failed(self) -> list[SeriesResult]:
        return [r for r in self.series if r.error]

    @property
    def funding_failed(self) -> list[FundingResult]:
        return [r for r in self.funding if r.error]

    @property
    def ok(self) -> bool:
        return not self.failed and not self.funding_failed

    def incomplete(self) -> str:
        """What did not finish, e.g. `2 candle series and 1 funding history incomplete`."""
        parts = []
        if self.failed:
            parts.append(f"{len(self.failed)} candle series")
        if self.funding_failed:
            n = len(self.funding_failed)
            parts.append(f"{n} funding histor{'y' if n == 1 else 'ies'}")
        return " and ".join(parts) + " incomplete" if parts else ""


async def fetch_series(pool: ExchangeClient, plan: SeriesPlan, progress: Progress) -> SeriesResult:
    """Page through one series, appending each page as it arrives. The walk goes on past stretches
    the exchange has no candles for (counted in empty_pages)."""
    import ccxt

    result = SeriesResult(plan, first_ms=plan.cache_first_ms, last_ms=plan.cache_last_ms)
    tf_ms = plan.tf_ms
    try:
        pages = kline_pages(pool, plan.symbol, plan.timeframe, tf_ms, plan.start_ms, plan.end_ms, past_gaps=True)
        async with aclosing(pages):
            async for kline_page in pages:
                result.requests += 1
                page = np.array(kline_page.rows, dtype=np.float64).reshape(-1, COLUMNS) if kline_page.rows else EMPTY
                wanted = page[(page[:, TS] >= kline_page.since_ms) & (page[:, TS] <= plan.end_ms)]  # drops the forming candle
                rows = clean_candles(wanted, ReadReport()) if wanted.shape[0] else EMPTY
                if rows.shape[0]:
                    await asyncio.to_thread(append_candles, plan.path, rows)
                    result.added += rows.shape[0]
                    result.first_ms = int(rows[0, TS]) if result.first_ms is None else result.first_ms
                    result.last_ms = int(rows[-1, TS])
                if not page.shape[0]:
                    result.empty_pages += 1
                progress.advance((min(kline_page.next_ms, plan.end_ms + tf_ms) - kline_page.since_ms) // tf_ms)
    except (ccxt.BaseError, OSError) as exc:
        result.error = short_error(exc)
    return result


class _LogRelay(logging.Handler):
    """The package's warnings (the pool's retries, the cache reader) shown through the progress
    display, so they do not tear the bar line. Until the display exists they are held back, and
    dropped if the run stops before it starts: then the one error line says what went wrong."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.progress: Progress | None = None
        self.pending: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if self.progress is None:
            self.pending.append(record.getMessage())
        else:
            self.progress.note(record.getMessage())

    def attach(self, progress: Progress) -> None:
        self.progress = progress
        for line in self.pending:
            progress.note(line)
        self.pending.clear()


@contextmanager
def _relayed_warnings() -> Iterator[_LogRelay]:
    relay = _LogRelay()
    logger = logging.getLogger("trading_bot")
    logger.addHandler(relay)
    try:
        yield relay
    finally:
        logger.removeHandler(relay)


async def fetch_history(pool: ExchangeClient, candles_dir: Path, symbols: Sequence[str], timeframes: Sequence[str],
                        since_ms: int | None = None, until_ms: int | None = None, *,
                        concurrency: int = DEFAULT_CONCURRENCY, stream: TextIO = sys.stderr) -> FetchReport:
    """Bring every symbol × timeframe cache up to the last closed candle (or --until). The caller
    owns the pool. Raises FetchUsageError / FetchUnavailable before anything is written; a series
    that fails later is reported in its SeriesResult and the others go on."""
    check_range(since_ms, until_ms)
    with _relayed_warnings() as relay:
        return await _fetch_history(pool, candles_dir, symbols, timeframes, since_ms, until_ms, concurrency, stream, relay)


async def _fetch_history(pool: ExchangeClient, candles_dir: Path, symbols: Sequence[str], timeframes: Sequence[str],
                         since_ms: int | None, until_ms: int | None, concurrency: int, stream: TextIO,
                         relay: _LogRelay) -> FetchReport:
    import ccxt

    calls_before = sum(pool.calls.values())
    for timeframe in timeframes:
        try:
            timeframe_ms(timeframe)
        except ValueError as exc:
            raise FetchUsageError(f"--timeframes: {exc}") from None
    try:
        markets = await pool.markets()
        now_ms = int(await pool.call("fetch_time"))
    except ValueError as exc:  # an exchange id ccxt does not know
        raise FetchUsageError(str(exc)) from None
    except ccxt.BaseError as exc:
        raise FetchUnavailable(f"{pool.exchange_id} unavailable ({short_error(exc)})") from None
    unknown = [s for s in symbols if s not in markets]
    if unknown:
        raise FetchUsageError(f"--symbols: {', '.join(unknown)} not listed on {pool.exchange_id}")
    since = now_ms - DEFAULT_SINCE_DAYS * DAY_MS if since_ms is None else since_ms
    if since >= now_ms:
        raise FetchUsageError(f"--since ({format_ms(since)}) is in the future (exchange time {format_ms(now_ms)})")
    plans = [plan_series(candles_dir, s, tf, since, until_ms, now_ms) for s in symbols for tf in timeframes]
    funding_plans = [plan_funding(candles_dir, s, since, until_ms, now_ms) for s in symbols]
    progress = Progress(sum(p.expected for p in plans), "fetch", stream, items=len(plans) + len(funding_plans))
    relay.attach(progress)
    semaphore = asyncio.Semaphore(max(1, concurrency))

    async def one(plan: SeriesPlan) -> SeriesResult:
        async with semaphore:
            result = await fetch_series(pool, plan, progress)
        progress.item_done(result.line() + (f" — incomplete: {result.error}" if result.error else ""))
        return result

    async def one_funding(plan: FundingPlan) -> FundingResult:
        async with semaphore:
            result = await fetch_funding(pool, plan)
        progress.item_done(result.line() + (f" — incomplete: {result.error}" if result.error else ""))
        return result

    try:
        async with asyncio.TaskGroup() as group:  # an unexpected error cancels the other series
            tasks = [group.create_task(one(plan)) for plan in plans]
            funding_tasks = [group.create_task(one_funding(plan)) for plan in funding_plans]
    finally:
        progress.close()
    return FetchReport([t.result() for t in tasks], sum(pool.calls.values()) - calls_before, since, until_ms, now_ms,
                       [t.result() for t in funding_tasks])


async def run_fetch(settings: Settings, since_ms: int | None = None, until_ms: int | None = None, *,
                    stream: TextIO = sys.stderr) -> FetchReport:
    """The CLI's entry: probe the exchange (offline answers at once instead of after the retries),
    then fetch settings.symbols × settings.timeframes with a public (keyless) pool, closed at the end."""
    check_range(since_ms, until_ms)
    try:
        host, port = exchange_host(settings.exchange_id, settings.exchange_url)
    except AttributeError:
        raise FetchUsageError(f"EXCHANGE_ID: unknown ccxt exchange id {settings.exchange_id!r}") from None
    reachable, why = await network_reachable(host, port)
    if not reachable:
        raise FetchUnavailable(f"cannot download history: {why}")
    pool = ExchangeClient(settings.exchange_id, settings.exchange_url, timeout_ms=settings.exchange_timeout_ms,
                        demo=settings.exchange_demo)
    try:
        symbols = settings.symbols
        if settings.universe is not None:  # top:N / all: the symbols the daemon would choose now
            try:
                symbols = await exchange_universe(pool, settings.universe)
            except Exception as exc:
                if not isinstance(exc, UniverseUnavailable) and not is_exchange_error(exc):
                    raise
                raise FetchUnavailable(f"cannot choose TRADING_SYMBOLS={settings.universe}: {short_error(exc)}") from None
            print(f"{settings.universe}: {len(symbols)} symbols: {', '.join(symbols)}", file=stream)
        return await fetch_history(pool, settings.candles_dir, symbols, settings.timeframes, since_ms, until_ms,
                                   concurrency=min(settings.fetch_concurrency, DEFAULT_CONCURRENCY), stream=stream)
    finally:
        await pool.close()


def render_summary(report: FetchReport) -> str:
    lines = []
    for result in report.series:
        lines.append(result.line())
        plan = result.plan
        if plan.not_fetched_before_ms is not None:
            lines.append(f"  history before {format_ms(plan.not_fetched_before_ms)} not fetched: the cache starts there "
                         f"and is append-only (move {plan.path.name} away to download from {format_ms(report.since_ms)})")
        if result.empty_pages:
            lines.append(f"  the exchange had no candles for {result.empty_pages} page(s) of this range (skipped)")
        if result.error:
            lines.append(f"  incomplete: {result.error} (rerun to resume)")
    for funding in report.funding:
        lines.append(funding.line())
        if funding.plan.not_fetched_before_ms is not None:
            lines.append(f"  funding before {format_ms(funding.plan.not_fetched_before_ms)} not fetched: the cache starts "
                         f"there (move {funding.plan.path.name} away to download from {format_ms(report.since_ms)})")
        if funding.error:
            lines.append(f"  incomplete: {funding.error} (rerun to resume)")
    symbols = f"{len(report.funding)} symbol{'' if len(report.funding) == 1 else 's'}"
    lines.append(f"total: {report.added:,} candles added over {len(report.series)} series, "
                 f"{report.funding_added:,} funding rates over {symbols}, {report.requests} requests")
    return "\n".join(lines)
