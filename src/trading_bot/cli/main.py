"""Command line: `trading-bot run|status|check-config|fetch|analyze|backtest|report|pause|resume|flatten|reload`.
Errors a user can cause end in one line on stderr and exit code 2, never a traceback. Heavy modules are imported
inside the commands."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from trading_bot import __version__
from trading_bot.cli.errors import EXIT_USAGE, CliError
from trading_bot.settings import (
    STATE_DIRS,
    Settings,
    SettingsError,
    env_file_warnings,
    load_settings,
    parse_symbols,
    parse_timeframes,
    parse_trading_symbols,
    symbol_fields,
)

COMMANDS = ("run", "status", "check-config", "analyze", "fetch", "backtest", "report", "pause", "resume", "flatten",
            "reload")


CONTROL_COMMANDS = ("pause", "resume", "flatten", "reload")


EXIT_NO_DAEMON = 1  # a control command with no daemon to answer it (not a usage error: exit 2 is for those)


def _speed(raw: str) -> float | None:
    if raw == "max":
        return None
    try:
        value = float(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected 'max' or a positive number, got {raw!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected 'max' or a positive number, got {raw!r}")
    return value


def _positive_int(raw: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {raw!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected at least 1, got {raw!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="trading-bot", description="Crypto futures trading daemon (paper by default).")
    parser.add_argument("--version", action="version", version=f"trading-bot {__version__}")
    parser.add_argument("--env-file", type=Path, default=Path(".env"), help="settings file (default: ./.env)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    run = sub.add_parser("run", help="run the daemon (paper mode unless DRY_RUN=false)")
    run.add_argument("--cycles", type=_positive_int, help="stop after N heartbeats")
    run.add_argument("--symbols", help="comma-separated symbols, top:N or all; overrides TRADING_SYMBOLS")
    run.add_argument("--timeframes", help="comma-separated timeframes, overrides TRADING_TIMEFRAMES")
    run.add_argument("--replay", action="store_true", help="drive the same loop over the cached candles with a simulated clock")
    run.add_argument("--speed", type=_speed, default=None, metavar="max|N",
                     help="replay speed: 'max' (default) or N× real time")

    status = sub.add_parser("status", help="open positions, equity, PnL and the last heartbeat")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    which = status.add_mutually_exclusive_group()
    which.add_argument("--mode", choices=STATE_DIRS, help="whose books: paper, live or replay (default: DRY_RUN's)")
    which.add_argument("--replay", action="store_true", help="the same as --mode replay")

    helps = {"pause": "running daemon: no new entries (open positions keep their stops and targets)",
             "resume": "running daemon: allow new entries again", "reload": "running daemon: what SIGHUP does",
             "flatten": "running daemon: close positions at market and cancel their stops and targets"}
    for name in CONTROL_COMMANDS:
        control = sub.add_parser(name, help=helps[name])
        control.add_argument("--mode", choices=STATE_DIRS, help="which daemon: paper, live or replay (default: DRY_RUN's)")
        if name == "flatten":
            # (not `symbols`: _settings reads that as the --symbols override)
            control.add_argument("flatten_symbols", nargs="*", metavar="SYMBOL", help="e.g. BTC/USDT:USDT")
            control.add_argument("--all", action="store_true", help="every open position")

    sub.add_parser("check-config", help="validate .env and the strategy config (exit 0 or 2)")

    from trading_bot.cli.analyze import add_arguments as add_analyze_arguments

    add_analyze_arguments(sub.add_parser("analyze", help="grid-search sl/rr/threshold per bot and rewrite the strategy config"))

    from trading_bot.cli.backtest import add_arguments as add_backtest_arguments

    add_backtest_arguments(sub.add_parser("backtest", help="backtest the whole portfolio (one wallet, the cap) "
                                                           "over the cached candles, as `run --replay` trades"))

    from trading_bot.cli.report import add_arguments as add_report_arguments

    add_report_arguments(sub.add_parser("report", help="write one self-contained HTML file with charts from a "
                                                       "mode's trade journal"))

    fetch = sub.add_parser("fetch", help="download candle and funding-rate history into the CSV cache (resumable)")
    fetch.add_argument("--symbols", help="comma-separated symbols, top:N or all (default: TRADING_SYMBOLS)")
    fetch.add_argument("--timeframes", help="comma-separated timeframes (default: TRADING_TIMEFRAMES)")
    fetch.add_argument("--since", help="YYYY-MM-DD, ISO datetime (UTC unless it has an offset) or ms since the epoch; "
                                       "default: 90 days ago")
    fetch.add_argument("--until", help="only candles opening before this time (same formats; default: now)")
    return parser


def _settings(args: argparse.Namespace) -> Settings:
    settings = load_settings(args.env_file)
    for warning in env_file_warnings(args.env_file):
        print(f"trading-bot: warning: {warning}", file=sys.stderr)
    overrides: dict[str, object] = {}
    try:
        if getattr(args, "symbols", None):
            overrides.update(symbol_fields(parse_trading_symbols(args.symbols)))
        if getattr(args, "timeframes", None):
            overrides["timeframes"] = parse_timeframes(args.timeframes)
    except ValueError as exc:
        raise CliError(f"--{'symbols' if 'symbol' in str(exc) else 'timeframes'}: {exc}") from None
    return settings.with_overrides(**overrides) if overrides else settings


def _listed(settings: Settings, command: str) -> Settings:
    """analyze and backtest work on the cache of a list of symbols; top:N and all are chosen by the daemon."""
    if settings.universe is not None:
        raise CliError(f"TRADING_SYMBOLS={settings.universe}: {command} needs a list of symbols: pass --symbols A,B "
                       "(the running daemon's choice is in `trading-bot status`)")
    return settings


def cmd_run(args: argparse.Namespace) -> int:
    settings = _settings(args)
    if not settings.dry_run and not args.replay:
        if not settings.api_key or not settings.api_secret:
            raise CliError("DRY_RUN=false needs API_KEY and API_SECRET (in .env or the environment)")
        if not settings.live_confirmed:
            raise CliError("DRY_RUN=false needs LIVE_TRADING_CONFIRMED=yes: launcher.sh asks for it; "
                           "under systemd set it in .env")
    import asyncio

    from trading_bot.domain.params import StrategyConfigError
    from trading_bot.engine.daemon import Daemon, StartupError
    from trading_bot.ops.logs import setup_logging
    from trading_bot.persistence.state_store import StateError

    setup_logging(settings.log_level, settings.log_file, [settings.api_key.reveal(), settings.api_secret.reveal(),
                                                          settings.telegram_bot_token.reveal(),
                                                          settings.webhook_url.reveal()])
    daemon = Daemon(settings, replay=args.replay, speed=args.speed, cycles=args.cycles)
    try:
        asyncio.run(daemon.run())
    except (StartupError, StrategyConfigError, StateError) as exc:
        raise CliError(str(exc)) from None
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from trading_bot.cli.status_view import collect_status, render_status, status_json
    from trading_bot.persistence.state_store import StateError

    settings = _settings(args)
    mode = args.mode or settings.mode(args.replay)
    try:
        status = collect_status(settings.state_dir(mode=mode), mode, settings.legacy_state_dir)
    except StateError as exc:
        raise CliError(str(exc)) from None
    print(status_json(status) if args.json else render_status(status))
    return 0


def cmd_control(args: argparse.Namespace) -> int:
    """pause | resume | flatten | reload: asked of the daemon running on the mode's state folder."""
    from trading_bot.ops.control import NoDaemon, ask

    request: dict[str, object] = {"command": args.command}
    if args.command == "flatten":
        if bool(args.flatten_symbols) == bool(args.all):
            raise CliError("flatten: name the symbols to close, or --all (not both)")
        try:
            request["symbols"] = None if args.all else list(parse_symbols(",".join(args.flatten_symbols)))
        except ValueError as exc:
            raise CliError(f"flatten: {exc}") from None
    settings = _settings(args)
    try:
        answer = ask(settings.state_dir(mode=args.mode or settings.mode()), request)
    except NoDaemon as exc:
        print(f"trading-bot: {exc}", file=sys.stderr)
        return EXIT_NO_DAEMON
    except OSError as exc:  # e.g. the socket belongs to another user
        raise CliError(f"cannot reach the daemon: {exc.strerror or exc}") from None
    if not answer.get("ok"):
        raise CliError(str(answer.get("message")))
    print(answer.get("message"))
    return 0


