"""Chat commands over Telegram's Bot API (a local fake) against a running paper daemon: the same
actions as the CLI controls, from the allow-listed chat only, a flatten only once confirmed; and,
without the settings, nothing of the notifications is even imported."""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest

from conftest import make_settings, subprocess_env
from fakes.clocks import JAN_1_2026_MS, SharedClock
from fakes.fake_telegram import TOKEN, FakeTelegram
from fakes.waiting import until
from trading_bot.engine.daemon import Daemon
from trading_bot.engine.notifications import notifier
from trading_bot.engine.notifications.outbox import Pace
from trading_bot.marketdata.sources import SyntheticSource
from trading_bot.persistence.state_store import StateStore, decode_state
from trading_bot.persistence.strategy_config_file import write_config
from trading_bot.settings import Secret

CHAT = 4242
STRANGER = 666
GROUP, ALICE, BOB = -1001234567890, 1111, 2222  # a group chat, and two of its members


class Chat:
    """One allow-listed user: writes a command, waits for the bot's answer (once the notifications
    queued before it are out, the next message to the chat is the answer)."""

    def __init__(self, fake: FakeTelegram, daemon: Daemon, chat_id: int = CHAT, user_id: int | None = None) -> None:
        self.fake = fake
        self.daemon = daemon
        self.chat_id = chat_id
        self.user_id = user_id

    async def ask(self, text: str) -> str:
        assert self.daemon.notifications is not None and self.daemon.notifications.telegram is not None
        counters = self.daemon.notifications.telegram.counters
        await until(lambda: counters.sent + counters.failed == counters.queued)
        before = len(self.fake.texts(self.chat_id))
        self.fake.say(self.chat_id, text, self.user_id)
        await until(lambda: len(self.fake.texts(self.chat_id)) > before)
        return self.fake.texts(self.chat_id)[before]


