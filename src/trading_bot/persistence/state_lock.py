"""One daemon per state folder: an exclusive flock on `daemon.lock` in it, held for the life of the
process. The kernel drops the lock when the process ends, however it ends (SIGKILL, OOM, power loss
of a container), so there is no stale lock to clean up; the file itself stays and holds the PID of
the last holder, which a second daemon names when it refuses to start."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from trading_bot.persistence.state_store import StateError

LOCK_FILE = "daemon.lock"


class StateLockedError(StateError):
    """Another process holds the state folder's lock."""


class StateLock:
    def __init__(self, directory: Path) -> None:
        self.path = directory / LOCK_FILE
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> None:
        """Take the lock or raise StateLockedError naming the holder's PID. Never waits."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _pid_in(fd)
            os.close(fd)
            raise StateLockedError(
                f"{self.path.parent} is in use by another trading-bot (PID {holder or 'unknown'}): "
                "one daemon per state folder; stop that one first") from None
        except BaseException:
            os.close(fd)
            raise
        # The PID goes in after the lock is ours (only the holder writes it), so a reader refused
        # a moment before may see the file empty: it then says "PID unknown".
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        """Closing the descriptor drops the lock. The file is not removed: unlinking a lock file
        lets a third process lock a new file while a second still holds the old one."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _pid_in(fd: int) -> int | None:
    raw = os.pread(fd, 32, 0).strip()
    return int(raw) if raw.isdigit() else None
