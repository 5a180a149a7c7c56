"""The trade report: from the journal (`trading-bot report`) or a backtest's trades (`backtest
--report`). Equity and drawdown from the starting balance and each trade's PnL (net of fees, with
the funding it booked: the wallet's change) in exit-time order, PnL by bot and by UTC day, the
headline figures (backtest/metrics.py's), and the trade list."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from trading_bot.backtest.metrics import compute_metrics, drawdown_curve, equity_curve
from trading_bot.domain.formatting import format_ms, format_price
from trading_bot.domain.trades import SIDE_NAMES, ClosedTrade
from trading_bot.reports import charts
from trading_bot.reports.html import facts, figure, page, paragraph, section, signed_class, table

DAY_MS = 86_400_000


MAX_TRADE_ROWS = 5000  # the newest ones; the file stays a few MB even for a long live journal


@dataclass(frozen=True)
class ReportSource:
    """What the page says about where its trades came from."""

    title: str
    description: str  # e.g. "journal data/state/paper/trades.jsonl"
    notes: tuple[str, ...] = ()


def _money(value: float) -> str:
    return f"{value:+,.2f}"


def _pct(value: float) -> str:
    return f"{100 * value:.2f} %"


def _bot(t: ClosedTrade) -> str:
    return f"{t.symbol} {t.timeframe}"


def render_trade_report(trades: Sequence[ClosedTrade], initial_balance: float, source: ReportSource,
                        since_ms: int | None = None) -> str:
    """The whole page. With since_ms, the trades that closed earlier only set the starting balance."""
    ordered = sorted(trades, key=lambda t: t.exit_ts)  # stable: the journal's order within one moment
    start = initial_balance
    if since_ms is not None:
        start += sum(t.net for t in ordered if t.exit_ts < since_ms)
        ordered = [t for t in ordered if t.exit_ts >= since_ms]
    meta = f"{source.description}; starting balance {start:,.2f}"
    if since_ms is not None:
        meta += f" (trades closed from {format_ms(since_ms)} UTC)"
    notes = [paragraph(note, "note") for note in source.notes]
    if not ordered:
        return page(source.title, meta, [*notes, section("summary", "Summary", paragraph("No closed trades."))])
    pnl = np.array([t.net for t in ordered], dtype=np.float64)
    first_ms = min(t.entry_ts for t in ordered)
    last_ms = max(t.exit_ts for t in ordered)
    metrics = compute_metrics(pnl, start, float(last_ms - first_ms))
    curve = equity_curve(pnl, start)
    times = np.array([first_ms, *(t.exit_ts for t in ordered)], dtype=np.int64)
    fees = sum(t.entry_fee + t.exit_fee for t in ordered)
    funding = sum(t.funding for t in ordered)
    pf = "inf" if math.isinf(metrics.profit_factor) else f"{metrics.profit_factor:.2f}"
    summary = facts([
        ("summary-trades", "closed trades", str(metrics.trades)),
        ("summary-win-rate", "win rate", _pct(metrics.win_rate)),
        ("summary-pnl", "net PnL (after fees, with funding)", _money(float(pnl.sum()))),
        ("summary-return", "return on the starting balance", _pct(metrics.total_return)),
        ("summary-fees", "fees paid", f"{fees:,.2f}"),
        ("summary-funding", "funding (+ received, − paid)", _money(funding)),
        ("summary-max-drawdown", "max drawdown (closed trades)", _pct(metrics.max_drawdown)),
        ("summary-profit-factor", "profit factor", pf),
        ("summary-expectancy", "mean PnL per trade", _money(metrics.expectancy)),
        ("summary-final-equity", "equity after the last trade", f"{metrics.final_equity:,.2f}"),
        ("summary-period", "period (UTC)", f"{format_ms(first_ms)} → {format_ms(last_ms)}"),
    ])
    sections = [
        section("summary", "Summary", summary),
        section("equity", "Equity and drawdown",
                figure(charts.equity_figure(times, curve, drawdown_curve(curve)),
                       "Closed trades only: an open position's unrealised PnL and the funding it has paid so far "
                       "are not in the curve.")),
        _by_bot(ordered),
        _by_day(ordered),
        _trade_list(ordered),
    ]
    return page(source.title, meta, [*notes, *sections])


def _by_bot(trades: Sequence[ClosedTrade]) -> str:
    totals: dict[str, list[float]] = {}
    for t in trades:  # first seen first: the journal's (or the settings') order of bots
        totals.setdefault(_bot(t), []).append(t.net)
    labels = list(totals)
    sums = [float(np.sum(v)) for v in totals.values()]
    rows = [(name, str(len(v)), _pct(float(np.mean(np.array(v) > 0))), (_money(s), signed_class(s)))
            for (name, v), s in zip(totals.items(), sums)]
    return section("by-bot", "PnL by bot", figure(charts.bot_bars_figure(labels, sums), "Net PnL per symbol × timeframe."),
                   table(["bot", "trades", "win rate", "net PnL"], rows, "by-bot"))


def _by_day(trades: Sequence[ClosedTrade]) -> str:
    days: dict[int, float] = {}
    for t in trades:
        day = t.exit_ts // DAY_MS * DAY_MS
        days[day] = days.get(day, 0.0) + t.net
    keys = sorted(days)
    return section("by-day", "PnL by day",
                   figure(charts.day_bars_figure(keys, [days[k] for k in keys]), "Net PnL of the trades closed on each UTC day."))


def _trade_list(trades: Sequence[ClosedTrade]) -> str:
    shown = trades[-MAX_TRADE_ROWS:]
    rows = []
    for t in reversed(shown):  # newest first
        net = t.net
        rows.append((format_ms(t.exit_ts), _bot(t), SIDE_NAMES.get(t.side, str(t.side)), f"{t.qty:g}",
                     format_price(t.entry_price), format_price(t.exit_price), t.exit_reason,
                     f"{t.entry_fee + t.exit_fee:.2f}", f"{t.funding:+.2f}", (_money(net), signed_class(net))))
    parts = [table(["exit (UTC)", "bot", "side", "qty", "entry", "exit", "why", "fees", "funding", "net PnL"], rows,
                   "trades")]
    if len(trades) > len(shown):
        parts.insert(0, paragraph(f"The newest {len(shown)} of {len(trades)} trades (all of them are in the figures above).",
                                  "note"))
    return section("trades", "Trades", *parts)
