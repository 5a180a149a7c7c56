"""One HTTP POST for the notification clients, with every failure turned into SendError or Refused
whose text never holds a secret: aiohttp's exceptions name the URL (the Bot API token is in its
path, a Discord or Slack webhook URL is itself the secret), so each is rebuilt from its type and a
masked message, and raised `from None` so no traceback carries the original."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import aiohttp

from trading_bot.engine.notifications.outbox import Refused, SendError
from trading_bot.ops.logs import mask

USER_AGENT = "trading-bot"


async def post(session: aiohttp.ClientSession, url: str, secrets: tuple[str, ...], *, json_body: Any = None,
               text_body: str | None = None, timeout_s: float) -> tuple[int, Any, Mapping[str, str]]:
    """POST; returns (status, the parsed JSON answer or None, headers). Raises SendError for what may
    pass (network, timeout), never an aiohttp exception."""
    try:
        async with session.post(url, json=json_body, data=None if text_body is None else text_body.encode(),
                                headers={"User-Agent": USER_AGENT},
                                timeout=aiohttp.ClientTimeout(total=timeout_s)) as response:
            raw = await response.read()
            headers = dict(response.headers)
            status = response.status
    except TimeoutError:
        raise SendError(f"no answer within {timeout_s:g} s") from None
    except (aiohttp.ClientError, OSError, ValueError) as exc:
        raise SendError(mask(f"{type(exc).__name__}: {exc}", secrets)[:200]) from None
    try:
        answer = json.loads(raw) if raw else None
    except ValueError:
        answer = None
    return status, answer, headers


def check_status(status: int, retry_after: float | None, what: str) -> None:
    """429 and 5xx may pass (SendError, retried); any other 4xx will not (Refused)."""
    if status == 429:
        raise SendError(f"{what}: 429 too many requests", retry_after if retry_after is not None else 1.0)
    if status >= 500:
        raise SendError(f"{what}: HTTP {status}")
    if status >= 400:
        raise Refused(f"{what}: HTTP {status}")


def number(value: Any) -> float | None:
    try:
        return float(value) if value is not None else None
    except (TypeError, ValueError):
        return None
