"""A child process's output read on a thread, so that a wait for a line ends at its deadline even when
the process goes silent (a readline on the pipe would block the test, and CI, for good)."""

from __future__ import annotations

import subprocess
import threading
import time
from typing import IO


class OutputLines:
    def __init__(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None, "start the process with stdout=subprocess.PIPE, text=True"
        self.proc = proc
        self._lines: list[str] = []
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read, args=(proc.stdout,), daemon=True)
        self._reader.start()

    def _read(self, stream: IO[str]) -> None:
        with stream:
            for line in stream:
                with self._changed:
                    self._lines.append(line)
                    self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    def text(self) -> str:
        with self._changed:
            return "".join(self._lines)

    def wait_for(self, wanted: str, timeout: float, after: int = 0) -> int:
        """Wait until a line after the first `after` holds `wanted`; return the count of lines read
        by then. Fails with the output so far if the deadline passes or the output ends first."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for number in range(after, len(self._lines)):
                    if wanted in self._lines[number]:
                        return number + 1
                after = len(self._lines)
                left = deadline - time.monotonic()
                if left <= 0 or not self._reader.is_alive():
                    raise AssertionError(f"no line with {wanted!r} in {timeout} s:\n{''.join(self._lines)[-4000:]}")
                self._changed.wait(min(left, 0.5))

    def finish(self, timeout: float) -> int:
        """Wait for the process to exit and its output to end; kill it if it has not by the deadline.
        Returns its exit code (negative for a signal)."""
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
            raise AssertionError(f"still running {timeout} s later, killed:\n{self.text()[-4000:]}") from None
        finally:
            self._reader.join(10)
        return self.proc.returncode


def killed(proc: subprocess.Popen[str]) -> None:
    """Teardown: nothing may outlive the test, and the wait for it is bounded too."""
    if proc.poll() is None:
        proc.kill()
    proc.wait(10)
