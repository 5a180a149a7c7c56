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
    NotSupported,
    OperationFailed,
    OrderImmediatelyFillable,
    OrderNotFound,
)

__all__ = [
    "AuthenticationError", "BaseError", "DDoSProtection", "ExchangeError", "NotSupported", "OperationFailed",
    "OrderImmediatelyFillable", "OrderNotFound", "listen_key_refused", "listen_key_unknown", "margin_mode_already_set",
    "margin_mode_locked", "order_does_not_exist",
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


def listen_key_unknown(exc: BaseException) -> bool:
    """Binance -1125: the listen key does not exist (expired, or closed): a new one is needed.
    (ccxt maps it to BadRequest on the futures URLs, AuthenticationError elsewhere: the code decides.)"""
    return "-1125" in str(exc)


def listen_key_refused(exc: BaseException) -> bool:
    """The exchange will not give this API key a user data stream, whatever the moment: the key is
    refused or lacks the permission (-2014, -2015, -1002, -1099, -1011 IP not allowed: ccxt's
    AuthenticationError family), or the service is gone (-1016, NotSupported). Not -1125."""
    return isinstance(exc, (AuthenticationError, NotSupported)) and not listen_key_unknown(exc)
