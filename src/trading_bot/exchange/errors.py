"""Telling exchange failures apart without importing ccxt (paper mode never loads it)."""

from __future__ import annotations

import sys


def is_exchange_error(exc: BaseException) -> bool:
    """A ccxt error: the exchange refused, failed or could not be reached (not a bug of ours)."""
    ccxt = sys.modules.get("ccxt")
    return ccxt is not None and isinstance(exc, ccxt.BaseError)
