"""Performance metrics of a trade list, vectorized with numpy (pure: arrays in, numbers out).

Definitions (the docs quote these):
- returns are per trade on equity: r_i = pnl_i / equity before trade i, where equity is the initial
  balance plus the realised PnL so far;
- total return = final equity / initial balance − 1;
- max drawdown = the largest fall of equity from its running peak, as a fraction of that peak
  (equity includes the initial balance, so it is defined even when cumulative PnL is near zero);
- Sharpe = mean(r) / std(r) × sqrt(trades per year); Sortino = mean(r) / downside deviation ×
  sqrt(trades per year), downside deviation = sqrt(mean(min(r, 0)²)); per trade, annualised by the
  trade frequency observed over the period (0 when undefined, e.g. fewer than 2 trades);
- profit factor = gross profit / gross loss (inf with no losing trade, 0 with no trade);
- expectancy = mean PnL per trade (quote currency); win rate = share of trades with PnL > 0;
- exposure = share of the period's candles spent in a position.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np

YEAR_MS = 365.25 * 86_400_000


@dataclass(frozen=True)
class Metrics:
    trades: int
    win_rate: float
    total_return: float
    profit_factor: float
    expectancy: float
    sharpe: float
    sortino: float
    max_drawdown: float
    exposure: float
    final_equity: float

    def as_json(self) -> dict[str, float | int | None]:
        # JSON has no inf/NaN: an unbounded profit factor is written as null.
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in asdict(self).items()}

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> Metrics:
        """Back from as_json (the analyzer's results travel as JSON). Only a profit factor or a Sortino
        can be unbounded (no losing trade), and only upwards: null is +inf."""
        values: dict[str, Any] = {f.name: math.inf if raw[f.name] is None else raw[f.name] for f in fields(cls)}
        return cls(**values)


def equity_curve(pnl: np.ndarray, initial_balance: float) -> np.ndarray:
    """Equity from the initial balance, then after each trade (n + 1 points)."""
    return np.concatenate(([initial_balance], initial_balance + np.cumsum(np.asarray(pnl, dtype=np.float64))))


def drawdown_curve(curve: np.ndarray) -> np.ndarray:
    """At each point of an equity curve, its fall from the running peak as a fraction of that peak
    (1 where the peak is not positive: everything is lost)."""
    peaks = np.maximum.accumulate(curve)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(peaks > 0, (peaks - curve) / peaks, 1.0)


def compute_metrics(pnl: np.ndarray, initial_balance: float, period_ms: float, candles_in_position: int = 0,
                    candles: int = 0) -> Metrics:
    pnl = np.asarray(pnl, dtype=np.float64)
    n = pnl.shape[0]
    equity_after = initial_balance + np.cumsum(pnl)
    final = float(equity_after[-1]) if n else initial_balance
    exposure = candles_in_position / candles if candles else 0.0
    if n == 0:
        return Metrics(0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, exposure, final)
    equity_before = np.concatenate(([initial_balance], equity_after[:-1]))
    with np.errstate(divide="ignore", invalid="ignore"):
        returns = np.where(equity_before > 0, pnl / equity_before, -1.0)
    wins = pnl > 0
    gross_profit = float(pnl[wins].sum())
    gross_loss = float(-pnl[pnl < 0].sum())
    profit_factor = gross_profit / gross_loss if gross_loss > 0 else math.inf if gross_profit > 0 else 0.0
    drawdowns = drawdown_curve(np.concatenate(([initial_balance], equity_after)))
    per_year = n / (period_ms / YEAR_MS) if period_ms > 0 else 0.0
    scale = math.sqrt(per_year)
    sharpe = sortino = 0.0
    if n >= 2:
        mean = float(returns.mean())
        std = float(returns.std(ddof=1))
        downside = math.sqrt(float(np.mean(np.minimum(returns, 0.0) ** 2)))
        sharpe = mean / std * scale if std > 0 else 0.0
        sortino = mean / downside * scale if downside > 0 else (math.inf if mean > 0 else 0.0)
    return Metrics(
        trades=n, win_rate=float(wins.mean()), total_return=final / initial_balance - 1.0,
        profit_factor=profit_factor, expectancy=float(pnl.mean()), sharpe=sharpe, sortino=sortino,
        max_drawdown=float(drawdowns.max()), exposure=exposure, final_equity=final,
    )

