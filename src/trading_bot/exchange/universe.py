"""The symbol universe from the exchange: its markets (the client's, reloaded hourly) and, for top:N,
every market's 24 h quote volume in one request (ccxt fetch_tickers: Binance's GET /fapi/v1/ticker/24hr
without a symbol, weight 40). The choosing itself is domain/universe.py's."""

from __future__ import annotations

from typing import Any

from trading_bot.domain.universe import UniverseRule, choose, eligible_symbols
from trading_bot.exchange.client import ExchangeClient


class UniverseUnavailable(RuntimeError):
    """The exchange answered, but not with anything to choose from (one line for the user)."""


def quote_volume(ticker: dict[str, Any]) -> float | None:
    """A ccxt ticker's 24 h volume in the quote currency (base volume × last price if it has no quote volume)."""
    volume = ticker.get("quoteVolume")
    if volume is None and ticker.get("baseVolume") is not None and ticker.get("last") is not None:
        volume = ticker["baseVolume"] * ticker["last"]
    return None if volume is None else float(volume)


async def exchange_universe(client: ExchangeClient, rule: UniverseRule) -> tuple[str, ...]:
    eligible = eligible_symbols(await client.markets())
    if not eligible:
        raise UniverseUnavailable(f"{client.exchange_id} lists no active linear USDT perpetual")
    if rule.count is None:
        return choose(rule, eligible)
    tickers = await client.call("fetch_tickers")
    volumes = {symbol: quote_volume(ticker) for symbol, ticker in tickers.items()}
    if not any(volumes.get(symbol) for symbol in eligible):
        # Ranking on nothing would pick the first N by name: keep the symbols we have instead.
        raise UniverseUnavailable(f"{client.exchange_id} sent no 24 h volume for its perpetuals")
    return choose(rule, eligible, volumes)
