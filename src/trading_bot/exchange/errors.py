"""Telling exchange failures apart without importing ccxt (paper mode never loads it)."""

from __future__ import annotations

import sys


def is_exchange_error(exc: BaseException) -> bool:
    """A ccxt error: the exchange refused, failed or could not be reached (not a bug of ours)."""
    ccxt = sys.modules.get("ccxt")
    return ccxt is not None and isinstance(exc, ccxt.BaseError)


def short_error(exc: BaseException, limit: int = 160) -> str:
    """`Type: message` on one line, cut at `limit` characters (for a summary line)."""
    text = " ".join(str(exc).split())
    text = text if len(text) <= limit else text[: limit - 1] + "…"
    return f"{type(exc).__name__}: {text}"
