"""`trading-bot backtest`: the whole portfolio over the cached candles, as `run --replay` would trade it.

    trading-bot backtest                                  # every symbol × timeframe in the settings
    trading-bot backtest --symbols BTC/USDT:USDT,ETH/USDT:USDT --timeframes 1m,5m --json
    trading-bot backtest --report backtest.html           # and the trade report (cli/report.py) of its trades

All bots on one wallet under MAX_OPEN_POSITIONS, in the daemon's order of events (domain/instant.py),
from where a replay starts (every series past its warm-up). Prints each bot's metrics and the
portfolio's, from the shared equity curve.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from trading_bot.cli.errors import CliError
from trading_bot.cli.metrics_table import head, row
from trading_bot.cli.report import add_report_option, check_writable, write_report
from trading_bot.settings import Settings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--symbols", help="comma-separated symbols (default: TRADING_SYMBOLS)")
    parser.add_argument("--timeframes", help="comma-separated timeframes (default: TRADING_TIMEFRAMES)")
    parser.add_argument("--json", action="store_true", help="print the metrics as JSON")
    add_report_option(parser, "the trade report of the backtest's trades (equity, drawdown, PnL by bot and day)")


def run(args: argparse.Namespace, settings: Settings) -> int:
    from trading_bot.backtest.portfolio import PortfolioSeries, backtest_portfolio, portfolio_metrics
    from trading_bot.domain.params import StrategyConfigError
    from trading_bot.domain.wallet import bot_id
    from trading_bot.engine.candle_source import REPLAY_WARMUP_CANDLES, open_funding, replay_start_ms
    from trading_bot.marketdata.candle_csv import cache_file_name, read_candles
    from trading_bot.persistence.strategy_config_file import load_config

    keys = settings.bot_keys
    if args.report is not None:
        check_writable(args.report)
    try:
        config = load_config(settings.strategy_config, keys)
    except StrategyConfigError as exc:
        raise CliError(f"strategy config: {exc}") from None
    history = {(s, tf): read_candles(settings.candles_dir / cache_file_name(s, tf))[0] for s, tf in keys}
    missing = [f"{s} {tf}" for (s, tf), c in history.items() if c.shape[0] <= REPLAY_WARMUP_CANDLES]
    if missing:
        raise CliError(f"backtest needs more than {REPLAY_WARMUP_CANDLES} cached candles in {settings.candles_dir} "
                       f"for: {', '.join(missing[:5])}{' …' if len(missing) > 5 else ''} (trading-bot fetch)")
    series = [PortfolioSeries(s, tf, history[(s, tf)], config.params_for(s, tf)) for s, tf in keys]
    funding = open_funding(settings, sorted({s for s, _ in keys}))
    result = backtest_portfolio(series, settings.costs, settings.risk_limits, settings.initial_balance,
                                replay_start_ms(history), settings.protections, funding)
    report = portfolio_metrics(result)
    if args.report is not None:
        _write_trade_report(args.report, result, settings)
    if args.json:
        funding_by_bot: dict[str, float] = {}
        for t in result.trades:
            key = bot_id(t.symbol, t.timeframe)
            funding_by_bot[key] = funding_by_bot.get(key, 0.0) + t.funding
        print(json.dumps({"bots": {k: {**m.as_json(), "funding": funding_by_bot.get(k, 0.0)}
                                   for k, m in report.per_bot.items()},
                          "portfolio": report.portfolio.as_json(), "skipped_entries": report.skipped_entries,
                          "open_positions": result.open_positions, "refused_by_protections": result.refused,
                          "final_trading_state": {"state": result.final_state.state,
                                                  "reason": result.final_state.reason},
                          "max_open_positions": settings.max_open_positions,
                          "funding": {"total": result.wallet.funding, "fees": result.wallet.fees_paid,
                                      "basis": result.funding_labels}}, indent=2))
        return 0
    title = head()
    lines = [title, "-" * len(title)]
    lines += [row(key.replace("|", " "), m) for key, m in report.per_bot.items()]
    lines += ["-" * len(title), row("portfolio (one wallet)", report.portfolio),
              f"{report.skipped_entries} signal(s) skipped at MAX_OPEN_POSITIONS={settings.max_open_positions}; "
              f"{result.open_positions} position(s) still open at the end"]
    if result.refused:
        lines.append("signals refused by the account rules: "
                     + ", ".join(f"{rule.replace('_', ' ')} {n}" for rule, n in sorted(result.refused.items())))
    if funding is None:
        lines.append("funding: off (FUNDING=off)")
    else:
        lines.append(f"funding {result.wallet.funding:+.2f} USDT, apart from fees {result.wallet.fees_paid:.2f} and "
                     "the trades' PnL (in the returns above); "
                     + "; ".join(f"{s}: {label}" for s, label in result.funding_labels.items()))
    if not result.final_state.allows_entries:
        lines.append(f"at the end trading is {result.final_state.describe()}")
    print("\n".join(lines))
    return 0


def _write_trade_report(path: Path, result: Any, settings: Settings) -> None:
    from trading_bot.domain.formatting import format_ms
    from trading_bot.reports.journal_report import ReportSource, render_trade_report

    notes = (f"{result.open_positions} position(s) still open at the end (not in the figures).",) if result.open_positions else ()
    source = ReportSource("Backtest report", f"portfolio backtest of {len(settings.bot_keys)} bot(s), "
                          f"{format_ms(result.start_ms)} → {format_ms(result.end_ms)} UTC, "
                          f"MAX_OPEN_POSITIONS={settings.max_open_positions}", notes)
    write_report(path, render_trade_report(result.trades, settings.initial_balance, source))
