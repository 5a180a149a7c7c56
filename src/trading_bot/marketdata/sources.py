"""Where candles come from: the exchange (exchange/source.py), the synthetic market, or a replay of
cached history. All answer the same question: the closed candles since `since_ms` as of `now_ms`,
plus the open price of the candle now forming when it is known (the paper broker fills at it)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

from trading_bot.domain.candles import CLOSE, EMPTY, OPEN, TS
from trading_bot.domain.timeframes import last_closed_open_ms, timeframe_ms
from trading_bot.marketdata.synthetic import synthetic_candles


@dataclass
class FetchResult:
    closed: np.ndarray  # closed candles (domain/candles.py columns), ascending, open time ≥ since
    forming_open: float | None = None  # open price of the candle after the last closed one
    forming_ts: int | None = None
    # When this answer can change at the earliest, if the source knows (a replay knows its recorded
    # candles: the next one opens or closes then); None = unknown, poll with a back-off (manager.py).
    next_change_ms: int | None = None


NO_MORE_CANDLES_MS = 2**62  # a replayed series past its last recorded candle: nothing will change


class CandleSource(Protocol):
    name: str  # "exchange" | "synthetic" | "replay": shown in the status output

    async def fetch(self, symbol: str, timeframe: str, tf_ms: int, since_ms: int | None, now_ms: int,
                    limit: int, last_close: float | None) -> FetchResult: ...

    async def close(self) -> None: ...


@runtime_checkable
class PushSource(Protocol):
    """A source the exchange pushes closed candles to (exchange/ws_candles.py): started once the
    cache is loaded, and asked before each refresh to let the closes of that moment arrive."""

    def start(self) -> None: ...

    def track(self, added: Sequence[tuple[str, str]], removed: Sequence[tuple[str, str]]) -> None: ...

    async def settle(self, due: Sequence[tuple[str, str]], now_ms: int) -> None: ...

    def summary(self) -> str: ...

    def connections(self) -> dict[str, int]: ...


class SyntheticSource:
    name = "synthetic"

    def __init__(self, seed: int) -> None:
        self.seed = seed

    async def fetch(self, symbol: str, timeframe: str, tf_ms: int, since_ms: int | None, now_ms: int,
                    limit: int, last_close: float | None) -> FetchResult:
        last_open = last_closed_open_ms(now_ms, tf_ms)
        if since_ms is None or last_close is None:
            since_ms = last_open - (limit - 1) * tf_ms
            last_close = None
        # A long gap (the bot was down) is filled from its start so the path stays continuous, but
        # only the newest `limit` candles are handed back.
        count = max(0, (last_open - since_ms) // tf_ms + 1)
        candles = synthetic_candles(symbol, tf_ms, since_ms, count, last_close, self.seed)
        candles = candles[-limit:]
        forming = float(candles[-1, CLOSE]) if candles.shape[0] else last_close
        return FetchResult(candles, forming, last_open + tf_ms)

    async def close(self) -> None:
        return None


class ReplaySource:
    """Serves recorded history as if it were arriving live, up to the simulated clock."""

    name = "replay"

    def __init__(self, history: dict[tuple[str, str], np.ndarray]) -> None:
        self.history = history

    async def fetch(self, symbol: str, timeframe: str, tf_ms: int, since_ms: int | None, now_ms: int,
                    limit: int, last_close: float | None) -> FetchResult:
        candles = self.history.get((symbol, timeframe), EMPTY)
        ts = candles[:, TS]
        last_open = last_closed_open_ms(now_ms, tf_ms)
        lo = 0 if since_ms is None else int(np.searchsorted(ts, since_ms, side="left"))
        hi = int(np.searchsorted(ts, last_open, side="right"))
        closed = candles[max(lo, hi - limit):hi]
        forming_open = forming_ts = None
        next_change_ms = NO_MORE_CANDLES_MS
        if hi < ts.shape[0]:
            next_open = int(ts[hi])  # the next recorded candle (not always the next minute: data has gaps)
            if next_open <= now_ms:
                forming_open, forming_ts = float(candles[hi, OPEN]), next_open
            next_change_ms = next_open if next_open > now_ms else next_open + tf_ms
        return FetchResult(closed, forming_open, forming_ts, next_change_ms)

    def end_ms(self) -> int:
        """When the last recorded candle closes (the replay's natural end)."""
        ends = [int(c[-1, TS]) + timeframe_ms(tf) for (_, tf), c in self.history.items() if c.shape[0]]
        return max(ends) if ends else 0

    async def close(self) -> None:
        return None

