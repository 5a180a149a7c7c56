"""systemd integration through sd_notify (the sdnotify package): READY, STATUS, RELOADING,
STOPPING, and a watchdog that pings only while the heartbeat makes progress.

Everything is a silent no-op when NOTIFY_SOCKET is unset (a terminal, tmux, the tests).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable, Mapping

log = logging.getLogger(__name__)


class Notifier:
    """One datagram socket to systemd. Messages are ASCII (sdnotify encodes latin-1)."""

    def __init__(self) -> None:
        # sdnotify reads NOTIFY_SOCKET from the process environment itself.
        self.socket_path = os.environ.get("NOTIFY_SOCKET", "")
        self._notifier = None
        if self.socket_path:
            import sdnotify

            self._notifier = sdnotify.SystemdNotifier()
            if self._notifier.socket is not None:
                # Never block the event loop: a datagram socket whose reader lags (systemd busy, a test
                # that stopped reading) blocks a send once ~10 messages wait. A STATUS or a ping that
                # finds the queue full is dropped instead (sdnotify swallows the error).
                self._notifier.socket.setblocking(False)
        self.watchdog_usec = self._watchdog_usec(os.environ)

    @staticmethod
    def _watchdog_usec(env: Mapping[str, str]) -> int:
        """WATCHDOG_USEC, if it is meant for this process (WATCHDOG_PID unset or ours)."""
        try:
            usec = int(env.get("WATCHDOG_USEC", "0"))
            pid = int(env.get("WATCHDOG_PID", "0") or 0)
        except ValueError:
            return 0
        if usec <= 0 or (pid and pid != os.getpid()):
            return 0
        return usec

    @property
    def enabled(self) -> bool:
        return self._notifier is not None

    def send(self, *fields: str) -> None:
        if self._notifier is not None:
            self._notifier.notify("\n".join(fields))

    def ready(self, status: str = "") -> None:
        self.send("READY=1", *([f"STATUS={status}"] if status else []))

    def status(self, text: str) -> None:
        self.send(f"STATUS={text}")

    def reloading(self) -> None:
        # MONOTONIC_USEC lets newer systemd (Type=notify-reload) match the reload to this message.
        self.send("RELOADING=1", f"MONOTONIC_USEC={time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000}")

    def stopping(self) -> None:
        self.send("STOPPING=1", "STATUS=stopping")

    def watchdog(self) -> None:
        self.send("WATCHDOG=1")

    def close(self) -> None:
        if self._notifier is not None and getattr(self._notifier, "socket", None) is not None:
            self._notifier.socket.close()
        self._notifier = None


class Watchdog:
    """Pings WATCHDOG=1 every quarter of WatchdogSec, but only while the heartbeat has made progress
    within half of it. A hung loop (or a tick stuck on a call that never returns) stops the pings and
    systemd restarts the service; a slow call that still finishes in time does not."""

    def __init__(self, notifier: Notifier, last_progress: Callable[[], float],
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.notifier = notifier
        self.last_progress = last_progress
        self.clock = clock
        self.timeout_s = notifier.watchdog_usec / 1e6
        self.pings = 0
        self._stalled = False

    @property
    def active(self) -> bool:
        return self.notifier.enabled and self.timeout_s > 0

    def check(self) -> bool:
        """Ping if the heartbeat is alive; True when a ping was sent."""
        stalled_for = self.clock() - self.last_progress()
        if stalled_for <= self.timeout_s / 2:
            if self._stalled:
                log.warning("heartbeat progressing again; watchdog pings resumed")
            self._stalled = False
            self.notifier.watchdog()
            self.pings += 1
            return True
        if not self._stalled:
            log.error("heartbeat stalled for %.1fs (watchdog %.1fs): withholding watchdog pings so systemd "
                      "restarts the service", stalled_for, self.timeout_s)
        self._stalled = True
        return False

    async def run(self) -> None:
        interval = self.timeout_s / 4
        while True:
            self.check()
            await asyncio.sleep(interval)

