"""`trading-bot analyze`: run the grid search over the cached history and rewrite the strategy config.

    trading-bot analyze                                   # every symbol × timeframe in the settings
    trading-bot analyze --symbols BTC/USDT:USDT --timeframes 5m,1h --train 0.7 --json
    trading-bot analyze --report analysis.html            # and the heatmaps of the grid, per bot
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from trading_bot.cli.errors import CliError
from trading_bot.cli.metrics_table import HEAD, cells
from trading_bot.cli.report import add_report_option, check_writable, write_report
from trading_bot.settings import Settings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--symbols", help="comma-separated symbols (default: TRADING_SYMBOLS)")
    parser.add_argument("--timeframes", help="comma-separated timeframes (default: TRADING_TIMEFRAMES)")
    parser.add_argument("--train", type=float, default=0.7, help="training share of each series, by time (default 0.7)")
    parser.add_argument("--folds", type=int, default=1, help="anchored walk-forward folds (default 1: one split)")
    parser.add_argument("--sl", default="0.005:0.03:0.005", help="stop-loss fractions, start:stop:step or a list")
    parser.add_argument("--rr", default="1:3:0.5", help="risk:reward ratios, start:stop:step or a list")
    parser.add_argument("--thresholds", help="score thresholds (default: 9 quantiles of |score| on the training data)")
    parser.add_argument("--objective", default="sharpe", help="sharpe, sortino, total_return, profit_factor, expectancy")
    parser.add_argument("--min-trades", type=int, default=30, help="fewest training trades a choice may rest on")
    parser.add_argument("--workers", type=int, default=0, help="processes (default: one per CPU core)")
    parser.add_argument("--dask", metavar="ADDRESS", help="run the series on an existing Dask cluster (tcp://host:8786); "
                        "needs the optional extra: pip install 'trading-bot[dask]'")
    parser.add_argument("--dask-timeout", type=float, default=10.0, metavar="SECONDS",
                        help="how long to try reaching the Dask scheduler (default 10)")
    parser.add_argument("--json", action="store_true", help="print the full result table as JSON")
    parser.add_argument("--dry-run", action="store_true", help="write nothing to the strategy config")
    add_report_option(parser, "per bot the heatmaps of the objective over the grid and the train vs test metrics")


def render_table(results: list[Any]) -> str:
    from trading_bot.backtest.metrics import Metrics

    def metrics(raw: dict[str, Any] | None) -> str:
        return cells(Metrics.from_json(raw) if raw else None)

    left = f"{'bot':<22} {'candles':>8}  {'thresh':>7} {'sl%':>5} {'rr':>4}"
    over = f"{'':<{len(left)}} | {'train (chooses)':<{len(HEAD)}} | test (only reported)"
    title = f"{left} | {HEAD} | {HEAD}"
    lines = [over, title, "-" * len(title)]
    for r in results:
        bot = f"{r.symbol} {r.timeframe}"
        if r.chosen is None:
            lines.append(f"{bot:<22} {r.candles:>8}  {r.error or 'no choice'}")
            continue
        c = r.chosen
        lines.append(f"{bot:<22} {r.candles:>8}  {c['threshold']:7.4f} {100 * c['sl_pct']:5.2f} {c['rr_ratio']:4.1f} | "
                     f"{metrics(r.train)} | {metrics(r.test)}")
    return "\n".join(lines)


def _dask_client(address: str, timeout: float) -> Any:
    """A client of the user's cluster: the same per-series jobs go to its workers instead of our
    process pool (they need the same package version and the same paths to the candle files)."""
    try:
        from distributed import Client
    except ImportError:
        raise CliError("--dask needs the optional extra: pip install 'trading-bot[dask]'") from None
    try:
        return Client(address, timeout=timeout)
    except (OSError, TimeoutError) as exc:
        raise CliError(f"--dask: cannot reach the Dask scheduler at {address} ({exc})") from None


def _options(args: argparse.Namespace, settings: Settings) -> Any:
    """The analysis options the arguments ask for (AnalysisOptions), or one line for the user."""
    from trading_bot.backtest.analyzer import OBJECTIVES, AnalysisOptions, Grid, parse_range

    if not 0.1 <= args.train <= 0.95:
        raise CliError(f"--train: expected a fraction between 0.1 and 0.95, got {args.train}")
    if args.objective not in OBJECTIVES:
        raise CliError(f"--objective: expected one of {', '.join(OBJECTIVES)}, got {args.objective!r}")
    if args.folds < 1 or args.min_trades < 1:
        raise CliError("--folds and --min-trades must be at least 1")
    try:
        grid = Grid(parse_range(args.sl, "--sl"), parse_range(args.rr, "--rr"),
                    parse_range(args.thresholds, "--thresholds") if args.thresholds else None)
    except ValueError as exc:
        raise CliError(str(exc)) from None
    return AnalysisOptions(grid=grid, train_fraction=args.train, folds=args.folds, objective=args.objective,
                           min_trades=args.min_trades, fee_rate=settings.fee_rate, slippage=settings.slippage,
                           risk_per_trade=settings.risk_per_trade, leverage=settings.leverage,
                           max_open_positions=settings.max_open_positions, initial_balance=settings.initial_balance,
                           max_order_notional=settings.max_order_notional)


def _analyze(jobs: list[Any], options: Any, args: argparse.Namespace) -> list[Any]:
    """Every series' results, on the process pool (or the Dask cluster), with one progress display."""
    from trading_bot.backtest.analyzer import cpu_workers, make_executor, run_jobs
    from trading_bot.ops.progress import Progress

    progress = Progress(len(jobs), "analyzing", items=len(jobs), unit="series")
    dask_client = _dask_client(args.dask, args.dask_timeout) if args.dask else None
    executor = dask_client.get_executor() if dask_client else make_executor(min(args.workers or cpu_workers(), len(jobs)))
    try:
        def done(r: Any) -> None:
            progress.advance(1)
            progress.item_done(f"{r.symbol} {r.timeframe}: {r.candles} candles, {r.combinations} backtests, "
                               f"{r.seconds:.2f}s{' — ' + r.error if r.error else ''}")

        return run_jobs(jobs, options, executor, done)
    finally:
        progress.close()
        if dask_client is not None:
            dask_client.close()
        elif executor is not None:
            executor.shutdown()


