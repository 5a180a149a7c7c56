"""A small progress display for long batch jobs (history download, analysis over many series).

On a terminal it is one bar line redrawn in place with `\\r` (at most ~10 times a second, so a
fast job does not spend its time printing); in a pipe, a log file or under systemd a redrawn line
would be noise, so it prints plain lines only: one per finished item and any note. The caller
never needs to know which: TTY detection is `stream.isatty()`.
"""

from __future__ import annotations

import shutil
import sys
import time
from collections.abc import Callable
from typing import TextIO

BAR_WIDTH = 24


REDRAW_EVERY_S = 0.1


class Progress:
    """`total` units of work (candles, rows, ...) over `items` items (series, bots, ...).

    advance(n): n more units done. item_done(line): one more item finished (the line is printed
    only when not on a terminal; on a terminal the bar's item counter moves instead). note(line):
    a line the user should see in both modes (printed above the bar on a terminal). close():
    finish the bar line; safe to call twice.
    """

    def __init__(self, total: int, label: str, stream: TextIO | None = None, *, items: int = 0,
                 unit: str = "candles", item_name: str = "series", clock: Callable[[], float] = time.monotonic) -> None:
        self.total = max(0, int(total))
        self.label = label
        self.stream = stream = stream if stream is not None else sys.stderr  # at call time: stderr may be replaced
        self.items = items
        self.unit = unit
        self.item_name = item_name
        self.clock = clock
        self.done = 0
        self.items_done = 0
        isatty = getattr(stream, "isatty", None)
        self.interactive = bool(isatty and isatty())
        self._started = clock()
        self._last_draw = float("-inf")
        self._drawn = False
        self._closed = False

    def advance(self, n: int) -> None:
        self.done += max(0, int(n))
        self._redraw()

    def item_done(self, line: str) -> None:
        self.items_done += 1
        if self.interactive:
            self._redraw(force=True)
        else:
            self._write(line + "\n")

    def note(self, line: str) -> None:
        if self.interactive and self._drawn:
            self._write("\r\x1b[2K" + line + "\n")  # clear the bar, print above it, draw it again
            self._drawn = False
            self._redraw(force=True)
        else:
            self._write(line + "\n")

    def close(self) -> None:
        if self._closed:
            return
        if self.interactive:
            self._redraw(force=True)
            self._write("\n")
        self._closed = True

    def render(self) -> str:
        """The bar line (without the leading `\\r`)."""
        fraction = min(1.0, self.done / self.total) if self.total else 1.0
        filled = round(fraction * BAR_WIDTH)
        parts = [f"{self.label} [{'#' * filled}{'.' * (BAR_WIDTH - filled)}] {fraction:4.0%}",
                 f"{self.done:,}/{self.total:,} {self.unit}"]
        if self.items:
            parts.append(f"{self.items_done}/{self.items} {self.item_name}")
        elapsed = int(self.clock() - self._started)
        parts.append(f"{elapsed // 60}:{elapsed % 60:02d}")
        return "  ".join(parts)

    def _redraw(self, force: bool = False) -> None:
        if not self.interactive or self._closed:
            return
        now = self.clock()
        if not force and now - self._last_draw < REDRAW_EVERY_S:
            return
        self._last_draw = now
        width = shutil.get_terminal_size((100, 24)).columns - 1
        self._write("\r\x1b[2K" + self.render()[:width])
        self._drawn = True

    def _write(self, text: str) -> None:
        self.stream.write(text)
        self.stream.flush()

