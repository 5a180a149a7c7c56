"""Durable file writes: temp file in the same directory, fsync, rename, fsync the directory.

A reader therefore sees either the old file or the new one, never a torn one, even after a crash
or power loss. The async variants use aiofiles so the event loop never blocks on the disk.
"""

from __future__ import annotations

import os
from pathlib import Path

import aiofiles
import aiofiles.os


def _temp_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_path(path)
    try:
        with open(tmp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


_fsync = aiofiles.os.wrap(os.fsync)
_fsync_dir_async = aiofiles.os.wrap(_fsync_dir)


async def atomic_write_bytes_async(path: Path, data: bytes) -> None:
    await aiofiles.os.makedirs(path.parent, exist_ok=True)
    tmp = _temp_path(path)
    try:
        async with aiofiles.open(tmp, "wb") as handle:
            await handle.write(data)
            await handle.flush()
            await _fsync(handle.fileno())
        await aiofiles.os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    await _fsync_dir_async(path.parent)


async def append_durable_async(path: Path, data: bytes) -> None:
    """Append one record and fsync it before returning (the journal's contract)."""
    await aiofiles.os.makedirs(path.parent, exist_ok=True)
    async with aiofiles.open(path, "ab") as handle:
        await handle.write(data)
        await handle.flush()
        await _fsync(handle.fileno())