def _portfolio(jobs: list[Any], results: list[Any], config: Any, options: Any, settings: Settings) -> Any:
    """The portfolio check over the test period (PortfolioCheck), or None without a series to trade:
    under the settings' account rules and with funding, as the daemon trades."""
    from trading_bot.backtest.portfolio_check import check_portfolio, checked_bots
    from trading_bot.engine.candle_source import open_funding

    bots, left_out = checked_bots(jobs, results, config)
    if not bots:
        return None
    funding = open_funding(settings, sorted({bot.symbol for bot in bots}))
    return check_portfolio(bots, options, left_out, settings.protections, funding)


def run(args: argparse.Namespace, settings: Settings) -> int:
    from trading_bot.backtest.analyzer import jobs_for, updated_document
    from trading_bot.cli.portfolio_view import render_portfolio
    from trading_bot.domain.params import StrategyConfigError
    from trading_bot.marketdata.candle_csv import cache_file_name
    from trading_bot.persistence.strategy_config_file import load_config, write_config

    options = _options(args, settings)
    if args.report is not None:
        check_writable(args.report)
    keys = settings.bot_keys
    try:
        config = load_config(settings.strategy_config, keys)
    except StrategyConfigError as exc:
        raise CliError(f"strategy config: {exc}") from None
    missing = [f"{s} {tf}" for s, tf in keys if not (settings.candles_dir / cache_file_name(s, tf)).exists()]
    if len(missing) == len(keys):
        raise CliError(f"no cached history in {settings.candles_dir} for these bots: run `trading-bot fetch` first")
    started = time.perf_counter()
    jobs = jobs_for(keys, settings.candles_dir, config)  # the settings' order: the daemon's, for the portfolio
    results = _analyze(jobs, options, args)
    elapsed = time.perf_counter() - started
    check = _portfolio(jobs, results, config, options, settings)
    portfolio_s = time.perf_counter() - started - elapsed
    if args.json:
        print(json.dumps({"results": [r.as_json() for r in results], "seconds": elapsed, "grid_size": options.grid.size,
                          "portfolio": check.as_json() if check else None, "portfolio_seconds": portfolio_s},
                         indent=2, allow_nan=False))
    else:
        print(render_table(results))
        print(f"{len(results)} series, {sum(r.combinations for r in results)} backtests in {elapsed:.2f}s")
        print()
        print(render_portfolio(check) if check else "portfolio: no series with history to backtest")
        print(f"portfolio backtests (chosen and current params) in {portfolio_s:.2f}s")
    if args.report is not None:
        from trading_bot.reports.analyzer_report import render_analyzer_report

        write_report(args.report, render_analyzer_report(results, options))
    if args.dry_run:
        print("dry run: strategy config not written", file=sys.stderr)
        return 0
    chosen = [r for r in results if r.chosen is not None]
    if chosen:
        write_config(settings.strategy_config, updated_document(config.document, results, options, config))
        print(f"wrote {settings.strategy_config} ({len(chosen)} bot(s) updated; the running daemon reloads it)",
              file=sys.stderr)
    return 0
