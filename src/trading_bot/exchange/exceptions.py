"""The ccxt exception types the live trading code catches, and the Binance error codes it tells
apart, so that ccxt is imported inside `trading_bot.exchange` only.

`OperationFailed` is what an unknown outcome looks like: ccxt's parent of NetworkError (timeouts,
resets, 5xx pages) that Binance's own server errors map to directly (-1000 unknown, -1001 internal
error, -1006 "execution status unknown", -1008 server busy; -1007 is a RequestTimeout). It is not an
ExchangeError, so catching NetworkError and ExchangeError alone lets those through.

Only live code imports this module: it imports ccxt at once, which paper mode must never load
(`trading_bot.exchange.errors` tells exchange failures apart without it).
"""

from __future__ import annotations

from ccxt import (
    AuthenticationError,
    BaseError,
    DDoSProtection,
    ExchangeError,
    OperationFailed,
    OrderImmediatelyFillable,
    OrderNotFound,
)

__all__ = [
    "AuthenticationError", "BaseError", "DDoSProtection", "ExchangeError", "OperationFailed",
    "OrderImmediatelyFillable", "OrderNotFound", "margin_mode_already_set", "margin_mode_locked", "order_does_not_exist",
]


def margin_mode_locked(exc: BaseException) -> bool:
    """Binance -4048: the margin mode cannot change while a position is open."""
    return "-4048" in str(exc)


def margin_mode_already_set(exc: BaseException) -> bool:
    """Binance -4046: the margin mode already is the one asked for."""
    return "-4046" in str(exc) or "No need to change" in str(exc)


def order_does_not_exist(exc: BaseException) -> bool:
    """Binance -2013: no order with that id (some answers come as a bare ExchangeError)."""
    return "-2013" in str(exc) or "does not exist" in str(exc).lower()
