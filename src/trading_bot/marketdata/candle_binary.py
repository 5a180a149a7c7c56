"""A binary copy of a candle CSV's newest rows beside it (`X.csv` → `X.csv.bin`): a start reads it
instead of parsing thousands of decimal lines per series (2,800 series: 17 M numbers, seconds).

The CSV stays the record, append-only as before; the copy is only a cache of it. It is written
atomically (temp, fsync, rename) and records which bytes of the CSV its rows were parsed from
(offsets and crc32). It is used only while the CSV still holds those bytes there and whatever was
appended after them parses cleanly and in time order; anything else (no copy, a damaged one, a CSV
replaced, rewritten or cut, a torn or junk line, a larger history limit) reads the CSV as before.
A copy is made only from a read that needed no cleaning, so the copy plus the appended lines are
the candles `read_candles` returns.

Layout: MAGIC; int64 little-endian start, end (the CSV bytes [start, end) are the rows' lines),
complete (1: the rows are all of the CSV's candles up to end), rows; uint32 crc32 of those CSV
bytes, crc32 of the rows; rows × 6 float64 little-endian.
"""

from __future__ import annotations

import logging
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from trading_bot.domain.candles import COLUMNS, TS
from trading_bot.marketdata.candle_csv import ReadReport, parse_candle_lines, read_candles
from trading_bot.persistence.atomic_files import atomic_write_bytes, whole_lines

log = logging.getLogger(__name__)

MAGIC = b"TBCNDL01"
_HEAD = struct.Struct("<8sqqqqII")
APPENDED_MAX_BYTES = 1 << 20  # more appended than this: the CSV's tail read is as cheap


@dataclass(frozen=True)
class Snapshot:
    """What a copy holds: candles parsed from the CSV's bytes [start, end), whose crc32 is lines_crc."""

    candles: np.ndarray
    start: int
    end: int
    complete: bool  # the candles are all of the CSV's up to end
    lines_crc: int


@dataclass(frozen=True)
class NewestRead:
    candles: np.ndarray
    behind: int | None  # CSV lines appended since the copy that was used; None: read from the CSV
    snapshot: Snapshot | None  # this read as a copy (None: it needed cleaning, or it is empty)


def binary_path(csv: Path) -> Path:
    return csv.with_name(csv.name + ".bin")


def encode(snapshot: Snapshot) -> bytes:
    rows = np.ascontiguousarray(snapshot.candles, dtype="<f8").tobytes()
    return _HEAD.pack(MAGIC, snapshot.start, snapshot.end, int(snapshot.complete), snapshot.candles.shape[0],
                      snapshot.lines_crc, zlib.crc32(rows)) + rows


def decode(data: bytes) -> Snapshot | None:
    """The copy in these bytes, or None when they are not a whole, intact one."""
    if len(data) < _HEAD.size:
        return None
    magic, start, end, complete, rows, lines_crc, rows_crc = _HEAD.unpack_from(data)
    if magic != MAGIC or rows < 1 or not 0 <= start < end or len(data) != _HEAD.size + rows * COLUMNS * 8:
        return None
    if zlib.crc32(memoryview(data)[_HEAD.size :]) != rows_crc:
        return None
    candles = np.frombuffer(data, dtype="<f8", offset=_HEAD.size).reshape(rows, COLUMNS).astype(np.float64)
    return Snapshot(candles, start, end, bool(complete), lines_crc)


def write_copy(csv: Path, snapshot: Snapshot) -> None:
    atomic_write_bytes(binary_path(csv), encode(snapshot))


def read_newest(csv: Path, limit: int) -> NewestRead:
    """read_candles(csv, limit), through the binary copy when it matches the CSV."""
    try:
        copy = decode(binary_path(csv).read_bytes())
    except OSError:
        copy = None
    if copy is not None and (copy.complete or copy.candles.shape[0] >= limit):
        read = _with_appended(csv, copy, limit)
        if read is not None:
            return read
    candles, report = read_candles(csv, limit)
    snapshot = None
    if report.clean and candles.shape[0]:
        snapshot = Snapshot(candles, report.rows_from, report.end, report.complete, report.rows_crc)
    return NewestRead(candles, None, snapshot)


def _with_appended(csv: Path, copy: Snapshot, limit: int) -> NewestRead | None:
    """The copy's candles and the CSV's lines after them, or None when the CSV does not hold the
    copy's lines where they were or does not continue them cleanly."""
    try:
        with open(csv, "rb") as handle:
            size = handle.seek(0, os.SEEK_END)
            if size < copy.end or size - copy.end > APPENDED_MAX_BYTES:
                return None
            handle.seek(copy.start)
            data = handle.read(size - copy.start)
    except OSError:
        return None
    held = copy.end - copy.start
    if len(data) != size - copy.start or zlib.crc32(memoryview(data)[:held]) != copy.lines_crc:
        return None
    lines, torn = whole_lines(data[held:])
    if torn:
        return None  # the CSV read drops it and says so
    if not lines:
        return NewestRead(copy.candles[-limit:], 0, None)  # up to date: nothing to write
    report = ReadReport()
    appended = parse_candle_lines(lines, report)
    if not report.clean or appended.shape[0] != len(lines) or appended[0, TS] <= copy.candles[-1, TS]:
        return None
    candles = np.concatenate((copy.candles, appended))
    complete = copy.complete and candles.shape[0] <= limit
    candles = candles[-limit:]
    start = _start_of_last_lines(data, candles.shape[0])
    snapshot = Snapshot(candles, copy.start + start, size, complete, zlib.crc32(memoryview(data)[start:]))
    return NewestRead(candles, len(lines), snapshot)


def _start_of_last_lines(data: bytes, count: int) -> int:
    """Where the last `count` lines of data (which ends with a newline) begin."""
    newlines = np.flatnonzero(np.frombuffer(data, dtype=np.uint8) == ord("\n"))
    return 0 if count >= newlines.shape[0] else int(newlines[-count - 1]) + 1


def renew_copy(csv: Path, limit: int) -> bool:
    """Write a copy that covers the CSV as it is now (False: it could not be made, for now)."""
    read = read_newest(csv, limit)
    if read.behind == 0:
        return True  # the copy is up to date
    if read.snapshot is None:
        return False
    try:
        write_copy(csv, read.snapshot)
    except OSError as exc:
        log.warning("%s: cannot write the binary copy of the candle cache: %s", binary_path(csv), exc)
        return False
    return True
