"""Live funding: the exchange's own funding fees (its income history, FUNDING_FEE), booked on the open
position of their symbol (one per symbol on the exchange) and into the wallet's funding total.

Asked a minute after each hour (funding is every 8 hours, 4 or 1 on some symbols; the fee is listed
within seconds), and at the first heartbeat, so fees charged while the bot was down are booked
too. The newest booked record's time is saved with the books; records of that same millisecond (all
symbols are charged at once) are told apart by their ids; after a restart all of that millisecond
counts as booked (more than one page of fees in one millisecond is the one case that could lose any).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from trading_bot.domain.funding_settlement import FundingPaid
from trading_bot.domain.protections import AccountGuard
from trading_bot.domain.trades import BotBook
from trading_bot.exchange.client import ExchangeClient
from trading_bot.exchange.errors import short_error
from trading_bot.exchange.exceptions import BaseError

log = logging.getLogger(__name__)

CHECK_EVERY_MS = 3_600_000
CHECK_DELAY_MS = 60_000
PAGE = 1000


class FundingIncome:
    def __init__(self, pool: ExchangeClient, guard: AccountGuard, held: Callable[[], list[BotBook]],
                 now_ms: Callable[[], int], seen_ms: int | None) -> None:
        self.pool = pool
        self.guard = guard
        self.held = held
        self.now_ms = now_ms
        self.seen_ms = seen_ms if seen_ms is not None else now_ms()  # a first start books from now on
        self._seen_ids: set[str] = set()  # ids of the records at seen_ms
        # Restored from the books (or a first start): every record of seen_ms itself is booked (or not ours).
        self._all_seen_at_seen_ms = True
        self._next_check_ms = 0

    async def book_due(self) -> list[FundingPaid]:
        now = self.now_ms()
        if now < self._next_check_ms:
            return []
        try:
            records = await self.pool.call("fetch_funding_history", None, self.seen_ms, PAGE)
        except BaseError as exc:  # the books wait; the exchange's balance has the fee already
            log.warning("could not read funding fees (%s): trying again next heartbeat", short_error(exc))
            return []
        paid = self._book(records)
        if len(records) < PAGE:
            self._next_check_ms = (now // CHECK_EVERY_MS + 1) * CHECK_EVERY_MS + CHECK_DELAY_MS
        return paid

    def _book(self, records: list[dict[str, Any]]) -> list[FundingPaid]:
        held = {book.symbol: book for book in self.held()}
        paid = []
        for record in sorted(records, key=lambda r: (int(r.get("timestamp") or 0), str(r.get("id")))):
            time_ms, record_id = int(record.get("timestamp") or 0), str(record.get("id"))
            if time_ms < self.seen_ms or (time_ms == self.seen_ms and (self._all_seen_at_seen_ms
                                                                        or record_id in self._seen_ids)):
                continue
            if time_ms > self.seen_ms:
                self.seen_ms, self._seen_ids, self._all_seen_at_seen_ms = time_ms, set(), False
            self._seen_ids.add(record_id)
            amount = float(record.get("amount") or 0.0)
            symbol = str(record.get("symbol"))
            book = held.get(symbol)
            if book is not None and book.position is not None:
                self.guard.fund(book.position, amount)
                paid.append(FundingPaid(symbol, book.timeframe, time_ms, 0.0, amount, True))
            else:  # a position the books do not hold (closed since, or not ours): the total only
                self.guard.wallet.add_funding(amount)
                paid.append(FundingPaid(symbol, "", time_ms, 0.0, amount, True))
        if paid:
            self.guard.check()
        return paid
