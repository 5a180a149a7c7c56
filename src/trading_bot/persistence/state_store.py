"""What survives a restart: positions.json (atomic replace), trades.jsonl (append-only journal) and
status.json (the last heartbeat's figures, for `trading-bot status`).

positions.json: {"version": 1, "mode", "clock_ms", "saved_at", "data_source",
                 "wallet": {...}, "bots": {"BTC/USDT:USDT|5m": {"position", "pending", "last_candle_ts"}},
                 "intents": {client_id: OrderIntent.to_json()},
                 "paused": bool (optional: older files lack it, meaning not paused),
                 "guard": GuardRecord (optional: the account rules' day, peak and limits reached),
                 "funding_settled_ms": int | null (paper/replay: funding booked up to here)}
A bot may also carry "stop_streak" and "cooldown_until_ts" (written only when set).
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import time
from collections.abc import Iterable, Iterator
from dataclasses import MISSING, asdict, fields
from pathlib import Path
from typing import Any

from trading_bot.domain.intents import OrderIntent
from trading_bot.domain.timeframes import TIMEFRAME_MS
from trading_bot.domain.trades import BotBook, ClosedTrade, PendingEntry, Position
from trading_bot.domain.wallet import GuardRecord, SavedState, Wallet, bot_id
from trading_bot.persistence.atomic_files import (
    append_durable,
    atomic_write_bytes_async,
    cut_torn_tail,
    finish_even_if_cancelled,
)

STATE_VERSION = 1
# A trade is booked at most this long after its exit: a candle's close books what happened within it
# (a week, for 1w), and a fill seen late (a stop filled during an exchange outage) is found within days.
REPEAT_WINDOW_MS = 2 * max(TIMEFRAME_MS.values())
# The trades booked between the books' last save and a crash are at most a tick's closes: a few per
# bot, far fewer than this (2,800 bots for the whole market); ~20 MB of keys at most.
KEYS_KEPT = 50_000
BAD_LINES_LOGGED = 3  # a journal's unreadable lines logged one by one; the rest are counted


POSITIONS_FILE = "positions.json"


TRADES_FILE = "trades.jsonl"


STATUS_FILE = "status.json"


log = logging.getLogger(__name__)


class StateError(ValueError):
    """A state file exists but cannot be used; the message names the file."""


def _dumps(document: Any) -> bytes:
    return json.dumps(document, separators=(",", ":"), allow_nan=False).encode()


def encode_state(state: SavedState, saved_at: int, data_source: str) -> bytes:
    bots = {
        bot_id(book.symbol, book.timeframe): {
            "position": book.position.to_json() if book.position else None,
            "pending": asdict(book.pending) if book.pending else None,
            "last_candle_ts": book.last_candle_ts,
            **({"stop_streak": book.stop_streak} if book.stop_streak else {}),
            **({"cooldown_until_ts": book.cooldown_until_ts} if book.cooldown_until_ts is not None else {}),
        }
        for book in state.books.values()
    }
    return _dumps({
        "version": STATE_VERSION, "mode": state.mode, "clock_ms": state.clock_ms, "saved_at": saved_at,
        "data_source": data_source, "wallet": asdict(state.wallet), "bots": bots,
        "intents": {client_id: intent.to_json() for client_id, intent in state.intents.items()},
        "paused": state.paused, "guard": asdict(state.guard), "funding_settled_ms": state.funding_settled_ms,
    })


def _finite_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def decode_state(data: bytes, source: str) -> SavedState:
    try:
        doc = json.loads(data)
        if not isinstance(doc, dict):
            raise ValueError("expected a JSON object")
        if doc.get("version") != STATE_VERSION:
            raise ValueError(f"unsupported version {doc.get('version')!r}")
        raw_wallet = doc["wallet"]
        wallet = Wallet(**{k: raw_wallet[k] for k in Wallet.__dataclass_fields__ if k in raw_wallet or k != "funding"})
        if not all(_finite_number(getattr(wallet, k)) for k in Wallet.__dataclass_fields__):
            raise ValueError("wallet has a non-numeric value")
        books: dict[str, BotBook] = {}
        for key, raw in doc["bots"].items():
            symbol, _, timeframe = key.rpartition("|")
            book = BotBook(symbol, timeframe, last_candle_ts=raw.get("last_candle_ts"),
                           stop_streak=int(raw.get("stop_streak", 0)), cooldown_until_ts=raw.get("cooldown_until_ts"))
            if raw.get("position"):
                book.position = Position.from_json(raw["position"])
            if raw.get("pending"):
                book.pending = PendingEntry(**raw["pending"])
            books[key] = book
        raw_intents = doc.get("intents", {})
        if not isinstance(raw_intents, dict):
            raise ValueError("intents must be an object")
        intents = {client_id: OrderIntent.from_json(client_id, raw) for client_id, raw in raw_intents.items()}
        paused = doc.get("paused", False)
        if not isinstance(paused, bool):
            raise ValueError("paused must be true or false")
        guard = _guard_record(doc.get("guard", {}))
        settled = doc.get("funding_settled_ms")
        if settled is not None and not (isinstance(settled, int) and not isinstance(settled, bool)):
            raise ValueError("funding_settled_ms must be a whole number")
        return SavedState(wallet, books, doc.get("clock_ms"), doc.get("mode", "paper"), intents, paused, guard,
                          settled)
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise StateError(f"{source}: unreadable state ({type(exc).__name__}: {exc})") from None


def _guard_record(raw: Any) -> GuardRecord:
    if not isinstance(raw, dict):
        raise ValueError("guard must be an object")
    record = GuardRecord(**{k: raw[k] for k in GuardRecord.__dataclass_fields__ if k in raw})
    for name in ("day_start_balance", "peak_balance"):
        value = getattr(record, name)
        if value is not None and not _finite_number(value):
            raise ValueError(f"guard.{name} must be a number")
    if record.drawdown_halt is not None and not isinstance(record.drawdown_halt, str):
        raise ValueError("guard.drawdown_halt must be text")
    return record


class StateStore:
    """The one writer of the state directory."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.positions_path = directory / POSITIONS_FILE
        self.trades_path = directory / TRADES_FILE
        self.status_path = directory / STATUS_FILE
        self._journaled: dict[tuple[Any, ...], None] | None = None  # an ordered set: the oldest go first
        self._keys_kept = KEYS_KEPT
        self._loaded_clock_ms: int | None = None  # the bot's clock when the books load() read were saved
        # One writer per file: parallel bots save at the same moment, and two writes through the one
        # temp file would lose a rename (and reorder states).
        self._positions_lock = asyncio.Lock()
        self._journal_lock = asyncio.Lock()
        self._status_lock = asyncio.Lock()

    def load(self) -> SavedState | None:
        try:
            data = self.positions_path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StateError(f"{self.positions_path}: cannot read ({exc.strerror or exc})") from None
        state = decode_state(data, str(self.positions_path))
        self._loaded_clock_ms = state.clock_ms
        return state

    def set_aside_corrupt(self) -> Path:
        """Keep an unreadable positions.json as a dated backup (nothing is ever deleted)."""
        backup = self.positions_path.with_name(f"{POSITIONS_FILE}.corrupt-{time.strftime('%Y%m%dT%H%M%S')}")
        os.replace(self.positions_path, backup)
        return backup

    def repair_journal(self) -> int:
        """Cut a torn last line (a crash mid-append) so the next record starts on its own line.
        Returns the bytes cut."""
        cut = cut_torn_tail(self.trades_path)
        if cut:
            log.warning("%s: cut a torn last line (%d bytes) left by a crash", self.trades_path, cut)
        return cut

    async def save(self, state: SavedState, saved_at: int, data_source: str) -> None:
        async with self._positions_lock:  # encoded inside: the books as they are when the write starts
            await atomic_write_bytes_async(self.positions_path, encode_state(state, saved_at, data_source))

    async def append_trade(self, trade: ClosedTrade) -> bool:
        """Append a closed trade once. A crash between this append and the next positions.json save
        makes the restarted bot close the same position again; the journal then already has it.
        Returns False for such a repeat. In a thread (the first call reads the journal's newest
        trades: a long journal would stall the loop's every task), and finished even if cancelled."""
        async with self._journal_lock:  # one at a time: the thread owns the keys while it runs
            return await finish_even_if_cancelled(asyncio.to_thread(self._append_once, trade))

    def _append_once(self, trade: ClosedTrade) -> bool:
        if self._journaled is None:
            self._journaled = self._keys_a_repeat_could_have()
            self._keys_kept = max(KEYS_KEPT, len(self._journaled))
        record = trade.to_json()
        key = trade_key(record)
        if key in self._journaled:
            return False
        append_durable(self.trades_path, _dumps(record) + b"\n")
        self._journaled[key] = None
        if len(self._journaled) > self._keys_kept:  # a long run of the whole market: bounded memory
            del self._journaled[next(iter(self._journaled))]
        return True

    def _keys_a_repeat_could_have(self) -> dict[tuple[Any, ...], None]:
        """The keys of the journal's trades that a restart could close again: those booked after the
        books were last saved, which are the journal's newest. Each was booked at most
        REPEAT_WINDOW_MS after its exit, so the journal is read from its end back to the first trade
        that exited before the saved books' clock less that window (it, and all before it, were booked
        before that save), and at most KEYS_KEPT trades. Without books (a replay starting over on a
        journal it wrote before), all of it. Oldest first."""
        since = None if self._loaded_clock_ms is None else self._loaded_clock_ms - REPEAT_WINDOW_MS
        newest_first: list[tuple[Any, ...]] = []
        for record in iter_journal_backwards(self.trades_path):
            if since is not None:
                exit_ts: Any = record.get("exit_ts")
                if len(newest_first) >= KEYS_KEPT or (_finite_number(exit_ts) and exit_ts < since):
                    break
            newest_first.append(trade_key(record))
        return dict.fromkeys(reversed(newest_first))

    async def write_status(self, status: dict[str, Any]) -> None:
        async with self._status_lock:
            await atomic_write_bytes_async(self.status_path, _dumps(status))


