"""`trading-bot report`: one self-contained HTML file from a mode's trade journal; and the `--report
FILE` that `backtest` and `analyze` take. matplotlib is imported only when a report is written
(trading_bot.reports), never to build the parser.

    trading-bot report                                    # DRY_RUN's mode → data/reports/paper.html
    trading-bot report --mode live --since 2026-11-01 --out /var/www/bot/live.html
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from trading_bot.cli.errors import CliError
from trading_bot.settings import STATE_DIRS, Settings

REPORTS_DIR = "reports"  # under DATA_DIR: the default place of `trading-bot report`'s file


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--mode", choices=STATE_DIRS, help="whose journal: paper, live or replay (default: DRY_RUN's)")
    parser.add_argument("--out", type=Path, metavar="FILE", help="the HTML file (default: DATA_DIR/reports/MODE.html)")
    parser.add_argument("--since", metavar="DATE", help="only trades closed from then (YYYY-MM-DD, ISO datetime "
                                                        "(UTC unless it has an offset) or ms since the epoch)")


def add_report_option(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument("--report", type=Path, metavar="FILE", help=f"also write {what} as one HTML file with charts")


def check_writable(path: Path, option: str = "--report") -> None:
    """Before the work: the report's folder exists (or can be made) and we may write in it, so a typo
    does not cost an analysis."""
    if path.is_dir():
        raise CliError(f"{option} {path}: is a folder; give a file name")
    folder = path.parent
    while not folder.exists():  # the nearest existing ancestor must be writable to create the rest
        folder = folder.parent
    if not folder.is_dir() or not os.access(folder, os.W_OK | os.X_OK):
        raise CliError(f"{option} {path}: cannot write in {folder}")


def write_report(path: Path, text: str) -> None:
    from trading_bot.reports.html import write_page

    try:
        write_page(path, text)
    except OSError as exc:
        raise CliError(f"cannot write the report {path}: {exc.strerror or exc}") from None
    print(f"wrote {path} ({len(text.encode()) / 1024:.0f} KB)", file=sys.stderr)


def _starting_balance(state_dir: Path, settings: Settings) -> tuple[float, str]:
    """The books' own initial balance (positions.json), else the settings' INITIAL_BALANCE."""
    from trading_bot.persistence.state_store import StateError, StateStore

    try:
        saved = StateStore(state_dir).load()
    except StateError:
        saved = None
    if saved is None:
        return settings.initial_balance, "INITIAL_BALANCE"
    return saved.wallet.initial_balance, "positions.json"


def run(args: argparse.Namespace, settings: Settings) -> int:
    from trading_bot.domain.formatting import format_ms, parse_time_ms
    from trading_bot.persistence.state_store import TRADES_FILE, journal_trades, read_journal

    since_ms = None
    if args.since is not None:
        try:
            since_ms = parse_time_ms(args.since)
        except ValueError as exc:
            raise CliError(f"--since: {exc}") from None
    mode = args.mode or settings.mode()
    state_dir = settings.state_dir(mode=mode)
    journal = state_dir / TRADES_FILE
    unreadable: list[str] = []  # told here, in the page or the one error line, never logged one by one
    try:
        records = read_journal(journal, unreadable)
    except OSError as exc:
        raise CliError(f"cannot read {journal}: {exc.strerror or exc}") from None
    out = args.out or settings.data_dir / REPORTS_DIR / f"{mode}.html"
    check_writable(out, "--out")
    trades, skipped = journal_trades(records)
    # An empty page would pass for a real result (and a cron job would never hear of it): say so, exit 2.
    if not trades:
        why = "missing" if not journal.exists() else f"none of its {len(records)} records" if records else "empty"
        if unreadable:
            why += f", and {len(unreadable)} unreadable line(s)"
        raise CliError(f"no closed trades in {journal} ({why}): nothing to report")
    if since_ms is not None and all(t.exit_ts < since_ms for t in trades):
        raise CliError(f"no trade in {journal} closed on or after {format_ms(since_ms)} UTC: nothing to report")
    from trading_bot.reports.journal_report import ReportSource, render_trade_report  # matplotlib: only now

    balance, balance_from = _starting_balance(state_dir, settings)
    notes = []
    if skipped:
        notes.append(f"{skipped} journal record(s) were not trades and are left out.")
    if unreadable:
        shown = ", ".join(unreadable[:3]) + (", …" if len(unreadable) > 3 else "")
        notes.append(f"{len(unreadable)} unreadable journal line(s) are left out ({shown}).")
    source = ReportSource(f"Trade report: {mode}", f"journal {journal}; initial balance {balance:,.2f} from {balance_from}",
                          tuple(notes))
    write_report(out, render_trade_report(trades, balance, source, since_ms))
    return 0
