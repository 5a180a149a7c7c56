"""The live orders' vocabulary: order sides, our client order ids and how an exchange order names
its client id. Plain functions, no ccxt (the reconciliation plan uses them too)."""

from __future__ import annotations

import uuid
from typing import Any

from trading_bot.domain.trades import LONG, SHORT

ORDER_SIDE = {LONG: "buy", SHORT: "sell"}


OUR_PREFIX = "tb-"  # every client order id this bot sends starts with it


def new_client_id(kind: str) -> str:
    """Binance allows 36 characters of [.A-Z:/a-z0-9_-]."""
    return f"{OUR_PREFIX}{kind}-{uuid.uuid4().hex[:24]}"


def client_id_of(order: dict[str, Any]) -> str:
    info = order.get("info") or {}
    return str(order.get("clientOrderId") or info.get("clientAlgoId") or info.get("clientOrderId") or "")


def is_our_client_id(client_id: str) -> bool:
    return client_id.startswith(OUR_PREFIX)


def is_ours(order: dict[str, Any]) -> bool:
    return is_our_client_id(client_id_of(order))