def trade_key(record: dict[str, Any]) -> tuple[Any, ...]:
    """What identifies one trade: its bot, side and entry (time, price, size)."""
    return (record.get("symbol"), record.get("timeframe"), record.get("side"), record.get("entry_ts"),
            record.get("signal_ts"), record.get("entry_price"), record.get("qty"))


def read_journal(path: Path, unreadable: list[str] | None = None) -> list[dict[str, Any]]:
    """Every complete record; a torn or garbled line (a crash mid-append) is skipped with a warning
    (see iter_journal)."""
    return list(iter_journal(path, unreadable))


def iter_journal_backwards(path: Path, block: int = 1 << 16) -> Iterator[dict[str, Any]]:
    """The journal's records from the newest to the oldest, read from the end a block at a time: a
    caller that wants only the newest reads only those. A torn last line and garbled lines are
    skipped without a word (iter_journal, which reads it all, reports them)."""
    try:
        journal = path.open("rb")
    except FileNotFoundError:
        return
    with journal:
        position = journal.seek(0, os.SEEK_END)
        rest = b""
        torn_tail = True  # the text after the last newline: a torn line, or nothing
        while position > 0:
            step = min(block, position)
            position -= step
            journal.seek(position)
            lines = (journal.read(step) + rest).split(b"\n")
            rest = lines.pop(0)  # may begin in the block before
            for line in reversed(lines):
                if torn_tail:
                    torn_tail = False
                    continue
                if (record := _record(line)) is not None:
                    yield record
        if not torn_tail and (record := _record(rest)) is not None:
            yield record


