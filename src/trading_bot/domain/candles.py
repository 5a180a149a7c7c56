"""Candles in memory: float64 arrays of shape (n, 6), one row per candle, in these columns
(the CSV cache uses the same order)."""

from __future__ import annotations

import numpy as np

COLUMNS = 6
TS, OPEN, HIGH, LOW, CLOSE, VOLUME = range(COLUMNS)
EMPTY = np.empty((0, COLUMNS), dtype=np.float64)
