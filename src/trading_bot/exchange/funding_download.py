"""Funding-rate history for `trading-bot fetch`: Binance's GET /fapi/v1/fundingRate (ccxt's
fetch_funding_rate_history), paged into the funding cache beside the candles (marketdata/funding_csv.py).

The candle download's guarantees, kept the same way:

- Every request goes through the shared ExchangeClient: the weight budget (the endpoint weighs 0),
  its own limit of 500 requests per 5 minutes (client.OWN_LIMITS), the 429/418 pause and the retries.
- The cache file is the only resume point: a run starts after the newest cached funding moment and
  merges each page the moment it arrives, so an interrupted run keeps what it got.
- Only moments that have passed by the exchange's clock (a rate is final once paid).
- History older than the cache's first record is not fetched: a stretch between that and the cache
  would read as "no funding there" (FundingSchedule trusts what its history covers); the summary
  says so instead, as it does for candles.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from contextlib import aclosing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trading_bot.domain.formatting import format_ms
from trading_bot.domain.funding import MINUTE_MS, floor_to_minute
from trading_bot.exchange.client import ExchangeClient
from trading_bot.exchange.errors import short_error
from trading_bot.marketdata.funding_csv import FundingRecord, funding_path, merge_funding_rates, read_funding_rates

MAX_FUNDING_RATES_PER_REQUEST = 1000  # Binance's maximum limit for /fapi/v1/fundingRate


@dataclass(frozen=True)
class FundingPage:
    since_ms: int  # the startTime this request asked from
    records: list[FundingRecord]  # ascending, within the walk's range (maybe none)


def _record(entry: dict[str, Any]) -> FundingRecord | None:
    time_ms, rate = entry.get("timestamp"), entry.get("fundingRate")
    return None if time_ms is None or rate is None else (int(time_ms), float(rate))


async def funding_rate_pages(client: ExchangeClient, symbol: str, start_ms: int,
                             end_ms: int) -> AsyncGenerator[FundingPage, None]:
    """The symbol's funding records with start_ms ≤ fundingTime ≤ end_ms, one request per page of up
    to 1000. Binance answers from startTime on, ascending, so the next page starts just after the
    last record received, and a page shorter than asked for is the last one."""
    cursor = start_ms
    while cursor <= end_ms:
        answer = await client.call("fetch_funding_rate_history", symbol, since=cursor, limit=MAX_FUNDING_RATES_PER_REQUEST,
                                   params={"until": end_ms})
        parsed = sorted(r for r in map(_record, answer) if r is not None)
        records = [r for r in parsed if cursor <= r[0] <= end_ms]
        yield FundingPage(cursor, records)
        if len(answer) < MAX_FUNDING_RATES_PER_REQUEST or not records:
            return
        cursor = records[-1][0] + 1


@dataclass(frozen=True)
class FundingPlan:
    """What one symbol needs: the funding records in [start_ms, end_ms], merged into path."""

    symbol: str
    path: Path
    start_ms: int
    end_ms: int
    cache_first_ms: int | None
    cache_last_ms: int | None
    not_fetched_before_ms: int | None  # --since was earlier than the cache's first record


def plan_funding(candles_dir: Path, symbol: str, since_ms: int, until_ms: int | None, now_ms: int) -> FundingPlan:
    """Continue after the newest cached record, or start at since_ms on an empty cache; up to
    --until included (the candles opening before it reach up to it, and a position held through the
    last of them pays a funding moment at --until), of the moments that have passed by now_ms."""
    path = funding_path(candles_dir, symbol)
    cached, _ = read_funding_rates(path)
    # A moment's record is stamped a few ms after it: the one of --until's minute still belongs to it.
    end = now_ms if until_ms is None else min(now_ms, floor_to_minute(until_ms) + MINUTE_MS - 1)
    if not cached:
        return FundingPlan(symbol, path, since_ms, end, None, None, None)
    first, last = cached[0][0], cached[-1][0]
    skipped = first if since_ms < floor_to_minute(first) else None
    return FundingPlan(symbol, path, last + 1, end, first, last, skipped)


@dataclass
class FundingResult:
    plan: FundingPlan
    added: int = 0
    requests: int = 0
    first_ms: int | None = None  # the range cached after this run
    last_ms: int | None = None
    error: str | None = None

    def line(self) -> str:
        head = f"{self.plan.symbol} funding: +{self.added:,} rates"
        if self.first_ms is None or self.last_ms is None:
            span = "nothing cached"
        else:
            span = f"cached {format_ms(self.first_ms)} → {format_ms(self.last_ms)} UTC"
        state = "" if self.error or self.added else " (up to date)"
        return f"{head}{state}; {span}"


async def fetch_funding(pool: ExchangeClient, plan: FundingPlan) -> FundingResult:
    """Page through one symbol's funding history, merging each page into the cache as it arrives."""
    import ccxt

    result = FundingResult(plan, first_ms=plan.cache_first_ms, last_ms=plan.cache_last_ms)
    try:
        pages = funding_rate_pages(pool, plan.symbol, plan.start_ms, plan.end_ms)
        async with aclosing(pages):
            async for page in pages:
                result.requests += 1
                if page.records:
                    result.added += await asyncio.to_thread(merge_funding_rates, plan.path, page.records)
                    result.first_ms = page.records[0][0] if result.first_ms is None else result.first_ms
                    result.last_ms = page.records[-1][0]
    except (ccxt.BaseError, OSError) as exc:
        result.error = short_error(exc)
    return result
