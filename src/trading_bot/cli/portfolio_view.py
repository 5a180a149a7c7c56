"""`analyze`'s portfolio section: the chosen parameters on one wallet over the test period, next to the
standalone test figures and to the parameters as they were (backtest/portfolio_check.py computes it)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from trading_bot.cli.metrics_table import head, row
from trading_bot.domain.formatting import format_ms

if TYPE_CHECKING:
    from trading_bot.backtest.metrics import Metrics
    from trading_bot.backtest.portfolio_check import PortfolioCheck, PortfolioRun

_NAME = 27  # wide enough for "portfolio, current params"


def _pair(m: Metrics | None) -> str:
    return f"{'—':>6} {'—':>9}" if m is None else f"{m.trades:>6} {100 * m.total_return:+8.2f}%"


def _sum(metrics: Iterable[Metrics]) -> str:
    """Trades and returns added up (in the portfolio they add up to the wallet's return)."""
    listed = list(metrics)
    return f"{sum(m.trades for m in listed):>6} {100 * sum(m.total_return for m in listed):+8.2f}%"


def _skipped(run: PortfolioRun) -> str:
    share = f" ({100 * run.skipped_entries / run.signals:.0f}%)" if run.signals else ""
    return f"{run.skipped_entries} of {run.signals}{share}"


def render_portfolio(check: PortfolioCheck) -> str:
    cap = check.max_open_positions
    lines = [f"portfolio over the test period: every bot on one wallet, MAX_OPEN_POSITIONS={cap}, "
             f"{format_ms(check.start_ms)} → {format_ms(check.end_ms)} UTC"]
    left = f"{'bot':<22} {'params':<8}"
    pair = f"{'trades':>6} {'return':>9}"
    lines += [f"{'':<{len(left)}} | {'alone (test)':<16} | {'in the portfolio':<16} | current params",
              f"{left} | {pair} | {pair} | {pair}"]
    lines.append("-" * len(lines[-1]))
    for b in check.bots:
        lines.append(f"{b.symbol + ' ' + b.timeframe:<22} {'chosen' if b.chosen else 'current*':<8} | "
                     f"{_pair(b.standalone)} | {_pair(check.chosen.per_bot[b.key])} | {_pair(check.current.per_bot[b.key])}")
    analyzed = [b.standalone for b in check.bots if b.standalone is not None]
    lines += ["-" * len(lines[-1]),
              f"{'sum of the bots':<{len(left)}} | {_sum(analyzed)} | {_sum(check.chosen.per_bot.values())} | "
              f"{_sum(check.current.per_bot.values())}"]
    if any(b.chosen is None for b in check.bots):
        lines.append("* no choice: the bot trades its current config parameters in both runs (no standalone figure)")
    title = head("", _NAME)
    lines += ["", title, "-" * len(title), row("portfolio, chosen params", check.chosen.portfolio, _NAME),
              row("portfolio, current params", check.current.portfolio, _NAME),
              f"signals skipped at MAX_OPEN_POSITIONS={cap}: {_skipped(check.chosen)} with the chosen params, "
              f"{_skipped(check.current)} with the current; positions still open at the end: "
              f"{check.chosen.open_positions}, {check.current.open_positions}"]
    better = check.better()
    new, old = (getattr(run.portfolio, check.objective) for run in (check.chosen, check.current))
    verdict = {"chosen": "better than", "current": "worse than", "equal": "as good as"}[better]
    lines.append(f"for the whole account the chosen params are {verdict} the current ones by {check.objective} "
                 f"({new:.4g} vs {old:.4g})")
    warning = check.warning()
    if warning:
        lines.append(f"warning: {warning}")
    lines += [f"left out: {why}" for why in check.left_out]
    return "\n".join(lines)
