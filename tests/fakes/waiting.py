"""Waiting in wall time for something a background task does (a websocket's reader, a pump)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable


async def until(condition: Callable[[], bool], timeout: float = 3.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.005)


def klines_requests(fake) -> int:  # fake: a FakeBinance
    """REST klines requests the fake has answered so far (pushed candles make none)."""
    return sum(r.path == "/fapi/v1/klines" for r in fake.requests)
