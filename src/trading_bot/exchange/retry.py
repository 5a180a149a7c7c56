"""Retry with exponential backoff and full jitter, as one small testable unit.

Only what the predicate calls transient is retried (by default ccxt's OperationFailed family: the
NetworkError kinds RequestTimeout, ExchangeNotAvailable, DDoSProtection/RateLimitExceeded, and the
exchange's own server errors, Binance -1000/-1001/-1006/-1008, which ccxt raises as OperationFailed). Anything else, ccxt's
ExchangeError above all, goes straight to the caller. Cancellation is never swallowed.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

from trading_bot.exchange.errors import short_error

T = TypeVar("T")


log = logging.getLogger(__name__)


def is_transient(exc: BaseException) -> bool:
    import ccxt

    return isinstance(exc, ccxt.OperationFailed) and not isinstance(exc, ccxt.InvalidNonce)


@dataclass
class RetryPolicy:
    attempts: int = 4  # tries in total
    base_delay: float = 0.5
    max_delay: float = 8.0
    retryable: Callable[[BaseException], bool] = is_transient
    rng: random.Random = field(default_factory=random.Random)
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep

    def delay(self, attempt: int) -> float:
        """Full jitter: uniform in [0, min(max, base × 2^attempt)] — spreads 500 bots' retries."""
        return self.rng.uniform(0, min(self.max_delay, self.base_delay * 2**attempt))

    async def run(self, call: Callable[[], Awaitable[T]], what: str = "request") -> T:
        for attempt in range(self.attempts):
            try:
                return await call()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if attempt + 1 >= self.attempts or not self.retryable(exc):
                    raise
                pause = self.delay(attempt)
                log.warning("%s failed (%s); retry %d/%d in %.2fs", what, short_error(exc), attempt + 1,
                            self.attempts - 1, pause)
                await self.sleep(pause)
        raise AssertionError("unreachable")

