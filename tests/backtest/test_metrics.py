"""Metrics against values computed by hand on small trade lists."""

from __future__ import annotations

import math

import numpy as np
import pytest

from trading_bot.backtest.metrics import YEAR_MS, Metrics, compute_metrics


def test_hand_computed_small_list():
    # equity 1000 → 1100 → 1045 → 1149.5 ; returns +10 %, -5 %, +10 %
    m = compute_metrics([100.0, -55.0, 104.5], 1000.0, period_ms=YEAR_MS, candles_in_position=30, candles=100)
    assert m.trades == 3
    assert m.win_rate == pytest.approx(2 / 3)
    assert m.total_return == pytest.approx(0.1495)
    assert m.profit_factor == pytest.approx(204.5 / 55.0)
    assert m.expectancy == pytest.approx(149.5 / 3)
    assert m.max_drawdown == pytest.approx(55.0 / 1100.0)  # a fraction of equity at the peak
    assert m.exposure == pytest.approx(0.3)
    returns = [0.1, -0.05, 0.1]
    mean = sum(returns) / 3
    std = math.sqrt(sum((r - mean) ** 2 for r in returns) / 2)
    assert m.sharpe == pytest.approx(mean / std * math.sqrt(3))  # 3 trades per year
    downside = math.sqrt((0.05**2) / 3)
    assert m.sortino == pytest.approx(mean / downside * math.sqrt(3))


def test_drawdown_is_on_equity_not_on_cumulative_pnl():
    # PnL +1 then -2: cumulative PnL goes 1 → -1 (a "200 %" fall); equity 10001 → 9999.
    m = compute_metrics([1.0, -2.0], 10_000.0, period_ms=YEAR_MS)
    assert m.max_drawdown == pytest.approx(2.0 / 10_001.0)


def test_edge_cases():
    empty = compute_metrics([], 1000.0, period_ms=YEAR_MS)
    assert empty.trades == 0 and empty.sharpe == 0 and empty.profit_factor == 0 and empty.total_return == 0
    winners = compute_metrics([10.0, 20.0], 1000.0, period_ms=YEAR_MS)
    assert winners.profit_factor == math.inf and winners.max_drawdown == 0
    assert winners.as_json()["profit_factor"] is None  # JSON has no infinity
    one = compute_metrics([5.0], 1000.0, period_ms=YEAR_MS)
    assert one.sharpe == 0 and one.sortino == 0


def test_annualisation_follows_trade_frequency():
    pnl = [10.0, -5.0, 8.0, -3.0]
    yearly = compute_metrics(pnl, 1000.0, period_ms=YEAR_MS)
    quarterly = compute_metrics(pnl, 1000.0, period_ms=YEAR_MS / 4)  # 4× the trades per year
    assert quarterly.sharpe == pytest.approx(yearly.sharpe * 2)


def test_metrics_come_back_from_json_with_an_unbounded_profit_factor():
    m = compute_metrics(np.array([5.0, 7.0, 2.0]), 1000.0, 86_400_000.0, 3, 10)
    assert m.profit_factor == math.inf and m.as_json()["profit_factor"] is None
    assert Metrics.from_json(m.as_json()) == m
