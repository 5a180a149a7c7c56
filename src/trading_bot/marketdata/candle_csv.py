"""The OHLCV CSV cache: `timestamp,open,high,low,close,volume`, ms UTC, ascending, no duplicates.

Reading is forgiving (a torn last line, junk rows, duplicates or disorder are dropped or fixed, and
counted); writing only ever appends whole lines, so the analyzer always finds the full history.
Candles in memory are float64 arrays in the same column order (domain/candles.py).
"""

from __future__ import annotations

import logging
import os
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from trading_bot.domain.candles import CLOSE, COLUMNS, EMPTY, HIGH, LOW, OPEN, TS, VOLUME
from trading_bot.persistence.atomic_files import cut_torn_tail, whole_lines

HEADER = "timestamp,open,high,low,close,volume"


log = logging.getLogger(__name__)


def cache_stem(symbol: str) -> str:
    """A symbol as a file name: `BTC/USDT:USDT` → `BTC_USDT_USDT` (every cache file of it starts so)."""
    return symbol.replace("/", "_").replace(":", "_")


def cache_file_name(symbol: str, timeframe: str) -> str:
    return f"{cache_stem(symbol)}_{timeframe}.csv"


@dataclass
class ReadReport:
    dropped: int = 0
    torn_tail: bool = False
    reordered: bool = False  # rows out of time order were sorted
    end: int = 0  # the file's size when read: the read covers bytes [.., end)
    complete: bool = False  # the candles are all of the file's (read from its start, none left out)
    # A clean read's candles are the file's bytes [rows_from, end); their crc32. A binary copy of
    # the candles proves with these that the file still holds them (candle_binary.py).
    rows_from: int = 0
    rows_crc: int = 0

    @property
    def clean(self) -> bool:
        """Every line read was a whole candle, in time order: the candles are those lines as written."""
        return not (self.dropped or self.torn_tail or self.reordered)


def _tail_bytes(path: Path, lines: int) -> tuple[bytes, bool, int]:
    """The last `lines` + 1 lines of the file (a bounded read, whatever the file's length), whether
    that is the whole file, and the file's size then (it may grow while it is read)."""
    with open(path, "rb") as handle:
        handle.seek(0, os.SEEK_END)
        end = handle.tell()
        block = 1 << 16
        pos = end
        data = b""
        while pos > 0 and data.count(b"\n") <= lines + 1:
            step = min(block, pos)
            pos -= step
            handle.seek(pos)
            data = handle.read(step) + data
            block *= 2
        return data, pos == 0, end


def parse_candle_lines(lines: list[bytes], report: ReadReport) -> np.ndarray:
    fast = _parse_clean_lines(lines)
    if fast is not None:
        return clean_candles(fast, report)
    rows: list[list[float]] = []
    for line in lines:
        parts = line.split(b",")
        if len(parts) != COLUMNS:
            report.dropped += 1
            continue
        try:
            row = [float(p) for p in parts]
        except ValueError:
            report.dropped += 1
            continue
        rows.append(row)
    if not rows:
        return EMPTY.copy()
    return clean_candles(np.array(rows, dtype=np.float64), report)


def _parse_clean_lines(lines: list[bytes]) -> np.ndarray | None:
    """The common case, every line whole and numeric, in one C pass (startup reads thousands of
    series): numpy's parser rounds as float() does (both correctly rounded), so the same values.
    None when any line is not: the forgiving path below drops and counts the bad ones."""
    if not lines:
        return None
    try:
        with warnings.catch_warnings():  # "no data" for all-blank input: the forgiving path counts it
            warnings.simplefilter("ignore", UserWarning)
            values = np.loadtxt(lines, delimiter=",", dtype=np.float64, comments=None, ndmin=2, encoding="bytes")
    except ValueError:
        return None
    return values if values.shape == (len(lines), COLUMNS) else None  # blank lines are skipped there


