"""The real ccxt binanceusdm client, pointed at a FakeBinance over loopback HTTP."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import ccxt.async_support as ccxt_async
import ccxt.pro as ccxt_pro

from trading_bot.exchange.client import point_client_at

if TYPE_CHECKING:
    from fakes.fake_binance import FakeBinance


def ccxt_client(fake: FakeBinance, pro: bool = False, **options: Any) -> ccxt_async.binanceusdm:
    """A real `ccxt.async_support.binanceusdm` with the fake's API key and secret, rate limiting on,
    currencies not fetched, and every `urls['api']` entry re-pointed at fake.url (path kept).

    Keyword arguments: a constructor setting of the client (timeout=500, enableRateLimit=False,
    secret="wrong", ...) when the client has such a non-callable attribute, otherwise an entry of
    client.options (adjustForTimeDifference=True, recvWindow=10000, ...); options={...} is merged too.

    ccxt picks the Binance error-code map by URL: codes such as -2019 (InsufficientFunds), -4164,
    -2022, -4116 (InvalidOrder) are only mapped for URLs starting https://fapi.binance.com/. Against
    http://127.0.0.1:<port> they would all surface as a bare ExchangeError, which the trading code
    never sees in production, so the client looks the maps up as if the URL were Binance's
    (trading_bot.exchange.point_client_at, the same code the daemon uses for EXCHANGE_URL).

    pro=True: a `ccxt.pro.binanceusdm` (the same REST client plus websockets), its linear websocket
    base on the fake too.
    """
    config: dict[str, Any] = {"apiKey": fake.api_key, "secret": fake.api_secret, "enableRateLimit": True}
    client_options: dict[str, Any] = {"fetchCurrencies": False}
    client_options.update(options.pop("options", {}))
    for key, value in options.items():
        if hasattr(ccxt_async.binanceusdm, key) and not callable(getattr(ccxt_async.binanceusdm, key)):
            config[key] = value
        else:
            client_options[key] = value
    config["options"] = client_options
    client = (ccxt_pro if pro else ccxt_async).binanceusdm(config)
    point_client_at(client, fake.url)
    if pro:
        # ccxt.pro derives /market/ws/<n> (klines) and /private/ws?listenKey= (user data) from this base
        client.urls["api"]["ws"]["linear"] = fake.ws_url
    return client


@asynccontextmanager
async def by_hand(fake: FakeBinance) -> AsyncIterator[ccxt_async.binanceusdm]:
    """A person trading on the same account (what the bot finds at its next start), closed after."""
    client = ccxt_client(fake, adjustForTimeDifference=True)
    try:
        yield client
    finally:
        await client.close()
