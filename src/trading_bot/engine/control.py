"""Operator controls of the running daemon: `pause`, `resume`, `flatten`, `reload`, asked over the
control socket (ops/control.py: `control.sock` in the state folder, mode 0600, no port, so the same
under systemd and tmux). One JSON request per connection, one JSON answer saying what was done.

The commands run on the daemon's event loop. A flatten takes the trading lock the heartbeat holds
for each tick, so it never races an entry; pause/resume only flip the broker's flag (read by the
next entry) and save it with the books, so a pause survives a restart. Every command is logged with
the uid that asked, and each is idempotent (a second pause says "already paused")."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from trading_bot.engine.startup import Parts
from trading_bot.ops.control import MAX_MESSAGE, peer_uid, socket_path

log = logging.getLogger("trading_bot")


COMMANDS = ("pause", "resume", "flatten", "reload")


class BadRequest(ValueError):
    """A request the daemon will not act on; the message goes back to the asker."""


class Controls:
    """What each command does, against the parts startup built."""

    def __init__(self, parts: Parts, trading: asyncio.Lock, reload: Callable[[], Awaitable[None]]) -> None:
        self.parts = parts
        self.trading = trading  # held by each heartbeat: a flatten waits for the tick in progress
        self._reload = reload

    async def run(self, request: dict[str, Any]) -> str:
        command = request.get("command")
        if command == "pause":
            return await self.pause()
        if command == "resume":
            return await self.resume()
        if command == "flatten":
            return await self.flatten(_symbols(request.get("symbols")))
        if command == "reload":
            await self._reload()
            return "reloaded: log files reopened, strategy config checked (see the log for what changed)"
        raise BadRequest(f"unknown command {command!r} (expected one of: {', '.join(COMMANDS)})")

    async def pause(self) -> str:
        broker = self.parts.broker
        if broker.paused:
            return "already paused: no new entries"
        dropped = broker.pause()
        await self._save()
        note = f"; {dropped} signal(s) waiting for their fill dropped" if dropped else ""
        return (f"paused: no new entries; {len(broker.open_positions())} open position(s) keep their stops and "
                f"targets{note}")

    async def resume(self) -> str:
        """Lifts the operator's pause and a drawdown halt; what only time or reconciliation clears stays."""
        broker = self.parts.broker
        lifted = broker.resume()
        if lifted:
            await self._save()
        state = broker.trading_state()
        answer = f"resumed: lifted {' and '.join(lifted)}" if lifted else "not paused or halted: nothing to resume"
        if state.allows_entries:
            return answer + "; new entries allowed"
        return answer + f"; but new entries stay refused: trading is {state.describe()}"

    async def flatten(self, symbols: set[str] | None) -> str:
        async with self.trading:  # between heartbeats: no entry is in flight
            broker = self.parts.broker
            held = broker.held(symbols)
            if not held:
                which = "" if symbols is None else f" on {', '.join(sorted(symbols))}"
                return f"nothing to flatten: no open position{which}"
            events = await broker.flatten(symbols, self.parts.report.marks(), self.parts.clock.now_ms())
            await self.parts.recorder.record(events, save_anyway=True)
            await self.parts.report.write()
        closed = ", ".join(f"{t.symbol} {t.timeframe} pnl={t.pnl:+.2f}" for t in events.closed) or "none"
        left = len(held) - len(events.closed)
        failed = f"; {left} could not be closed (see the log; they keep their stops)" if left else ""
        return f"flattened {len(events.closed)} position(s): {closed}{failed}"

    async def _save(self) -> None:
        await self.parts.recorder.save_state()
        await self.parts.report.write()
        self.parts.report.notifier.status(self.parts.report.status_line())


def _symbols(raw: Any) -> set[str] | None:
    if raw is None:
        return None  # --all
    if not isinstance(raw, list) or not raw or not all(isinstance(s, str) and s for s in raw):
        raise BadRequest("flatten: symbols must be a non-empty list of names (or null for all)")
    return set(raw)


class ControlServer:
    def __init__(self, state_dir: Path, controls: Controls) -> None:
        self.path = socket_path(state_dir)
        self.controls = controls
        self._server: asyncio.AbstractServer | None = None

    async def start(self) -> bool:
        """Listen on the socket (a dead daemon's left-over one is replaced: the state lock says no
        other daemon owns this folder). False, logged, if it cannot: trading goes on without it."""
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self.path.unlink(missing_ok=True)
            sock.bind(str(self.path))
            os.chmod(self.path, 0o600)  # before listen(): nobody can connect in between
            self._server = await asyncio.start_unix_server(self._serve, sock=sock)
        except OSError as exc:
            sock.close()
            log.error("operator controls unavailable: cannot listen on %s (%s)", self.path, exc.strerror or exc)
            return False
        return True

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
            self.path.unlink(missing_ok=True)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        uid = peer_uid(sock) if sock is not None else None
        try:
            answer = await self._answer(await reader.read(MAX_MESSAGE), uid)
            writer.write(json.dumps(answer).encode())
            await writer.drain()
        except (ConnectionError, OSError):
            pass  # the asker went away; what was done is logged
        finally:
            writer.close()

    async def _answer(self, data: bytes, uid: int | None) -> dict[str, Any]:
        who = f"uid {uid}" if uid is not None else "unknown uid"
        try:
            request = json.loads(data)
            if not isinstance(request, dict):
                raise BadRequest("expected a JSON object")
        except ValueError:
            log.warning("control: unreadable request from %s", who)
            return {"ok": False, "message": "unreadable request"}
        log.info("control: %s asked by %s", str(request.get("command"))[:20], who)
        try:
            message = await self.controls.run(request)
        except BadRequest as exc:
            log.warning("control: refused (%s)", exc)
            return {"ok": False, "message": str(exc)}
        except Exception as exc:  # a command's failure is answered and logged, never stops the daemon
            log.exception("control: %s failed", request.get("command"))
            return {"ok": False, "message": f"failed: {type(exc).__name__}: {str(exc)[:200]}"}
        log.info("control: %s", message)
        return {"ok": True, "message": message}