def cmd_check_config(args: argparse.Namespace) -> int:
    from trading_bot.domain.params import StrategyConfigError
    from trading_bot.persistence.strategy_config_file import load_config

    settings = _settings(args)
    keys = settings.bot_keys
    try:
        config = load_config(settings.strategy_config, keys)
        if settings.universe is not None:  # any symbol the file names may be chosen: check each, as the daemon does
            keys = config.named_keys(settings.timeframes)
            config.validate_for(keys)
    except StrategyConfigError as exc:
        raise CliError(f"strategy config: {exc}") from None
    for warning in config.unused_overrides(keys):
        print(f"trading-bot: warning: strategy config: {warning}", file=sys.stderr)
    bots = (f"{settings.universe} × {len(settings.timeframes)} timeframes, the symbols chosen at start"
            if settings.universe is not None else f"{len(keys)} bots")
    print(f"ok: settings valid ({bots}, {'paper' if settings.dry_run else 'LIVE'} mode); strategy config from {config.source}")
    return 0


def cmd_analyze(args: argparse.Namespace) -> int:
    from trading_bot.cli.analyze import run

    return run(args, _listed(_settings(args), "analyze"))


def cmd_backtest(args: argparse.Namespace) -> int:
    from trading_bot.cli.backtest import run

    return run(args, _listed(_settings(args), "backtest"))


