"""One spelling of a metrics row for people: `backtest`'s table and `analyze`'s (per bot and portfolio).

Imports nothing heavy: the commands' modules are imported to build the parser, before any numpy.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from trading_bot.backtest.metrics import Metrics

HEAD = f"{'trades':>6} {'win':>7} {'return':>9} {'sharpe':>7} {'mdd':>7} {'pf':>6}"
HEAD_WITH_EXPOSURE = f"{HEAD} {'exposure':>8}"


def cells(m: Metrics | None, *, exposure: bool = False) -> str:
    """Trades, win rate, total return, Sharpe, max drawdown, profit factor (and exposure), under HEAD."""
    if m is None:
        return f"{'—':>{len(HEAD_WITH_EXPOSURE if exposure else HEAD)}}"
    pf = "inf" if not math.isfinite(m.profit_factor) else f"{m.profit_factor:.2f}"
    text = (f"{m.trades:>6} {100 * m.win_rate:6.1f}% {100 * m.total_return:+8.2f}% {m.sharpe:7.2f} "
            f"{100 * m.max_drawdown:6.1f}% {pf:>6}")
    return f"{text} {100 * m.exposure:7.1f}%" if exposure else text


def row(name: str, m: Metrics | None, width: int = 24) -> str:
    """A named row with exposure, under `head(width)`."""
    return f"{name:<{width}} {cells(m, exposure=True)}"


def head(first: str = "bot", width: int = 24) -> str:
    return f"{first:<{width}} {HEAD_WITH_EXPOSURE}"
