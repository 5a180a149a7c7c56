"""Notifications: the events of a running daemon, to Telegram and the webhook, and the chat commands.

The daemon's parts call in synchronously (recording.TradeSink, status.NotificationSink): each call
builds an event and puts it into the outboxes, which never await. Sending, retrying and polling
happen in tasks of their own, started after ready and stopped at shutdown.
"""

from __future__ import annotations

import asyncio
import logging

import aiohttp

from trading_bot.domain.protections import TradingState
from trading_bot.domain.trades import ClosedTrade, Position
from trading_bot.engine.control import Controls
from trading_bot.engine.notifications import events
from trading_bot.engine.notifications.commands import ChatCommands
from trading_bot.engine.notifications.events import Event
from trading_bot.engine.notifications.outbox import Counters, Outbox, Pace
from trading_bot.engine.notifications.telegram import TelegramBot
from trading_bot.engine.notifications.watch import DailySummary, Watch
from trading_bot.engine.notifications.webhook import Webhook
from trading_bot.engine.status import StatusReport
from trading_bot.settings import Settings

log = logging.getLogger("trading_bot")

FLUSH_S = 1.5  # at exit, the stopped message (and what is queued) gets this long, never more
TELEGRAM_PACE = Pace(burst=3, per_second=1.0)  # the Bot API allows about one message a second per chat
WEBHOOK_PACE = Pace(burst=5, per_second=2.0)  # Discord: 5 per 2 s per webhook; Slack: about 1 a second


class Notifications:
    def __init__(self, settings: Settings, report: StatusReport, controls: Controls) -> None:
        self.report = report
        self.chats = settings.telegram_chat_ids
        self._session = aiohttp.ClientSession()
        self.telegram: Outbox | None = None
        self.webhook: Outbox | None = None
        self._commands: ChatCommands | None = None
        self._poller: asyncio.Task[None] | None = None
        if settings.telegram_bot_token:
            bot = TelegramBot(self._session, settings.telegram_api_url, settings.telegram_bot_token.reveal())
            self.telegram = Outbox("telegram", bot.send, pace=TELEGRAM_PACE)
            self._commands = ChatCommands(bot, self.chats, controls, report, self.telegram.put,
                                          users=settings.telegram_allowed_users)
        if settings.webhook_url:
            hook = Webhook(self._session, settings.webhook_url.reveal(), as_text=settings.webhook_format == "text")
            self.webhook = Outbox("webhook", hook.send, pace=WEBHOOK_PACE)
        broker = report.broker
        self._watch = Watch(broker.halted)
        hour = settings.notify_daily_hour_utc
        self._daily = DailySummary(hour, report.clock.now_ms(), broker.wallet) if hour is not None else None

    @property
    def counters(self) -> dict[str, Counters]:
        """Each destination's counters (sent, dropped, failed, …), by name: telegram, webhook."""
        return {box.name: box.counters for box in (self.telegram, self.webhook) if box is not None}

    def start(self) -> None:
        """After ready: the senders, the command poller, and the started message."""
        for box in (self.telegram, self.webhook):
            if box is not None:
                box.start()
        if self._commands is not None:
            self._poller = asyncio.get_running_loop().create_task(self._commands.run(), name="telegram-commands")
        report = self.report
        self.emit(events.started(report.broker.mode, report.bots, report.equity(), report.broker.trading_state()))
        log.info("notifications: %s", ", ".join(
            ([f"telegram to {len(self.chats)} chat(s), commands on"] if self.telegram else [])
            + (["webhook"] if self.webhook else [])))

    def emit(self, event: Event) -> None:
        """Never awaits: the heartbeat calls it."""
        if self.telegram is not None:
            if event.chat_id is not None:
                self.telegram.put(event)
            else:
                for chat in self.chats:
                    self.telegram.put(Event(event.kind, event.text, event.fields, chat))
        if self.webhook is not None and event.chat_id is None:  # a chat's reply is that chat's only
            self.webhook.put(event)

    # --- recording.TradeSink ------------------------------------------------------------------

    def opened(self, position: Position) -> None:
        self.emit(events.opened(position))

    def closed(self, trade: ClosedTrade, balance: float) -> None:
        self.emit(events.closed(trade, balance))

    # --- status.NotificationSink --------------------------------------------------------------

    def state_changed(self, old: TradingState, new: TradingState) -> None:
        self.emit(events.state_changed(old, new))

    def after_tick(self, report: StatusReport) -> None:
        broker = report.broker
        problem = self._watch.reconcile_problem(broker.halted)
        if problem is not None:
            self.emit(problem)
        if broker.mode == "live":  # paper: the rules are every position's stop and target
            for event in self._watch.unprotected(broker.open_positions()):
                self.emit(event)
        now = report.clock.now_ms()
        if self._daily is not None and self._daily.due(now):  # equity (every series' mark) only then
            summary = self._daily.check(now, broker.wallet, report.equity(), len(broker.open_positions()))
            if summary is not None:
                self.emit(summary)

    # --- shutdown -----------------------------------------------------------------------------

    async def stop_commands(self) -> None:
        """First thing at shutdown: no command starts while the books are saved."""
        if self._poller is not None:
            self._poller.cancel()
            await asyncio.gather(self._poller, return_exceptions=True)
            self._poller = None

    async def close(self, heartbeats: int, flush_s: float = FLUSH_S) -> None:
        """The stopped message, then at most flush_s for what is queued; then everything closed."""
        await self.stop_commands()
        broker = self.report.broker
        self.emit(events.stopped(broker.mode, heartbeats, len(broker.open_positions()), broker.wallet.balance))
        boxes = [box for box in (self.telegram, self.webhook) if box is not None]
        await asyncio.gather(*(box.close(flush_s) for box in boxes))  # side by side: flush_s in all
        await self._session.close()
        for box in boxes:
            c = box.counters
            log.info("notifications: %s: %d sent, %d dropped, %d failed", box.name, c.sent, c.dropped, c.failed)
