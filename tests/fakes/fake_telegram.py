"""A local fake of Telegram's Bot API (sendMessage, getUpdates) on 127.0.0.1, and a fake webhook.

`FakeTelegram` answers `/bot<token>/METHOD` like the Bot API: a wrong token gets 401, getUpdates
long-polls (held until an update comes or its `timeout` passes) and confirms the updates below
`offset`; `offset=-1` answers the newest. Tests inject updates (`say`) and failures for the next
sendMessage calls (`fail_next`: a 429 with retry_after, a 500, or a hang that never answers)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from fakes.loopback import serve_on_loopback

TOKEN = "123456789:AAFakeTokenForTestsOnly_abcdefghij"


@dataclass
class Sent:
    chat_id: int
    text: str


@dataclass
class FakeTelegram:
    token: str = TOKEN
    sent: list[Sent] = field(default_factory=list)
    updates: list[dict[str, Any]] = field(default_factory=list)
    fail_next: list[str] = field(default_factory=list)  # "429", "500", "hang", "400"
    retry_after: float = 0.2  # the Bot API's are whole seconds; tests cannot wait that long
    send_calls: int = 0
    polls: int = 0
    _runner: web.AppRunner | None = None
    _new_update: asyncio.Event = field(default_factory=asyncio.Event)
    _closing: asyncio.Event = field(default_factory=asyncio.Event)  # ends the hangs, so close() is quick
    _next_id: int = 1000
    port: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> FakeTelegram:
        app = web.Application()
        app.router.add_post("/bot{token}/{method}", self._handle)
        self._runner, self.port = await serve_on_loopback(app)
        return self

    async def close(self) -> None:
        self._closing.set()
        self._new_update.set()  # a held getUpdates answers at once
        if self._runner is not None:
            await self._runner.cleanup()

    def say(self, chat_id: int, text: str, user_id: int | None = None) -> None:
        """User `user_id` writes `text` in chat `chat_id`: by default the user whose private chat it is
        (Telegram gives a private chat its user's id; a group's id is negative)."""
        self._next_id += 1
        user_id = chat_id if user_id is None else user_id
        self.updates.append({"update_id": self._next_id, "message": {
            "message_id": self._next_id, "from": {"id": user_id, "is_bot": False, "first_name": f"user{user_id}"},
            "chat": {"id": chat_id, "type": "private" if chat_id > 0 else "supergroup"}, "text": text}})
        self._new_update.set()

    def texts(self, chat_id: int | None = None) -> list[str]:
        return [m.text for m in self.sent if chat_id is None or m.chat_id == chat_id]

    async def _handle(self, request: web.Request) -> web.Response:
        if request.match_info["token"] != self.token:
            return web.json_response({"ok": False, "error_code": 401, "description": "Unauthorized"}, status=401)
        body = await request.json()
        method = request.match_info["method"]
        if method == "sendMessage":
            return await self._send(body)
        if method == "getUpdates":
            return await self._get_updates(body)
        return web.json_response({"ok": False, "error_code": 404, "description": "Not Found"}, status=404)

    async def _send(self, body: dict[str, Any]) -> web.Response:
        self.send_calls += 1
        failure = self.fail_next.pop(0) if self.fail_next else None
        if failure == "hang":
            await self._closing.wait()  # never answered while the test runs
        if failure == "429":
            return web.json_response({"ok": False, "error_code": 429, "description": "Too Many Requests: retry after 1",
                                      "parameters": {"retry_after": self.retry_after}}, status=429)
        if failure == "500":
            return web.json_response({"ok": False, "error_code": 500, "description": "Internal Server Error"},
                                     status=500)
        if failure == "400":
            return web.json_response({"ok": False, "error_code": 400, "description": "Bad Request: chat not found"},
                                     status=400)
        self.sent.append(Sent(int(body["chat_id"]), str(body["text"])))
        return web.json_response({"ok": True, "result": {"message_id": len(self.sent)}})

    async def _get_updates(self, body: dict[str, Any]) -> web.Response:
        self.polls += 1
        offset = body.get("offset")
        if offset == -1:
            return web.json_response({"ok": True, "result": self.updates[-1:]})
        if offset is not None:  # confirmed: never sent again
            self.updates = [u for u in self.updates if u["update_id"] >= offset]
        if not self.updates and body.get("timeout"):
            self._new_update.clear()
            try:
                await asyncio.wait_for(self._new_update.wait(), float(body["timeout"]))
            except TimeoutError:
                pass
        return web.json_response({"ok": True, "result": self.updates})


@dataclass
class FakeWebhook:
    """Records each POST: its JSON (or its text, when not JSON)."""

    received: list[Any] = field(default_factory=list)
    _runner: web.AppRunner | None = None
    port: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/SECRETWEBHOOKTOKEN123"

    async def start(self) -> FakeWebhook:
        app = web.Application()
        app.router.add_post("/hooks/{token}", self._handle)
        self._runner, self.port = await serve_on_loopback(app)
        return self

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.Response:
        if request.content_type == "application/json":
            self.received.append(await request.json())
        else:
            self.received.append(await request.text())
        return web.Response(status=204)


class DeadServer:
    """Accepts connections and never answers: a hung endpoint."""

    def __init__(self) -> None:
        self._server: asyncio.AbstractServer | None = None
        self._writers: list[asyncio.StreamWriter] = []
        self.connections = 0
        self.port = 0

    async def start(self) -> DeadServer:
        self._server = await asyncio.start_server(self._hold, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def _hold(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._writers.append(writer)
        await reader.read(1 << 20)  # read the request, answer nothing; returns when the client goes

    async def close(self) -> None:
        for writer in self._writers:
            writer.close()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
