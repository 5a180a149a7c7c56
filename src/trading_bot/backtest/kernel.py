"""The compiled backtest kernel: domain/rules.on_closed_candle, candle by candle, in numba.

It is the reference (backtest/reference.py: the very function the paper broker runs) written once
more in a form numba compiles, because the analyzer runs it 270 times per series over 100,000
candles. The float operations are the reference's, in the same order, and the test suite checks the
two trade for trade over the whole default grid on several series (tests/backtest/test_kernel.py).
Imported only by the analyzer: numba costs ~0.4 s and much memory to import, the daemon never does
(an import contract in pyproject.toml keeps it so).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numba import njit


@dataclass
class KernelTrades:
    """Trades of one simulation (arrays of equal length) and what the segment looked like."""

    entry_index: np.ndarray
    exit_index: np.ndarray
    side: np.ndarray
    entry_price: np.ndarray
    exit_price: np.ndarray
    reason: np.ndarray
    qty: np.ndarray
    entry_fee: np.ndarray
    exit_fee: np.ndarray
    pnl: np.ndarray
    candles_in_position: int
    final_balance: float


@njit(cache=True, nogil=True)
def _simulate(opens: np.ndarray, highs: np.ndarray, lows: np.ndarray, sides: np.ndarray, start: int, end: int,
              sl_pct: float, rr_ratio: float, fee_rate: float, slippage: float, risk: float, leverage: float,
              max_open: float, max_notional: float, balance: float, out_i: np.ndarray, out_f: np.ndarray,
              ) -> tuple[int, int, float]:  # pragma: no cover - compiled
    """Fills out_i[:, (entry, exit, side, reason)] and out_f[:, (entry px, exit px, qty, entry fee,
    exit fee, pnl)]; returns (trades, candles in position, final balance)."""
    pending = 0
    pos_side = 0
    qty = 0.0
    entry = 0.0
    stop = 0.0
    target = 0.0
    entry_fee = 0.0
    entry_i = -1
    n = 0
    in_position = 0
    for k in range(start, end):
        o = opens[k]
        if pending != 0 and pos_side == 0:
            s = pending
            pending = 0
            e = o * (1.0 + s * slippage)
            st = e * (1.0 - s * sl_pct)
            tg = e * (1.0 + s * sl_pct * rr_ratio)
            q = 0.0
            distance = abs(e - st)
            if balance > 0 and e > 0 and distance > 0:
                by_risk = balance * risk / distance
                by_leverage = balance * leverage / max_open / e
                q = by_risk if by_risk <= by_leverage else by_leverage
                if max_notional > 0:  # sizing.position_size's MAX_ORDER_NOTIONAL, the same comparison
                    by_notional = max_notional / e
                    q = q if q <= by_notional else by_notional
            if q > 0 and math.isfinite(q):
                pos_side = s
                qty = q
                entry = e
                stop = st
                target = tg
                entry_fee = q * e * fee_rate
                entry_i = k
        if pos_side != 0:
            in_position += 1
            h = highs[k]
            low = lows[k]
            reason = 0
            px = 0.0
            if pos_side == 1:
                if o <= stop:
                    reason, px = 1, o
                elif o >= target:
                    reason, px = 2, o
                elif low <= stop:
                    reason, px = 1, stop
                elif h >= target:
                    reason, px = 2, target
            else:
                if o >= stop:
                    reason, px = 1, o
                elif o <= target:
                    reason, px = 2, o
                elif h >= stop:
                    reason, px = 1, stop
                elif low <= target:
                    reason, px = 2, target
            if reason != 0:
                exit_fee = qty * px * fee_rate
                gross = pos_side * qty * (px - entry)
                pnl = gross - entry_fee - exit_fee
                out_i[n, 0] = entry_i
                out_i[n, 1] = k
                out_i[n, 2] = pos_side
                out_i[n, 3] = reason
                out_f[n, 0] = entry
                out_f[n, 1] = px
                out_f[n, 2] = qty
                out_f[n, 3] = entry_fee
                out_f[n, 4] = exit_fee
                out_f[n, 5] = pnl
                n += 1
                balance += pnl
                pos_side = 0
        if pos_side == 0 and pending == 0:
            pending = sides[k]
    return n, in_position, balance


def simulate(opens: np.ndarray, highs: np.ndarray, lows: np.ndarray, sides: np.ndarray, start: int, end: int,
             sl_pct: float, rr_ratio: float, fee_rate: float, slippage: float, risk: float, leverage: float,
             max_open: int, balance: float, max_notional: float = 0.0) -> KernelTrades:
    """One (threshold, sl, rr) over candles [start, end); `sides` = signal side per candle."""
    # The rules allow one trade per candle (stopped out on its fill candle, the next signal at that
    # candle's close), so the true bound is one row per candle; _simulate does not check it.
    capacity = max(1, end - start)
    out_i = np.empty((capacity, 4), dtype=np.int64)
    out_f = np.empty((capacity, 6), dtype=np.float64)
    n, in_position, final = _simulate(opens, highs, lows, sides.astype(np.int64, copy=False), start, end, sl_pct,
                                      rr_ratio, fee_rate, slippage, risk, leverage, float(max_open), float(max_notional), balance,
                                      out_i, out_f)
    return KernelTrades(out_i[:n, 0], out_i[:n, 1], out_i[:n, 2], out_f[:n, 0], out_f[:n, 1], out_i[:n, 3],
                        out_f[:n, 2], out_f[:n, 3], out_f[:n, 4], out_f[:n, 5], int(in_position), float(final))