def cmd_report(args: argparse.Namespace) -> int:
    from trading_bot.cli.report import run

    return run(args, _settings(args))


def cmd_fetch(args: argparse.Namespace) -> int:
    import asyncio

    from trading_bot.domain.formatting import parse_time_ms
    from trading_bot.exchange.history_download import FetchUnavailable, FetchUsageError, render_summary, run_fetch

    settings = _settings(args)
    bounds: dict[str, int | None] = {}
    for name in ("since", "until"):
        raw = getattr(args, name)
        try:
            bounds[name] = parse_time_ms(raw) if raw is not None else None
        except ValueError as exc:
            raise CliError(f"--{name}: {exc}") from None
    try:
        report = asyncio.run(run_fetch(settings, bounds["since"], bounds["until"]))
    except FetchUsageError as exc:
        raise CliError(str(exc)) from None
    except FetchUnavailable as exc:
        print(f"trading-bot: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("trading-bot: fetch interrupted; the candles downloaded so far are kept, run it again to resume",
              file=sys.stderr)
        return 130
    print(render_summary(report))
    if not report.ok:
        print(f"trading-bot: error: {report.incomplete()}; run it again to resume", file=sys.stderr)
        return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    # `trading-bot` and `trading-bot --cycles 3` mean `run`.
    if not set(COMMANDS) & set(args_list) and not {"-h", "--help", "--version"} & set(args_list):
        insert_at = 2 if args_list[:1] == ["--env-file"] else 0
        args_list.insert(insert_at, "run")
    args = build_parser().parse_args(args_list)
    handlers = {"run": cmd_run, "status": cmd_status, "check-config": cmd_check_config, "analyze": cmd_analyze,
                "fetch": cmd_fetch, "backtest": cmd_backtest, "report": cmd_report,
                **dict.fromkeys(CONTROL_COMMANDS, cmd_control)}
    try:
        return handlers[args.command](args)
    except (SettingsError, CliError) as exc:
        print(f"trading-bot: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 0

