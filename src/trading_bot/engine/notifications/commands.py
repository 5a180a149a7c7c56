"""Chat commands over Telegram: /status, /profit, /positions, /pause, /resume, /flatten SYMBOL.

Only messages from the allow-listed chats (TELEGRAM_CHAT_ID) are read; any other chat is logged
once with its id and never answered. With TELEGRAM_ALLOWED_USERS set, only those users' commands
are obeyed (in a group every member writes in the allow-listed chat). The actions are the operator
controls' own (`Controls`, engine/control.py: the same methods the control socket calls), so a
chat's pause is the CLI's pause. A flatten asks first: it is done only on `/confirm CODE` from the
same user in the same chat within CONFIRM_S. The backlog waiting when the daemon starts is skipped,
never run: an old /flatten must not close a position of today."""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from trading_bot.domain.formatting import format_price
from trading_bot.domain.trades import SIDE_NAMES
from trading_bot.engine.control import Controls
from trading_bot.engine.notifications import events
from trading_bot.engine.notifications.events import Event
from trading_bot.engine.notifications.outbox import Refused, SendError
from trading_bot.engine.notifications.telegram import TelegramBot
from trading_bot.engine.status import StatusReport

log = logging.getLogger("trading_bot")

POLL_S = 30.0  # the long poll: the Bot API holds getUpdates up to this long when nothing is new
CONFIRM_S = 60.0
RETRY_S = (1.0, 2.0, 5.0, 15.0, 30.0)  # between failed polls, growing
REFUSED_RETRY_S = 60.0  # a wrong token, or another program polling the same bot (409)
MAX_IGNORED = 100  # other chats (and users) are logged once each; past this many, no longer remembered
HELP = ("commands: /status, /profit, /positions, /pause, /resume, /flatten SYMBOL (then /confirm CODE within "
        f"{CONFIRM_S:.0f} s)")


@dataclass(frozen=True)
class PendingFlatten:
    code: str
    symbol: str
    deadline: float  # monotonic


