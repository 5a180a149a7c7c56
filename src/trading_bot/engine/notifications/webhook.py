"""A generic webhook (WEBHOOK_URL): each event POSTed as one JSON object that Discord (`content`),
Slack (`text`) and ntfy's JSON publishing (`message`) each read their part of, with the event's kind
and fields for anything else; or, WEBHOOK_FORMAT=text, the text alone as the body (an ntfy topic
URL shows it as the message). The URL is a secret: Discord's and Slack's embed a token."""

from __future__ import annotations

from typing import Any

import aiohttp

from trading_bot.engine.notifications.events import Event
from trading_bot.engine.notifications.outbox import Refused
from trading_bot.engine.notifications.transport import check_status, number, post

SEND_TIMEOUT_S = 10.0
DISCORD_MAX = 2000  # Discord refuses a longer `content`


def body(event: Event) -> dict[str, Any]:
    return {"text": event.text, "content": event.text[:DISCORD_MAX], "message": event.text, "event": event.kind,
            "fields": event.fields}


class Webhook:
    def __init__(self, session: aiohttp.ClientSession, url: str, as_text: bool = False) -> None:
        self._session = session
        self._url = url
        self._as_text = as_text

    async def send(self, event: Event) -> None:
        if self._as_text:
            status, answer, headers = await post(self._session, self._url, (self._url,), text_body=event.text,
                                                 timeout_s=SEND_TIMEOUT_S)
        else:
            status, answer, headers = await post(self._session, self._url, (self._url,), json_body=body(event),
                                                 timeout_s=SEND_TIMEOUT_S)
        if status < 300:
            return
        # Discord says how long in its JSON answer, the others in the Retry-After header.
        retry_after = number(answer.get("retry_after")) if isinstance(answer, dict) else None
        check_status(status, retry_after if retry_after is not None else number(headers.get("Retry-After")),
                     "webhook")
        raise Refused(f"webhook: HTTP {status}")  # a redirect aiohttp did not follow: not delivered
