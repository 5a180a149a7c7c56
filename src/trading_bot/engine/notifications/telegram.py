"""Telegram's Bot API: sendMessage and getUpdates (a long poll with an offset), at TELEGRAM_API_URL.

The token is part of every request's path (`/bot<token>/METHOD`), so it is passed to transport.post
as a secret to mask, and never formatted anywhere else. The Bot API answers
`{"ok": false, "error_code": 429, "parameters": {"retry_after": N}}` when we send too fast: N is
waited out (outbox.py)."""

from __future__ import annotations

from typing import Any

import aiohttp

from trading_bot.engine.notifications.events import Event
from trading_bot.engine.notifications.outbox import Refused, SendError
from trading_bot.engine.notifications.transport import check_status, number, post

SEND_TIMEOUT_S = 10.0
MAX_TEXT = 4096  # the Bot API's limit for one message


class TelegramBot:
    def __init__(self, session: aiohttp.ClientSession, api_url: str, token: str) -> None:
        self._session = session
        self._base = f"{api_url.rstrip('/')}/bot{token}/"
        self._secrets = (token,)

    async def send(self, event: Event) -> None:
        """One message to the event's chat (the caller puts one event per allow-listed chat)."""
        if event.chat_id is None:
            raise Refused("a Telegram message needs a chat id")
        await self.call("sendMessage", {"chat_id": event.chat_id, "text": event.text[:MAX_TEXT],
                                        "disable_web_page_preview": True}, SEND_TIMEOUT_S)

    async def get_updates(self, offset: int | None, poll_s: float) -> list[dict[str, Any]]:
        """The updates from `offset` on, waiting up to poll_s for one (the Bot API holds the request)."""
        payload: dict[str, Any] = {"timeout": int(poll_s), "allowed_updates": ["message"]}
        if offset is not None:
            payload["offset"] = offset
        result = await self.call("getUpdates", payload, poll_s + SEND_TIMEOUT_S)
        return [u for u in result if isinstance(u, dict)] if isinstance(result, list) else []

    async def call(self, method: str, payload: dict[str, Any], timeout_s: float) -> Any:
        status, answer, _ = await post(self._session, self._base + method, self._secrets, json_body=payload,
                                       timeout_s=timeout_s)
        if isinstance(answer, dict) and answer.get("ok") is True:
            return answer.get("result")
        if not isinstance(answer, dict):
            check_status(status, None, method)
            raise SendError(f"{method}: unreadable answer (HTTP {status})")
        code = answer.get("error_code", status)
        parameters = answer.get("parameters")
        retry_after = number(parameters.get("retry_after")) if isinstance(parameters, dict) else None
        description = str(answer.get("description", ""))[:200]
        check_status(code if isinstance(code, int) else status, retry_after, f"{method} {description}".strip())
        raise SendError(f"{method}: not ok (HTTP {status})")  # ok=false with a 2xx: odd, worth another try
