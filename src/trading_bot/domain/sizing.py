"""Position sizing and the portfolio limits (pure).

Size = equity × RISK_PER_TRADE / |entry − stop|, so a stop-out loses RISK_PER_TRADE of equity
(before fees). The notional is capped at equity × LEVERAGE / MAX_OPEN_POSITIONS, so even with
every slot filled the account never exceeds LEVERAGE in total, and at MAX_ORDER_NOTIONAL (USDT) when
that is set.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RiskLimits:
    risk_per_trade: float = 0.01
    leverage: float = 5.0
    max_open_positions: int = 10
    max_order_notional: float = 0.0  # USDT per order; 0: no cap beyond leverage


def position_size(equity: float, entry: float, stop: float, limits: RiskLimits) -> float:
    distance = abs(entry - stop)
    if equity <= 0 or entry <= 0 or distance <= 0:
        return 0.0
    by_risk = equity * limits.risk_per_trade / distance
    by_leverage = equity * limits.leverage / limits.max_open_positions / entry
    qty = min(by_risk, by_leverage)
    if limits.max_order_notional > 0:
        qty = min(qty, limits.max_order_notional / entry)
    return qty


def may_open(open_positions: int, pending_entries: int, limits: RiskLimits) -> bool:
    return open_positions + pending_entries < limits.max_open_positions