def clean_candles(candles: np.ndarray, report: ReadReport) -> np.ndarray:
    """Drop rows that cannot be real candles; sort by time and keep the last copy of a duplicate."""
    o, h, lo, c, v = (candles[:, i] for i in (OPEN, HIGH, LOW, CLOSE, VOLUME))
    finite = np.isfinite(candles[:, :VOLUME]).all(axis=1)
    with np.errstate(invalid="ignore"):
        sane = (
            finite
            & (candles[:, TS] >= 0)
            & (o > 0) & (h > 0) & (lo > 0) & (c > 0)
            & (h >= lo) & (h >= np.maximum(o, c)) & (lo <= np.minimum(o, c))
        )
    volume_ok = np.isfinite(v) & (v >= 0)
    candles = candles.copy()
    candles[~volume_ok, VOLUME] = 0.0  # mark-price files carry no volume; not a reason to drop
    report.dropped += int((~sane).sum())
    candles = candles[sane]
    if candles.shape[0] > 1:
        ts = candles[:, TS]
        if not (np.diff(ts) > 0).all():
            report.reordered = True
            order = np.argsort(ts, kind="stable")
            candles = candles[order]
            ts = candles[:, TS]
            keep = np.append(ts[1:] != ts[:-1], True)  # last copy of each timestamp wins
            report.dropped += int((~keep).sum())
            candles = candles[keep]
    return candles


def _split_lines(data: bytes, report: ReadReport, from_start: bool) -> list[bytes]:
    lines, torn = whole_lines(data)
    report.torn_tail = report.torn_tail or torn
    if lines and not from_start:
        lines.pop(0)  # possibly a partial line where the tail read started
    if lines and lines[0].strip().startswith(b"timestamp"):
        lines.pop(0)
    return lines


def _locate_rows(report: ReadReport, data: bytes, lines: list[bytes], rows: int) -> None:
    """A clean read's candles are its last `rows` lines, and `data` ends at report.end."""
    size = sum(map(len, lines[-rows:])) + rows  # with their newlines
    report.rows_from = report.end - size
    report.rows_crc = zlib.crc32(memoryview(data)[len(data) - size :])


def read_candles(path: Path, limit: int | None = None) -> tuple[np.ndarray, ReadReport]:
    """The last `limit` candles (all when None). A missing file gives an empty array."""
    report = ReadReport()
    try:
        if limit is None:
            data = path.read_bytes()
            from_start, report.end = True, len(data)
        else:
            data, from_start, report.end = _tail_bytes(path, limit + 2)
    except FileNotFoundError:
        return EMPTY.copy(), report
    lines = _split_lines(data, report, from_start)
    candles = parse_candle_lines(lines, report)
    report.complete = from_start and (limit is None or candles.shape[0] <= limit)
    if limit is not None and candles.shape[0] > limit:
        candles = candles[-limit:]
    if report.clean and candles.shape[0]:
        _locate_rows(report, data, lines, candles.shape[0])
    if report.dropped or report.torn_tail:
        log.warning("%s: dropped %d bad row(s)%s", path, report.dropped,
                    ", cut a torn last line" if report.torn_tail else "")
    return candles, report


def format_rows(candles: np.ndarray) -> bytes:
    out = []
    for row in candles.tolist():
        out.append(f"{int(row[TS])},{row[OPEN]!r},{row[HIGH]!r},{row[LOW]!r},{row[CLOSE]!r},{row[VOLUME]!r}\n")
    return "".join(out).encode()


def append_candles(path: Path, candles: np.ndarray) -> None:
    """Append whole lines (with a header when the file is new). No fsync: candles can always be
    fetched again, and a line cut by a crash is dropped on read and cut before the next append."""
    if candles.shape[0] == 0:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    cut_torn_tail(path)  # a line a crash cut short would otherwise glue onto the first new one
    new_file = not path.exists() or path.stat().st_size == 0
    data = (HEADER + "\n").encode() + format_rows(candles) if new_file else format_rows(candles)
    with open(path, "ab") as handle:
        handle.write(data)