async def test_commands_from_the_allowed_chat_drive_the_daemons_controls(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(notifier, "TELEGRAM_PACE", Pace(burst=1000, per_second=1000.0))
    fake = await FakeTelegram().start()
    settings = make_settings(tmp_path, symbols=("BTC/USDT:USDT", "ETH/USDT:USDT"), timeframes=("1m",),
                             telegram_bot_token=Secret(TOKEN), telegram_chat_ids=(CHAT,), telegram_api_url=fake.url,
                             notify_daily_hour_utc=None)
    write_config(settings.strategy_config, {"version": 1, "defaults": {"threshold": 0.0001, "sl_pct": 0.05,
                                                                         "rr_ratio": 3}})  # opens soon, holds
    clock = SharedClock(JAN_1_2026_MS, wake_every_ms=60_000)
    daemon = Daemon(settings, clock=clock, source=SyntheticSource(settings.synthetic_seed), install_signals=False)
    fake.say(CHAT, "/pause")  # sent while the bot was down: skipped, never run
    chat = Chat(fake, daemon)
    try:
        await daemon.start()
        await daemon.start_notifications()
        broker = daemon.parts.broker
        for _ in range(400):
            if {p.symbol for p in broker.open_positions()} >= {"BTC/USDT:USDT"}:
                break
            clock.advance(60_000)
            await daemon.tick()
        assert "BTC/USDT:USDT" in {p.symbol for p in broker.open_positions()}
        await until(lambda: fake.polls >= 2)  # the backlog skipped, the long poll waiting
        assert not broker.paused

        assert (await chat.ask("/status")).startswith("paper | 2 bots | ")
        positions = await chat.ask("/positions")
        assert positions.startswith(f"{len(broker.open_positions())} open position(s):\n") and "BTC/USDT:USDT 1m" in positions
        assert (await chat.ask("/profit")).startswith("realised pnl ")

        fake.say(STRANGER, "/pause")  # another chat: ignored, logged, never answered
        assert (await chat.ask("/pause")).startswith("paused: no new entries")
        assert broker.paused and fake.texts(STRANGER) == []
        assert f"telegram: ignoring messages from chat {STRANGER} (not in TELEGRAM_CHAT_ID)" in caplog.text
        store = StateStore(settings.state_dir())
        assert decode_state(store.positions_path.read_bytes(), "positions.json").paused  # saved, as the CLI's
        assert (await chat.ask("/resume")).startswith("resumed: lifted")
        assert not broker.paused

        assert (await chat.ask("/flatten DOGE")).startswith("unknown symbol DOGE; traded: BTC/USDT:USDT, ETH/USDT:USDT")
        assert (await chat.ask("/flatten")).startswith("usage: /flatten SYMBOL")
        ask = await chat.ask("/flatten btc")
        assert ask.startswith("flatten BTC/USDT:USDT (1 position(s): 1m) at market? reply /confirm "), ask
        code = ask.split("/confirm ")[1].split()[0]
        assert "BTC/USDT:USDT" in {p.symbol for p in broker.open_positions()}  # nothing done before the confirmation
        wrong = "0000" if code != "0000" else "1111"
        assert (await chat.ask(f"/confirm {wrong}")).startswith("wrong code: nothing done")
        assert (await chat.ask(f"/confirm {code}")).startswith("nothing to confirm")  # the wrong code used it up
        assert "BTC/USDT:USDT" in {p.symbol for p in broker.open_positions()}
        code = (await chat.ask("/flatten BTCUSDT")).split("/confirm ")[1].split()[0]
        told = await chat.ask(f"/confirm {code}")  # the closed trade's notification comes first
        assert told.startswith("closed long BTC/USDT:USDT 1m at flatten @ ") or \
            told.startswith("closed short BTC/USDT:USDT 1m at flatten @ "), told
        await until(lambda: fake.texts(CHAT)[-1].startswith("flattened 1 position(s): BTC/USDT:USDT 1m pnl="))
        assert "BTC/USDT:USDT" not in {p.symbol for p in broker.open_positions()}
        assert (await chat.ask("/flatten BTC/USDT:USDT")) == "nothing to flatten: no open position on BTC/USDT:USDT"
        assert (await chat.ask("/launch")).startswith("unknown command /launch; commands: /status")
    finally:
        await daemon.shutdown()
        await fake.close()
    assert TOKEN not in caplog.text


async def test_in_a_group_only_the_allowed_users_command(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(notifier, "TELEGRAM_PACE", Pace(burst=1000, per_second=1000.0))
    fake = await FakeTelegram().start()
    settings = make_settings(tmp_path, symbols=("BTC/USDT:USDT",), timeframes=("1m",), telegram_bot_token=Secret(TOKEN),
                             telegram_chat_ids=(GROUP,), telegram_allowed_users=(ALICE,), telegram_api_url=fake.url,
                             notify_daily_hour_utc=None)
    daemon = Daemon(settings, clock=SharedClock(JAN_1_2026_MS, wake_every_ms=60_000),
                    source=SyntheticSource(settings.synthetic_seed), install_signals=False)
    alice = Chat(fake, daemon, GROUP, ALICE)
    try:
        await daemon.start()
        await daemon.start_notifications()
        await until(lambda: fake.polls >= 2)
        broker = daemon.parts.broker
        replies = len(fake.texts(GROUP))
        for _ in range(2):
            fake.say(GROUP, "/pause", BOB)  # a member, but not an allowed user: never obeyed, never answered
        assert (await alice.ask("/status")).startswith("paper | 1 bots | ")  # read after Bob's two
        assert not broker.paused and len(fake.texts(GROUP)) == replies + 1
        assert caplog.text.count(f"telegram: ignoring commands from user {BOB} in chat {GROUP} (not in "
                                 "TELEGRAM_ALLOWED_USERS)") == 1  # once, not at every message
        assert (await alice.ask("/pause")).startswith("paused: no new entries") and broker.paused
    finally:
        await daemon.shutdown()
        await fake.close()


@pytest.mark.slow
def test_without_notification_settings_the_daemon_never_imports_them(tmp_path):
    code = ("import sys; from trading_bot.cli.main import main; rc = main(['run', '--cycles', '2']); "
            "print(rc, sorted(m for m in sys.modules if m.startswith('trading_bot.engine.notifications')))")

    def run(**extra: str) -> str:
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60,
                             env=subprocess_env(tmp_path, HEARTBEAT_SECONDS="0.05", TRADING_SYMBOLS="BTC/USDT:USDT",
                                                TRADING_TIMEFRAMES="1m", **extra))
        return out.stdout.strip().splitlines()[-1]

    assert run() == "0 []"
    # and with a webhook (a refused port: the run still ends at once), they are
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert run(WEBHOOK_URL=f"http://127.0.0.1:{port}/hook").startswith("0 ['trading_bot.engine.notifications', ")


async def test_a_flatten_is_confirmed_only_by_the_user_and_chat_that_asked_and_only_in_time(tmp_path, monkeypatch):
    from trading_bot.engine.notifications import commands
    from trading_bot.engine.notifications.commands import ChatCommands

    settings = make_settings(tmp_path, symbols=("BTC/USDT:USDT",), timeframes=("1m",))
    write_config(settings.strategy_config, {"version": 1, "defaults": {"threshold": 0.0001, "sl_pct": 0.05,
                                                                         "rr_ratio": 3}})
    clock = SharedClock(JAN_1_2026_MS, wake_every_ms=60_000)
    daemon = Daemon(settings, clock=clock, source=SyntheticSource(settings.synthetic_seed), install_signals=False)
    await daemon.start()
    try:
        broker = daemon.parts.broker
        for _ in range(400):
            if broker.open_positions():
                break
            clock.advance(60_000)
            await daemon.tick()
        assert broker.open_positions()
        # the commands alone (no Bot API here): replies are what run_command returns
        chat = ChatCommands(None, (CHAT, 77), daemon.controls(), daemon.parts.report, lambda event: None)  # type: ignore[arg-type]
        code = (await chat.run_command(CHAT, "/flatten", ["BTC"])).split("/confirm ")[1].split()[0]
        assert (await chat.run_command(77, "/confirm", [code])).startswith("nothing to confirm")  # another chat's
        code = (await chat.run_command(CHAT, "/flatten", ["BTC"], ALICE)).split("/confirm ")[1].split()[0]
        assert (await chat.run_command(CHAT, "/confirm", [code], BOB)).startswith("nothing to confirm")  # another user's
        monkeypatch.setattr(commands, "CONFIRM_S", -1.0)  # asked now, expired at once
        code = (await chat.run_command(CHAT, "/flatten", ["BTC"])).split("/confirm ")[1].split()[0]
        assert (await chat.run_command(CHAT, "/confirm", [code])).startswith("nothing to confirm (or it expired)")
        assert broker.open_positions()  # still held: nothing was confirmed in time
    finally:
        await daemon.shutdown()
