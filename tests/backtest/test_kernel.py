"""The compiled kernel ≡ the reference rules (backtest.py → trading_rules), trade for trade, on every
combination of the default grid, on several seeded series including gaps and flat stretches."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from trading_bot.backtest.kernel import simulate
from trading_bot.backtest.reference import backtest_series, series_scores
from trading_bot.domain.params import default_config
from trading_bot.domain.sizing import RiskLimits
from trading_bot.domain.trades import Costs
from trading_bot.marketdata.synthetic import synthetic_candles
from trading_bot.signals.scoring import signal_sides

SL = [0.005, 0.01, 0.015, 0.02, 0.025, 0.03]
RR = [1.0, 1.5, 2.0, 2.5, 3.0]
COSTS = Costs(fee_rate=0.0004, slippage=0.0002)
LIMITS = RiskLimits(risk_per_trade=0.02, leverage=5.0, max_open_positions=3)


def with_gaps_and_flats(candles: np.ndarray, seed: int) -> np.ndarray:
    """Opens that jump away from the previous close, and stretches where nothing moves."""
    out = candles.copy()
    rng = np.random.default_rng(seed)
    for i in rng.choice(np.arange(50, len(out) - 1), size=40, replace=False):
        jump = 1 + rng.choice([-1, 1]) * rng.uniform(0.01, 0.05)
        out[i:, 1:5] *= jump  # the whole future shifts: candle i opens with a gap
        out[i, 1] = out[i - 1, 4] * jump
        out[i, 2] = max(out[i, 1:5].max(), out[i, 2])
        out[i, 3] = min(out[i, 1:5].min(), out[i, 3])
    for start in rng.choice(np.arange(100, len(out) - 60), size=5, replace=False):
        price = out[start - 1, 4]
        out[start:start + 30, 1:5] = price
        out[start:start + 30, 5] = 0.0
    return out


SERIES = {
    "btc-5m": synthetic_candles("BTC/USDT:USDT", 300_000, 1_700_000_000_000, 1500, None, 1),
    "eth-1m": synthetic_candles("ETH/USDT:USDT", 60_000, 1_700_000_000_000, 1500, None, 2),
    "gaps-and-flats": with_gaps_and_flats(synthetic_candles("SOL/USDT:USDT", 900_000, 1_700_000_000_000, 1500, None, 3), 4),
}


@pytest.mark.parametrize("name", list(SERIES))
def test_kernel_equals_reference_on_the_whole_grid(name):
    candles = SERIES[name]
    params0 = default_config().params_for("X/Y", "1m")
    scores = series_scores(candles, params0)
    finite = np.abs(scores[np.isfinite(scores)])
    thresholds = np.quantile(finite, [0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95, 0.975, 0.99])
    start = 300
    compared = 0
    for threshold, sl, rr in itertools.product(thresholds, SL, RR):
        params = type(params0)(params0.weights, float(threshold), sl, rr)
        reference = backtest_series("X/Y", "1m", candles, params, COSTS, LIMITS, 10_000.0, start_index=start,
                                    scores=scores)
        kernel = simulate(candles[:, 1], candles[:, 2], candles[:, 3], signal_sides(scores, float(threshold)), start,
                          len(candles), sl, rr, COSTS.fee_rate, COSTS.slippage, LIMITS.risk_per_trade, LIMITS.leverage,
                          LIMITS.max_open_positions, 10_000.0)
        ts = candles[:, 0].astype(np.int64)
        ref = [(t.entry_ts, t.exit_ts, t.side, t.entry_price, t.exit_price, t.exit_reason, t.qty, t.pnl)
               for t in reference.trades]
        ker = [(int(ts[a]), int(ts[b]), int(s), float(ep), float(xp), "stop" if r == 1 else "target", float(q), float(p))
               for a, b, s, ep, xp, r, q, p in zip(kernel.entry_index, kernel.exit_index, kernel.side,
                                                   kernel.entry_price, kernel.exit_price, kernel.reason, kernel.qty,
                                                   kernel.pnl)]
        assert ker == ref, (name, threshold, sl, rr)  # exact: same floats, same order of operations
        assert kernel.final_balance == reference.final_balance
        compared += len(ref)
    assert compared > 1000, "the grid produced trades to compare"



EVERY_CANDLE_TRADES = """
import numpy as np
from trading_bot.backtest.kernel import simulate
from trading_bot.backtest.reference import backtest_series
from trading_bot.domain.params import default_config
from trading_bot.domain.sizing import RiskLimits
from trading_bot.domain.trades import Costs
from trading_bot.signals.scoring import signal_sides

