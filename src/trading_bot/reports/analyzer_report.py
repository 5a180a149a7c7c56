"""The analyzer's report (`analyze --report`): an overview of every bot's choice, then per bot one
small heatmap per threshold of the training objective over stop-loss × risk:reward (the chosen
cell outlined) and its train vs test metrics."""

from __future__ import annotations

import math
from collections.abc import Sequence

from trading_bot.backtest.analyzer import AnalysisOptions, SeriesResult
from trading_bot.backtest.metrics import Metrics
from trading_bot.domain.formatting import format_ms
from trading_bot.reports import charts
from trading_bot.reports.html import figure, page, paragraph, section, table

_METRIC_ROWS = (  # (Metrics field, label, how it is written)
    ("trades", "trades", "count"), ("win_rate", "win rate", "pct"), ("total_return", "total return", "pct"),
    ("profit_factor", "profit factor", "num"), ("expectancy", "mean PnL per trade", "money"),
    ("sharpe", "Sharpe (per trade, annualised)", "num"), ("sortino", "Sortino", "num"),
    ("max_drawdown", "max drawdown", "pct"), ("exposure", "exposure", "pct"), ("final_equity", "final equity", "money"),
)


def _value(m: Metrics | None, name: str, kind: str) -> str:
    if m is None:
        return "—"
    value = getattr(m, name)
    if kind == "count":
        return str(value)
    if math.isinf(value):
        return "inf"
    if kind == "money":
        return f"{value:,.2f}"
    return f"{100 * value:.2f} %" if kind == "pct" else f"{value:.3f}"


def _metrics(raw: dict[str, object] | None) -> Metrics | None:
    return Metrics.from_json(raw) if raw else None


def chosen_cell(result: SeriesResult, options: AnalysisOptions) -> tuple[int, int, int] | None:
    """The chosen (threshold, sl, rr) as indices into the surface: the same floats the grid holds."""
    if result.chosen is None:
        return None
    c = result.chosen
    return (result.thresholds.index(c["threshold"]), options.grid.sl.index(c["sl_pct"]),
            options.grid.rr.index(c["rr_ratio"]))


def _overview(results: Sequence[SeriesResult], options: AnalysisOptions) -> str:
    rows = []
    for r in results:
        train, test = _metrics(r.train), _metrics(r.test)
        if r.chosen is None:
            rows.append((f"{r.symbol} {r.timeframe}", str(r.candles), r.error or "no choice", "", "", "", "", "", ""))
            continue
        rows.append((f"{r.symbol} {r.timeframe}", str(r.candles), f"{r.chosen['threshold']:.4g}",
                     f"{100 * r.chosen['sl_pct']:g}", f"{r.chosen['rr_ratio']:g}",
                     _value(train, options.objective, "num"), _value(test, options.objective, "num"),
                     _value(train, "trades", "count"), _value(test, "trades", "count")))
    heads = ["bot", "candles", "threshold", "sl %", "rr", f"train {options.objective}", f"test {options.objective}",
             "train trades", "test trades"]
    return section("overview", "Choices", table(heads, rows, "overview"))


def _bot_section(index: int, r: SeriesResult, options: AnalysisOptions) -> str:
    name = f"{r.symbol} {r.timeframe}"
    span = (f"{r.candles} candles, {format_ms(r.first_ts)} → {format_ms(r.last_ts)} UTC"
            if r.first_ts is not None and r.last_ts is not None else f"{r.candles} candles")
    parts = [paragraph(span)]
    if r.chosen is not None:
        c = r.chosen
        parts.append(paragraph(f"chosen: threshold {c['threshold']:.4g}, stop-loss {100 * c['sl_pct']:g} %, "
                               f"risk:reward {c['rr_ratio']:g}"))
    else:
        parts.append(paragraph(f"no choice: {r.error or 'none'} (the config keeps its current entry)", "note"))
    if r.surface is not None and r.thresholds:
        svg = charts.heatmaps_figure(f"heatmap-{index}", r.surface, options.grid.sl, options.grid.rr, r.thresholds,
                                     options.objective, chosen_cell(r, options))
        parts.append(figure(svg, f"{options.objective} on the training candles for every stop-loss × risk:reward, "
                                 f"one panel per score threshold; grey: fewer than {options.min_trades} trades "
                                 "(cannot be chosen); outlined: the choice."))
    train, test = _metrics(r.train), _metrics(r.test)
    if train is not None or test is not None:
        rows = [(label, _value(train, key, kind), _value(test, key, kind)) for key, label, kind in _METRIC_ROWS]
        parts.append(table(["", "train (chooses)", "test (only reported)"], rows, "train-test"))
    return section(f"bot-{index}", name, *parts)


def render_analyzer_report(results: Sequence[SeriesResult], options: AnalysisOptions) -> str:
    split = (f"anchored walk-forward, {options.folds} folds (the last fold's choice and grid)" if options.folds > 1
             else f"first {100 * options.train_fraction:g} % of each series chooses, the rest only reports")
    meta = (f"{len(results)} bot(s); objective {options.objective}, at least {options.min_trades} training trades; "
            f"grid {len(options.grid.sl)} stop-losses × {len(options.grid.rr)} risk:rewards × the thresholds; {split}")
    sections = [_overview(results, options)]
    sections += [_bot_section(i, r, options) for i, r in enumerate(results)]
    return page("Analyzer report", meta, sections)
