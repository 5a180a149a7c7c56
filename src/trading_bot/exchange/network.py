"""Is the exchange reachable? The host of an exchange id and a TCP probe (no ccxt import for the
known ones): the paper daemon decides on it whether to fall back to the synthetic market."""

from __future__ import annotations

import asyncio
from urllib.parse import urlparse

# Hosts to probe without importing ccxt; other exchange ids ask ccxt for theirs.
KNOWN_HOSTS = {
    "binanceusdm": "fapi.binance.com",
    "binance": "api.binance.com",
    "binancecoinm": "dapi.binance.com",
    "bybit": "api.bybit.com",
    "okx": "www.okx.com",
}


def exchange_host(exchange_id: str, exchange_url: str = "") -> tuple[str, int]:
    if exchange_url:
        parsed = urlparse(exchange_url)
        return parsed.hostname or "", parsed.port or (443 if parsed.scheme == "https" else 80)
    if exchange_id in KNOWN_HOSTS:
        return KNOWN_HOSTS[exchange_id], 443
    import ccxt  # only for an exchange we have no host for

    api = getattr(ccxt, exchange_id)().urls.get("api")
    url = next(iter(api.values())) if isinstance(api, dict) else str(api)
    return urlparse(url).hostname or "", 443


async def network_reachable(host: str, port: int, timeout: float = 3.0) -> tuple[bool, str]:
    """Can we open a TCP connection to the exchange? (DNS failure answers at once offline.)"""
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    except (TimeoutError, OSError) as exc:
        return False, f"{host}:{port} unreachable ({type(exc).__name__}: {exc or 'timed out'})"
    writer.close()
    try:
        await writer.wait_closed()
    except OSError:
        pass
    return True, f"{host}:{port} reachable"