costs, limits = Costs(fee_rate=0.0004, slippage=0.0002), RiskLimits(0.02, 5.0, 3)
n, start = 400, 10
opens = 100.0 + np.arange(n) * 0.01  # every candle reaches 5 % either side: the stop is hit on each
candles = np.column_stack([np.arange(n) * 60_000.0, opens, opens * 1.05, opens * 0.95, opens, np.ones(n)])
scores = np.ones(n)  # long on every close
params0 = default_config().params_for("X/Y", "1m")
params = type(params0)(params0.weights, 0.5, 0.01, 2.0)
reference = backtest_series("X/Y", "1m", candles, params, costs, limits, 10_000.0, start_index=start, scores=scores)
assert len(reference.trades) == n - start - 1, len(reference.trades)  # the first candle only signals
kernel = simulate(candles[:, 1], candles[:, 2], candles[:, 3], signal_sides(scores, 0.5), start, n, 0.01, 2.0,
                  costs.fee_rate, costs.slippage, limits.risk_per_trade, limits.leverage, limits.max_open_positions,
                  10_000.0)
ref = [(t.entry_price, t.exit_price, t.qty, t.pnl) for t in reference.trades]
ker = [(float(e), float(x), float(q), float(p)) for e, x, q, p in
       zip(kernel.entry_price, kernel.exit_price, kernel.qty, kernel.pnl)]
assert ker == ref, f"kernel: {len(ker)} trades, reference: {len(ref)}"
assert kernel.final_balance == reference.final_balance
print("same trades:", len(ker))
"""


def test_a_trade_on_every_candle_fits_the_kernel_buffer():
    """The rules allow one trade per candle (stopped out on the fill candle, a new signal at its close).
    A buffer sized for one trade every two candles was overrun: the kernel returned too few trades
    with garbage prices and corrupted the heap (SIGSEGV / abort), so this runs in a child process."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2] / "src")}
    child = subprocess.run([sys.executable, "-c", EVERY_CANDLE_TRADES], capture_output=True, text=True, env=env,
                           timeout=300)
    assert child.returncode == 0, (child.returncode, child.stderr[-2000:])
    assert "same trades: 389" in child.stdout


def test_kernel_equals_reference_under_a_notional_cap_that_binds():
    candles = SERIES["btc-5m"]
    params0 = default_config().params_for("X/Y", "1m")
    scores = series_scores(candles, params0)
    threshold = float(np.quantile(np.abs(scores[np.isfinite(scores)]), 0.8))
    capped = RiskLimits(LIMITS.risk_per_trade, LIMITS.leverage, LIMITS.max_open_positions, max_order_notional=2_500.0)
    for sl, rr in itertools.product(SL[:3], RR[:2]):
        params = type(params0)(params0.weights, threshold, sl, rr)
        reference = backtest_series("X/Y", "1m", candles, params, COSTS, capped, 10_000.0, start_index=300,
                                    scores=scores)
        kernel = simulate(candles[:, 1], candles[:, 2], candles[:, 3], signal_sides(scores, threshold), 300,
                          len(candles), sl, rr, COSTS.fee_rate, COSTS.slippage, capped.risk_per_trade, capped.leverage,
                          capped.max_open_positions, 10_000.0, capped.max_order_notional)
        assert [float(q) for q in kernel.qty] == [t.qty for t in reference.trades]
        assert kernel.final_balance == reference.final_balance
        notionals = [t.qty * t.entry_price for t in reference.trades]
        assert notionals and max(notionals) <= 2_500.0 * (1 + 1e-12)
        assert any(abs(n - 2_500.0) < 1e-6 for n in notionals), "the cap bound at least once"