class ChatCommands:
    def __init__(self, bot: TelegramBot, chats: tuple[int, ...], controls: Controls, report: StatusReport,
                 answer: Callable[[Event], None], poll_s: float = POLL_S, users: tuple[int, ...] = ()) -> None:
        self.bot = bot
        self.chats = frozenset(chats)
        self.users = frozenset(users)  # empty: every member of the chats
        self.controls = controls
        self.report = report
        self.answer = answer  # into the Telegram outbox: a reply never waits for the network either
        self.poll_s = poll_s
        self._offset: int | None = None
        self._pending: dict[tuple[int, int | None], PendingFlatten] = {}  # by chat and the user who asked
        self._ignored: set[tuple[str, int]] = set()

    async def run(self) -> None:
        """Poll until cancelled (at shutdown)."""
        failures = 0
        skipped_backlog = False
        while True:
            try:
                if not skipped_backlog:
                    await self._skip_backlog()
                    skipped_backlog = True
                updates = await self.bot.get_updates(self._offset, self.poll_s)
            except (SendError, Refused) as exc:
                wait = REFUSED_RETRY_S if isinstance(exc, Refused) else RETRY_S[min(failures, len(RETRY_S) - 1)]
                if not failures:
                    log.warning("telegram: cannot read commands (%s): trying again in %.0f s", exc, wait)
                failures += 1
                await asyncio.sleep(wait)
                continue
            if failures:
                log.info("telegram: reading commands again")
                failures = 0
            for update in updates:
                update_id = update.get("update_id")
                if isinstance(update_id, int):
                    self._offset = max(self._offset or 0, update_id + 1)
                await self.handle(update)

    async def _skip_backlog(self) -> None:
        """offset=-1 answers the newest update at once: everything up to it is confirmed as read."""
        newest = await self.bot.get_updates(-1, 0)
        ids = [u["update_id"] for u in newest if isinstance(u.get("update_id"), int)]
        if ids:
            self._offset = max(ids) + 1
            log.info("telegram: skipped the messages sent while the bot was not running")

    async def handle(self, update: dict[str, Any]) -> None:
        message = update.get("message")
        if not isinstance(message, dict):
            return
        chat = message.get("chat")
        chat_id = chat.get("id") if isinstance(chat, dict) else None
        text = message.get("text")
        if not isinstance(chat_id, int):
            return
        if chat_id not in self.chats:
            self._ignore(("chat", chat_id), "telegram: ignoring messages from chat %d (not in TELEGRAM_CHAT_ID)", chat_id)
            return
        if not isinstance(text, str) or not text.startswith("/"):
            return
        sender = message.get("from")
        user_id = sender.get("id") if isinstance(sender, dict) and isinstance(sender.get("id"), int) else None
        if self.users and user_id not in self.users:
            if user_id is not None:
                self._ignore(("user", user_id), "telegram: ignoring commands from user %d in chat %d (not in "
                             "TELEGRAM_ALLOWED_USERS)", user_id, chat_id)
            return
        words = text.split()
        command = words[0].split("@", 1)[0].lower()  # /status@MyBot in a group
        log.info("telegram: %s asked by user %s in chat %d", command[:20], user_id, chat_id)
        try:
            reply = await self.run_command(chat_id, command, words[1:], user_id)
        except Exception as exc:  # answered and logged, never the end of the poller
            log.exception("telegram: %s failed", command[:20])
            reply = f"failed: {type(exc).__name__}: {str(exc)[:200]}"
        self.answer(events.reply(chat_id, reply))

    def _ignore(self, who: tuple[str, int], message: str, *args: object) -> None:
        """Log a chat or a user once, not at every message (a busy group would flood the log)."""
        if who not in self._ignored and len(self._ignored) < MAX_IGNORED:
            self._ignored.add(who)
            log.warning(message, *args)

    async def run_command(self, chat_id: int, command: str, args: list[str], user_id: int | None = None) -> str:
        if command in ("/status", "/profit", "/positions"):
            async with self.controls.trading:  # between heartbeats, as the status page: never half a tick's books
                return {"/status": self.report.status_line, "/profit": self._profit,
                        "/positions": self._positions}[command]()
        if command == "/pause":
            return await self.controls.pause()
        if command == "/resume":
            return await self.controls.resume()
        if command == "/flatten":
            return self._ask_flatten((chat_id, user_id), args)
        if command == "/confirm":
            return await self._confirm((chat_id, user_id), args)
        if command in ("/help", "/start"):
            return HELP
        return f"unknown command {command[:30]}; {HELP}"

    def _profit(self) -> str:
        wallet = self.report.broker.wallet
        rate = f" ({100 * wallet.wins / wallet.trades:.0f}% won)" if wallet.trades else ""
        return (f"realised pnl {wallet.realised_pnl:+.2f} USDT over {wallet.trades} trade(s){rate}; "
                f"equity {self.report.equity():.2f}, balance {wallet.balance:.2f} (from {wallet.initial_balance:.2f}); "
                f"fees {wallet.fees_paid:.2f}, funding {wallet.funding:+.2f}")

    def _positions(self) -> str:
        positions = self.report.broker.open_positions()
        if not positions:
            return "no open positions"
        lines = []
        for p in positions:
            mark = self.report.mark(p)
            lines.append(f"{SIDE_NAMES[p.side]} {p.symbol} {p.timeframe} qty={p.qty:.6g} @ {format_price(p.entry_price)} "
                         f"mark {format_price(mark)} upnl {p.unrealised(mark):+.2f} stop {format_price(p.stop)} "
                         f"target {format_price(p.target)}")
        return f"{len(positions)} open position(s):\n" + "\n".join(lines)

    def _ask_flatten(self, asker: tuple[int, int | None], args: list[str]) -> str:
        if len(args) != 1:
            return "usage: /flatten SYMBOL, e.g. /flatten BTC/USDT:USDT (or BTC, or BTCUSDT)"
        symbol, problem = self._symbol(args[0])
        if symbol is None:
            return problem
        held = self.report.broker.held({symbol})
        if not held:
            return f"nothing to flatten: no open position on {symbol}"
        code = f"{1000 + secrets.randbelow(9000)}"
        self._pending[asker] = PendingFlatten(code, symbol, time.monotonic() + CONFIRM_S)
        timeframes = ", ".join(book.timeframe for book in held)
        return (f"flatten {symbol} ({len(held)} position(s): {timeframes}) at market? reply /confirm {code} "
                f"within {CONFIRM_S:.0f} s")

    async def _confirm(self, asker: tuple[int, int | None], args: list[str]) -> str:
        pending = self._pending.pop(asker, None)
        if pending is None or time.monotonic() > pending.deadline:
            return "nothing to confirm (or it expired): ask again with /flatten SYMBOL"
        if args != [pending.code]:
            return "wrong code: nothing done; ask again with /flatten SYMBOL"
        return await self.controls.flatten({pending.symbol})

    def _symbol(self, raw: str) -> tuple[str | None, str]:
        """The traded symbol a user means: exact (BTC/USDT:USDT), the base (BTC) or base+quote (BTCUSDT)."""
        wanted = raw.strip().upper()
        known = sorted({key[0] for key in self.report.mdm.series} | {p.symbol for p in self.report.broker.open_positions()})
        if wanted in known:
            return wanted, ""
        matches = [s for s in known if wanted in (s.split("/")[0], s.split(":")[0].replace("/", ""))]
        if len(matches) == 1:
            return matches[0], ""
        if matches:
            return None, f"{raw[:30]} could be {', '.join(matches)}: name one of them exactly"
        shown = ", ".join(known[:20]) + (", …" if len(known) > 20 else "")
        return None, f"unknown symbol {raw[:30]}; traded: {shown}"
