"""The bounded queue between the daemon and one destination (Telegram, the webhook).

The heartbeat only ever calls `put`, which never awaits: a full queue drops the event (counted, and
logged once per burst of drops). One sender task per destination drains the queue at the
destination's pace (a token bucket: a short burst, then a steady rate; a 429's retry-after is
waited out), retries network errors and 5xx with a growing backoff and gives up after a few tries
(counted). A dead endpoint therefore costs the heartbeat nothing: its messages wait in the queue
and are dropped when it is full.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from trading_bot.engine.notifications.events import Event

log = logging.getLogger("trading_bot")


class SendError(Exception):
    """A send that may work if tried again (network, timeout, 5xx, 429). The message names no URL."""

    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.retry_after = retry_after  # seconds the destination asked us to wait (429), else None


class Refused(Exception):
    """A send the destination will never take (4xx but 429: a wrong token, a bad chat id)."""


@dataclass
class Counters:
    """What happened to the events put in one outbox (read by the metrics, when they export them)."""

    queued: int = 0  # accepted by put
    sent: int = 0
    dropped: int = 0  # the queue was full
    failed: int = 0  # given up on: refused, or still failing after the last try
    retries: int = 0  # sends tried again


@dataclass(frozen=True)
class Pace:
    burst: int = 3  # sent at once after a quiet spell
    per_second: float = 1.0  # Telegram: about one message a second per chat
    attempts: int = 4
    backoff_s: float = 0.5  # after a network error or a 5xx: 0.5 s, 1 s, 2 s, …
    max_wait_s: float = 60.0  # the longest retry-after we wait out before a try


class Outbox:
    def __init__(self, name: str, send: Callable[[Event], Awaitable[None]], *, size: int = 100,
                 pace: Pace = Pace()) -> None:
        self.name = name
        self.counters = Counters()
        self._send = send
        self._pace = pace
        self._queue: asyncio.Queue[Event] = asyncio.Queue(maxsize=size)
        self._tokens = float(pace.burst)
        self._refilled = time.monotonic()
        self._dropping = False  # in a burst of drops: logged at its first
        self._failing = False  # in a streak of failed messages: logged at its first
        self._task: asyncio.Task[None] | None = None

    def put(self, event: Event) -> None:
        """Never awaits, never raises: the caller is the heartbeat."""
        try:
            self._queue.put_nowait(event)
        except asyncio.QueueFull:
            self.counters.dropped += 1
            if not self._dropping:
                self._dropping = True
                log.warning("notifications: %s is not keeping up (queue of %d full): dropping messages "
                            "(%d dropped so far)", self.name, self._queue.maxsize, self.counters.dropped)
            return
        self._dropping = False
        self.counters.queued += 1

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._drain(), name=f"notify-{self.name}")

    async def close(self, flush_s: float) -> None:
        """Send what is queued for up to flush_s (never hanging the exit on a dead endpoint), then stop."""
        if self._task is None:
            return
        if not self._task.done():
            try:
                await asyncio.wait_for(self._queue.join(), flush_s)
            except TimeoutError:
                left = self._queue.qsize()
                if left:
                    log.warning("notifications: %s: %d message(s) not sent at exit", self.name, left)
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        self._task = None

    async def _drain(self) -> None:
        while True:
            event = await self._queue.get()
            try:
                await self._deliver(event)
            except Exception:  # a bug in a client must not end the sender: later messages still go
                self.counters.failed += 1
                log.exception("notifications: %s: sending failed", self.name)
            finally:
                self._queue.task_done()

    async def _deliver(self, event: Event) -> None:
        pace = self._pace
        reason = ""
        for attempt in range(pace.attempts):
            if attempt:
                self.counters.retries += 1
            await self._take_token()
            try:
                await self._send(event)
            except Refused as exc:
                self._failed(event, f"refused: {exc}")
                return
            except SendError as exc:
                reason = str(exc)
                wait = exc.retry_after if exc.retry_after is not None else pace.backoff_s * 2 ** attempt
                if attempt + 1 < pace.attempts:
                    await asyncio.sleep(min(wait, pace.max_wait_s))
                continue
            self.counters.sent += 1
            if self._failing:
                self._failing = False
                log.info("notifications: %s is answering again (%d message(s) given up on so far)", self.name,
                         self.counters.failed)
            return
        self._failed(event, f"{pace.attempts} tries, last: {reason}")

    def _failed(self, event: Event, why: str) -> None:
        self.counters.failed += 1
        level = logging.DEBUG if self._failing else logging.WARNING  # one warning per streak, not per message
        self._failing = True
        log.log(level, "notifications: %s: gave up on a %s message (%s)", self.name, event.kind, why)

    async def _take_token(self) -> None:
        pace = self._pace
        now = time.monotonic()
        self._tokens = min(float(pace.burst), self._tokens + (now - self._refilled) * pace.per_second)
        self._refilled = now
        if self._tokens < 1.0:
            await asyncio.sleep((1.0 - self._tokens) / pace.per_second)
            self._tokens = 1.0
            self._refilled = time.monotonic()
        self._tokens -= 1.0
