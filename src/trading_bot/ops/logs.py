"""Logging: human lines with timestamps in a terminal; under systemd (JOURNAL_STREAM set) no
timestamps and `<N>` syslog priority prefixes, which journald turns into levels. Optional LOG_FILE
(reopened when logrotate moves it). Secrets are masked in every record, whatever logged them."""

from __future__ import annotations

import logging
import logging.handlers
import os
import re
import sys
from collections.abc import Iterable
from pathlib import Path

SYSLOG_PRIORITY = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3, logging.CRITICAL: 2}


class JournaldFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        priority = SYSLOG_PRIORITY.get(record.levelno, 6)
        return f"<{priority}>{super().format(record)}"


# A listen key wherever it is named: ccxt's DEBUG lines print the listen key endpoint's answer
# ({"listenKey": "…"}) before the bot has the key to mask, and URLs carry ?listenKey=….
LISTEN_KEY_RE = re.compile(r"""(listenKey["']?\s*[:=]\s*["']?)[A-Za-z0-9_\-]{8,}""")


MASKED_LATER_KEEP = 50  # secrets learnt while running (listen keys: a few a day) kept masked, newest


_masked_later: list[str] = []


def mask(text: str, secrets: Iterable[str]) -> str:
    """`text` with every one of `secrets` (empty ones skipped) shown as ***: the one masking rule."""
    for secret in secrets:
        if secret and secret in text:
            text = text.replace(secret, "***")
    return text


def mask_also(secret: str) -> None:
    """Mask a secret learnt while running (a user data stream's listen key) in every record from now on."""
    if len(secret) >= 4 and secret not in _masked_later:
        _masked_later.append(secret)
        del _masked_later[:-MASKED_LATER_KEEP]


class RedactSecrets(logging.Filter):
    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        self.secrets = [s for s in secrets if s and len(s) >= 4]

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = self._mask(message)
        if masked != message:
            record.msg, record.args = masked, None
        if record.exc_info and not record.exc_text:  # a traceback's texts (an error naming a URL) are masked too
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self._mask(record.exc_text)
        return True

    def _mask(self, text: str) -> str:
        masked = LISTEN_KEY_RE.sub(r"\1***", text) if "listenKey" in text else text
        return mask(masked, self.secrets + _masked_later)


def under_journald() -> bool:
    return bool(os.environ.get("JOURNAL_STREAM"))


def setup_logging(level: str = "INFO", log_file: Path | None = None, secrets: Iterable[str] = ()) -> None:
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
        handler.close()
    root.setLevel(level)
    redact = RedactSecrets(secrets)
    console = logging.StreamHandler(sys.stdout)
    if under_journald():
        console.setFormatter(JournaldFormatter("%(message)s"))
    else:
        console.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(message)s", "%Y-%m-%d %H:%M:%S"))
    console.addFilter(redact)
    root.addHandler(console)
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        file_handler = logging.handlers.WatchedFileHandler(log_file, encoding="utf-8")
        file_handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(message)s"))
        file_handler.addFilter(redact)
        root.addHandler(file_handler)


def reopen_log_files() -> int:
    """Reopen every file handler (SIGHUP after logrotate moved the file). Returns how many."""
    count = 0
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler):
            handler.acquire()
            try:
                if handler.stream is not None:
                    handler.stream.close()
                handler.stream = handler._open()
                if isinstance(handler, logging.handlers.WatchedFileHandler):
                    handler._statstream()
            finally:
                handler.release()
            count += 1
    return count

