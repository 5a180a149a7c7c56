"""Durable file writes: temp file in the same directory, fsync, rename, fsync the directory.

A reader therefore sees either the old file or the new one, never a torn one, even after a crash
or power loss. Writes from the event loop run in worker threads (atomic_write_bytes_async; the
journal's appends through finish_even_if_cancelled), so the loop never blocks on the disk, and a
started write always finishes. Append-only files (the trade journal, the candle cache) can still
end in a line a crash cut short: cut_torn_tail removes it.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable
from pathlib import Path
from typing import BinaryIO, TypeVar

import aiofiles.os

T = TypeVar("T")


def _temp_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def remove_orphaned_temp_files(directory: Path) -> int:
    """Remove the temp files (_temp_path's) whose writer is gone: a kill or a crash between a write
    and its rename leaves one, and nothing else ever would. A live process's are left alone, because
    several programs write in some folders (the daemon, `trading-bot fetch` and the analyzer in the
    candle cache). Returns how many were removed."""
    removed = 0
    for temp in directory.glob(".*.tmp"):
        pid = temp.name.rsplit(".", 2)[-2]
        if pid.isdigit() and not _running(int(pid)):
            temp.unlink(missing_ok=True)
            removed += 1
    return removed


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # no signal sent: only whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, as another user
    return True


def fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_synced(path: Path, mode: str, data: bytes) -> None:
    """Write and fsync: the bytes are on the disk, not in a cache, when this returns."""
    with open(path, mode) as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_path(path)
    try:
        _write_synced(tmp, "wb", data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def append_durable(path: Path, data: bytes) -> None:
    """Append one record and fsync it before returning (the journal's contract)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    _write_synced(path, "ab", data)


def whole_lines(data: bytes) -> tuple[list[bytes], bool]:
    """The complete lines of a file's bytes, and whether it ended in a torn line (no newline after
    it: an append a crash cut short), which is left out."""
    lines = data.split(b"\n")
    torn = lines.pop() != b""  # what follows the last newline: nothing, or a cut line
    return lines, torn


def cut_torn_tail(path: Path) -> int:
    """Cut a partial last line (an append a crash interrupted) so the next append starts on a line
    of its own. Returns the bytes cut: 0 for a file that ends with a newline, is empty or absent.
    Reads back from the end only as far as the last newline (the file may be large)."""
    try:
        with open(path, "rb+") as handle:
            size = handle.seek(0, os.SEEK_END)
            if size == 0:
                return 0
            handle.seek(size - 1)
            if handle.read(1) == b"\n":
                return 0
            keep = _after_last_newline(handle, size)
            handle.truncate(keep)
            return size - keep
    except FileNotFoundError:
        return 0


def _after_last_newline(handle: BinaryIO, size: int) -> int:
    """The offset just after the last newline before `size` (0 when there is none)."""
    end, block = size, 1 << 16
    while end > 0:
        start = max(0, end - block)
        handle.seek(start)
        cut = handle.read(end - start).rfind(b"\n")
        if cut >= 0:
            return start + cut + 1
        end, block = start, block * 2
    return 0


_atomic_write_in_thread = aiofiles.os.wrap(atomic_write_bytes)


async def finish_even_if_cancelled(write: Awaitable[T]) -> T:
    """Await one disk write running in a worker thread (the loop never blocks) and let it finish even
    when the caller is cancelled (a stop request cutting a heartbeat short): a write is a few milliseconds,
    and one abandoned halfway would leave an open handle, a stray temp file, or a rename racing the
    next write of the same file."""
    task = asyncio.ensure_future(write)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        await task
        raise


async def atomic_write_bytes_async(path: Path, data: bytes) -> None:
    await finish_even_if_cancelled(_atomic_write_in_thread(path, data))
