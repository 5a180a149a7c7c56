"""Entry latency: signal-candle close → entry order acknowledged (live; shown in status)."""

from __future__ import annotations

from collections import deque

import numpy as np


class LatencyStats:
    """Signal-candle close → entry order acknowledged, in ms (the last 1000 orders)."""

    def __init__(self) -> None:
        self.samples: deque[float] = deque(maxlen=1000)

    def add(self, ms: float) -> None:
        self.samples.append(ms)

    def percentile(self, q: float) -> float | None:
        return float(np.percentile(np.fromiter(self.samples, float), q)) if self.samples else None

    def as_json(self) -> dict[str, float | int | None]:
        return {"orders": len(self.samples), "p50_ms": self.percentile(50), "p99_ms": self.percentile(99)}