def _record(line: bytes) -> dict[str, Any] | None:
    """One journal line's record; None for a blank, garbled or non-object line."""
    try:
        record = json.loads(line) if line.strip() else None
    except ValueError:
        return None
    return record if isinstance(record, dict) else None


def iter_journal(path: Path, unreadable: list[str] | None = None) -> Iterator[dict[str, Any]]:
    """read_journal one line at a time: a long journal is never held in memory whole. The lines it
    skips are logged (the first few, then how many more: a garbled file must not flood the log), or,
    given `unreadable`, only listed there (for a command that reports them in its own words)."""
    try:
        journal = path.open("rb")
    except FileNotFoundError:
        return
    skipped = 0
    with journal:
        for number, line in enumerate(journal, 1):
            if not line.strip():
                continue
            record = _record(line)
            if record is None:
                where = "torn last line" if not line.endswith(b"\n") else f"bad line {number}"
                if unreadable is not None:
                    unreadable.append(where)
                elif (skipped := skipped + 1) <= BAD_LINES_LOGGED:
                    log.warning("%s: skipped a %s", path, where)
                continue
            yield record
    if skipped > BAD_LINES_LOGGED:
        log.warning("%s: skipped %d more bad lines", path, skipped - BAD_LINES_LOGGED)


_TRADE_FIELDS = {f.name for f in fields(ClosedTrade)}
_TRADE_REQUIRED = {f.name for f in fields(ClosedTrade) if f.default is MISSING}  # all but funding (older records lack it)
_TRADE_NUMBERS = ("qty", "entry_price", "entry_ts", "exit_price", "exit_ts", "entry_fee", "exit_fee", "pnl", "funding")


def journal_trades(records: Iterable[dict[str, Any]]) -> tuple[list[ClosedTrade], int]:
    """The journal's records as trades, and how many records were not trades (a missing field, a
    number that is not one: the caller reports them, never fatal)."""
    trades, skipped = [], 0
    for record in records:
        try:
            if not record.keys() >= _TRADE_REQUIRED:
                raise ValueError
            trade = ClosedTrade(**{k: v for k, v in record.items() if k in _TRADE_FIELDS})
            if not all(_finite_number(getattr(trade, k)) for k in _TRADE_NUMBERS) or not isinstance(trade.symbol, str):
                raise ValueError
        except (TypeError, ValueError):
            skipped += 1
            continue
        trades.append(trade)
    return trades, skipped


def read_status(path: Path) -> dict[str, Any] | None:
    try:
        doc = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None

