"""What the exchange client's requests did: how many by method, which failed and how, how long they took.

Plain counters kept on every request (a few dict updates, no allocation per request beyond the first of a
kind), read by the Prometheus metrics when METRICS_PORT is on; nothing here imports ccxt or prometheus_client.
Label sets stay bounded: the methods are the ccxt calls this code makes, the error kinds ccxt's exception
classes (about forty), and the durations go into fixed buckets.
"""

from __future__ import annotations

import asyncio
import bisect
from dataclasses import dataclass, field

# Binance answers a read in 5–50 ms from nearby, an order in 10–100 ms; a slow or failing exchange takes
# seconds, up to the request timeout (10 s by default).
DURATION_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


def error_kind(exc: BaseException) -> str:
    """ccxt's exception class (NetworkError, RequestTimeout, InvalidOrder, …): a bounded set; anything
    else under one name, so a surprising exception cannot grow the label set."""
    if isinstance(exc, asyncio.CancelledError):
        return "Cancelled"  # cut short by us (a shutdown, a deadline): no answer was read
    module = type(exc).__module__ or ""
    return type(exc).__name__ if module.startswith("ccxt") else "other"


@dataclass
class RequestStats:
    calls: dict[str, int] = field(default_factory=dict)  # requests sent, by ccxt method
    errors: dict[tuple[str, str], int] = field(default_factory=dict)  # (method, error kind) -> failures
    # Non-cumulative counts per bucket of DURATION_BUCKETS_S, the last one for longer than the last bound.
    duration_counts: list[int] = field(default_factory=lambda: [0] * (len(DURATION_BUCKETS_S) + 1))
    duration_sum_s: float = 0.0

    def sent(self, method: str) -> None:
        self.calls[method] = self.calls.get(method, 0) + 1

    def answered(self, method: str, seconds: float, exc: BaseException | None) -> None:
        """A request's outcome: its time on the wire (not the wait for the weight budget) and its error."""
        self.duration_counts[bisect.bisect_left(DURATION_BUCKETS_S, seconds)] += 1
        self.duration_sum_s += seconds
        if exc is not None:
            key = (method, error_kind(exc))
            self.errors[key] = self.errors.get(key, 0) + 1

    def cumulative_buckets(self) -> list[tuple[str, int]]:
        """(upper bound, requests at most that long) as Prometheus' histogram exposes them, +Inf last."""
        out, total = [], 0
        for bound, n in zip((*(str(b) for b in DURATION_BUCKETS_S), "+Inf"), self.duration_counts):
            total += n
            out.append((bound, total))
        return out
