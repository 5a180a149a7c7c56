"""Notifications (engine/notifications/): the events of a paper daemon at a local fake of Telegram's
Bot API and at a fake webhook; the outbox's rate limit, retries, give-ups and drops; a dead endpoint
never delaying a tick; the token and the webhook URL never in a log line or an error."""

from __future__ import annotations

import asyncio
import itertools
import logging
import time

import pytest

from conftest import free_port, make_settings
from fakes.clocks import JAN_1_2026_MS, SharedClock
from fakes.fake_telegram import TOKEN, DeadServer, FakeTelegram, FakeWebhook
from fakes.waiting import until
from trading_bot.domain.trades import LONG, Position
from trading_bot.domain.wallet import Wallet
from trading_bot.engine.daemon import Daemon
from trading_bot.engine.notifications import notifier
from trading_bot.engine.notifications.events import Event
from trading_bot.engine.notifications.outbox import Outbox, Pace, SendError
from trading_bot.engine.notifications.telegram import TelegramBot
from trading_bot.engine.notifications.watch import DailySummary, Watch
from trading_bot.engine.notifications.webhook import Webhook
from trading_bot.marketdata.sources import SyntheticSource
from trading_bot.persistence.strategy_config_file import write_config
from trading_bot.settings import SettingsError, settings_from_mapping

CHAT = 4242
FAST = Pace(burst=1000, per_second=1000.0, attempts=3, backoff_s=0.01)


@pytest.fixture
def fast_pace(monkeypatch):
    """The daemon's outboxes without the real one-a-second pace (the pace itself is tested below)."""
    monkeypatch.setattr(notifier, "TELEGRAM_PACE", FAST)
    monkeypatch.setattr(notifier, "WEBHOOK_PACE", FAST)


refused_port = free_port  # bound and closed again: nothing listens there, connecting is refused


def notifying_daemon(tmp_path, **changes) -> Daemon:
    settings = make_settings(tmp_path, symbols=("BTC/USDT:USDT", "ETH/USDT:USDT"), timeframes=("1m",),
                             notify_daily_hour_utc=None, **changes)
    write_config(settings.strategy_config, {"version": 1, "defaults": {"sl_pct": 0.004, "rr_ratio": 1.5}})  # trades soon
    return Daemon(settings, clock=SharedClock(JAN_1_2026_MS, wake_every_ms=60_000),
                  source=SyntheticSource(settings.synthetic_seed), install_signals=False)


async def test_a_paper_daemons_events_reach_telegram_and_the_webhook(tmp_path, fast_pace, caplog):
    caplog.set_level(logging.DEBUG)
    telegram, hook = await FakeTelegram().start(), await FakeWebhook().start()
    from trading_bot.settings import Secret

    daemon = notifying_daemon(tmp_path, telegram_bot_token=Secret(TOKEN), telegram_chat_ids=(CHAT, 77),
                              telegram_api_url=telegram.url, webhook_url=Secret(hook.url))
    try:
        await daemon.start()
        await daemon.start_notifications()
        broker = daemon.parts.broker
        for _ in range(200):
            await daemon.tick()
            daemon.parts.clock.advance(60_000)
            if broker.wallet.trades:
                break
        assert broker.wallet.trades
        await daemon.controls().pause()
        await daemon.tick()  # the state change is noticed after a heartbeat
        await until(lambda: any("trading state" in t for t in telegram.texts(CHAT)))
    finally:
        await daemon.shutdown()
        await telegram.close()
        await hook.close()
    texts = telegram.texts(CHAT)
    assert telegram.texts(77) == texts  # every allow-listed chat gets every event
    assert texts[0] == "trading-bot started: paper, 2 bots, equity 10000.00 USDT, trading active"
    opened = [t for t in texts if t.startswith("opened ")]
    closed = [t for t in texts if t.startswith("closed ")]
    assert opened and closed
    first = opened[0].split()
    assert first[1] in ("long", "short") and first[2] in ("BTC/USDT:USDT", "ETH/USDT:USDT") and first[3] == "1m"
    assert first[4] == "@" and float(first[5]) > 0
    assert " pnl=" in closed[0] and (" at stop @ " in closed[0] or " at target @ " in closed[0]), closed[0]
    assert "trading state: active → halted (paused by the operator)" in texts
    assert texts[-1].startswith("trading-bot stopped: paper, ")
    kinds = [m["event"] for m in hook.received]
    assert kinds[0] == "started" and kinds[-1] == "stopped" and "trade_opened" in kinds and "trade_closed" in kinds
    for message in hook.received:  # Slack reads text, Discord content, ntfy's JSON publishing message
        assert message["text"] == message["content"] == message["message"]
    closed_json = next(m for m in hook.received if m["event"] == "trade_closed")
    assert set(closed_json["fields"]) >= {"symbol", "timeframe", "side", "price", "pnl"}
    assert [m["text"] for m in hook.received] == texts
    assert_all_sent(caplog)
    assert TOKEN not in caplog.text and "SECRETWEBHOOKTOKEN123" not in caplog.text


def assert_all_sent(caplog) -> None:
    """The counts logged at exit, one line per destination: nothing dropped or failed."""
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("notifications: ")
             and " sent, " in r.getMessage()]
    assert len(lines) == 2 and all(line.endswith(" sent, 0 dropped, 0 failed") for line in lines), lines


async def test_dead_endpoints_never_delay_a_tick_and_the_exit_is_bounded(tmp_path, caplog):
    """Telegram accepts connections and never answers; the webhook's port refuses them."""
    from trading_bot.settings import Secret

    dead = await DeadServer().start()
    daemon = notifying_daemon(tmp_path, telegram_bot_token=Secret(TOKEN), telegram_chat_ids=(CHAT,),
                              telegram_api_url=f"http://127.0.0.1:{dead.port}",
                              webhook_url=Secret(f"http://127.0.0.1:{refused_port()}/hooks/SECRETWEBHOOKTOKEN123"))
    try:
        await daemon.start()
        broker = daemon.parts.broker
        durations: dict[str, list[float]] = {"off": [], "on": []}
        queued: list[int] = []
        for phase in ("off", "on"):
            if phase == "on":
                await daemon.start_notifications()
                await until(lambda: dead.connections >= 2)  # the started message's send and the poll hang now
                assert daemon.notifications is not None
                telegram = daemon.notifications.counters["telegram"]
                queued.append(telegram.queued)
            for _ in range(60):
                t0 = time.perf_counter()
                await daemon.tick()
                durations[phase].append(time.perf_counter() - t0)
                daemon.parts.clock.advance(60_000)
                await asyncio.sleep(0)  # the senders get the loop between ticks, as in the daemon
        assert telegram.sent == 0 and telegram.queued > queued[0]  # trades were told while the send hung
        assert broker.wallet.trades
        t0 = time.perf_counter()
    finally:
        await daemon.shutdown()
        await dead.close()
    exit_s = time.perf_counter() - t0
    assert exit_s < notifier.FLUSH_S + 1.0
    on, off = sorted(durations["on"]), sorted(durations["off"])
    # A tick with both endpoints dead costs what a tick without notifications costs: only a put_nowait.
    assert on[-1] < 0.25 and on[len(on) // 2] < off[len(off) // 2] * 3 + 0.005, (on, off)
    assert TOKEN not in caplog.text and "SECRETWEBHOOKTOKEN123" not in caplog.text
    assert "not sent at exit" in caplog.text


async def test_the_outbox_drops_when_full_counts_and_logs_once_per_burst(caplog):
    started = asyncio.Event()
    release = asyncio.Event()

    async def stuck(event: Event) -> None:
        started.set()
        await release.wait()

    box = Outbox("test", stuck, size=3, pace=FAST)
    box.start()
    box.put(Event("x", "first"))
    await started.wait()  # the sender holds the first: three more fit
    for i in range(10):
        box.put(Event("x", f"n{i}"))
    assert (box.counters.queued, box.counters.dropped) == (4, 7)
    assert caplog.text.count("is not keeping up") == 1
    release.set()
    await until(lambda: box.counters.sent == 4)
    box.put(Event("x", "again"))  # a put that fits ends the burst: the next drop is logged again
    await box.close(1.0)
    assert box.counters.sent == 5 and box.counters.failed == 0


async def test_telegram_429_and_500_are_retried_a_refusal_is_not_and_a_dead_end_is_given_up(caplog):
    caplog.set_level(logging.DEBUG)
    telegram = await FakeTelegram().start()
    import aiohttp

    session = aiohttp.ClientSession()
    bot = TelegramBot(session, telegram.url, TOKEN)
    box = Outbox("telegram", bot.send, pace=FAST)
    box.start()
    try:
        telegram.fail_next = ["429", "500"]
        t0 = time.perf_counter()
        box.put(Event("x", "hello", chat_id=CHAT))
        await until(lambda: box.counters.sent == 1)
        assert time.perf_counter() - t0 >= telegram.retry_after  # the retry_after was waited out
        assert telegram.texts(CHAT) == ["hello"] and box.counters.retries == 2
        telegram.fail_next = ["500", "500", "500"]
        box.put(Event("x", "lost", chat_id=CHAT))
        await until(lambda: box.counters.failed == 1)
        assert telegram.send_calls == 6  # three tries, no more
        telegram.fail_next = ["400"]
        box.put(Event("x", "refused", chat_id=CHAT))
        await until(lambda: box.counters.failed == 2)
        assert telegram.send_calls == 7  # a refusal is not retried
        box.put(Event("x", "fine", chat_id=CHAT))
        await until(lambda: box.counters.sent == 2)
        assert "telegram is answering again (2 message(s) given up on so far)" in caplog.text
    finally:
        await box.close(1.0)
        await session.close()
        await telegram.close()
    assert caplog.text.count("gave up on a x message") == 2
    assert TOKEN not in caplog.text


async def test_the_pace_is_a_short_burst_then_the_steady_rate():
    sent: list[float] = []

    async def record(event: Event) -> None:
        sent.append(time.monotonic())

    box = Outbox("paced", record, pace=Pace(burst=2, per_second=20.0))
    box.start()
    for i in range(5):
        box.put(Event("x", str(i)))
    await until(lambda: len(sent) == 5)
    await box.close(1.0)
    gaps = [b - a for a, b in itertools.pairwise(sent)]
    assert gaps[0] < 0.02  # the burst
    assert all(g >= 0.045 for g in gaps[1:]), gaps  # then 20 a second


async def test_no_error_text_carries_the_token_or_the_webhook_url(caplog):
    import aiohttp

    hook_url = f"http://127.0.0.1:{refused_port()}/hooks/SECRETWEBHOOKTOKEN123"
    async with aiohttp.ClientSession() as session:
        errors = []
        # aiohttp's InvalidUrlClientError is the whole URL: the token's path, the webhook's secret
        for send in (TelegramBot(session, f"http://127.0.0.1:{refused_port()}", TOKEN).send,
                     TelegramBot(session, "http://127.0.0.1:99999", TOKEN).send,
                     Webhook(session, hook_url).send, Webhook(session, "http://127.0.0.1:99999/h/SECRETWEBHOOKTOKEN123").send):
            with pytest.raises(SendError) as caught:
                await send(Event("x", "t", chat_id=CHAT))
            errors.append(caught.value)
    for exc in errors:
        assert exc.__cause__ is None and exc.__suppress_context__  # the aiohttp exception (naming the URL) is gone
        assert TOKEN not in str(exc) and "SECRETWEBHOOKTOKEN123" not in str(exc), str(exc)
    assert "ClientConnectorError" in str(errors[0])
    assert str(errors[1]) == "InvalidUrlClientError: http://127.0.0.1:99999/bot***/sendMessage"  # masked, not left out


def test_settings_check_the_values_and_never_repeat_a_secret():
    good = settings_from_mapping({"TELEGRAM_BOT_TOKEN": TOKEN, "TELEGRAM_CHAT_ID": "12, -100123",
                                  "WEBHOOK_URL": "https://discord.com/api/webhooks/1/SECRETWEBHOOKTOKEN123",
                                  "NOTIFY_DAILY_HOUR_UTC": "off", "TELEGRAM_ALLOWED_USERS": "12, 34,12"})
    assert good.telegram_chat_ids == (12, -100123) and good.notify_daily_hour_utc is None and good.notifications_on
    assert good.telegram_allowed_users == (12, 34) and settings_from_mapping({}).telegram_allowed_users == ()
    assert TOKEN not in repr(good) and "SECRETWEBHOOKTOKEN123" not in repr(good)
    assert not settings_from_mapping({}).notifications_on
    almost = TOKEN[:-3] + "!!!"
    for values, expected in (
            ({"TELEGRAM_BOT_TOKEN": almost, "TELEGRAM_CHAT_ID": "1"}, "TELEGRAM_BOT_TOKEN: expected a token like"),
            ({"TELEGRAM_BOT_TOKEN": TOKEN}, "TELEGRAM_BOT_TOKEN and TELEGRAM_CHAT_ID: set both"),
            ({"TELEGRAM_CHAT_ID": "me"}, "TELEGRAM_CHAT_ID: expected chat ids"),
            ({"TELEGRAM_ALLOWED_USERS": "@alice"}, "TELEGRAM_ALLOWED_USERS: expected user ids such as 123456789"),
            ({"TELEGRAM_ALLOWED_USERS": "-100123"}, "TELEGRAM_ALLOWED_USERS: a user id is a positive number"),
            ({"TELEGRAM_ALLOWED_USERS": "12"}, "TELEGRAM_ALLOWED_USERS: the users who may command the bot over "
                                               "Telegram need TELEGRAM_BOT_TOKEN"),
            ({"TELEGRAM_API_URL": "api.telegram.org"}, "TELEGRAM_API_URL: expected an http:// or https:// URL"),
            ({"WEBHOOK_URL": "discord.com/api/webhooks/1/SECRETWEBHOOKTOKEN123"}, "WEBHOOK_URL: expected an http"),
            ({"WEBHOOK_FORMAT": "xml"}, "WEBHOOK_FORMAT: expected one of json, text"),
            ({"NOTIFY_DAILY_HOUR_UTC": "24"}, "NOTIFY_DAILY_HOUR_UTC: expected an hour 0–23")):
        with pytest.raises(SettingsError) as caught:
            settings_from_mapping(values)
        assert str(caught.value).startswith(expected), str(caught.value)
        assert almost not in str(caught.value) and "SECRETWEBHOOKTOKEN123" not in str(caught.value)


async def test_the_webhook_as_text_posts_the_text_alone():
    import aiohttp

    hook = await FakeWebhook().start()
    try:
        async with aiohttp.ClientSession() as session:
            await Webhook(session, hook.url, as_text=True).send(Event("trade_closed", "closed long BTC"))
    finally:
        await hook.close()
    assert hook.received == ["closed long BTC"]


def test_the_daily_summary_comes_once_a_day_at_its_hour():
    hour_ms, day_ms = 3_600_000, 86_400_000
    wallet = Wallet(initial_balance=1000.0, balance=1000.0)
    daily = DailySummary(7, JAN_1_2026_MS + 8 * hour_ms, wallet)  # started at 08:00 UTC
    assert daily.check(JAN_1_2026_MS + 23 * hour_ms, wallet, 1000.0, 0) is None
    wallet.balance, wallet.trades, wallet.wins = 1012.5, 3, 2
    assert daily.check(JAN_1_2026_MS + day_ms + 6 * hour_ms, wallet, 1020.0, 1) is None  # 06:00 the next day
    summary = daily.check(JAN_1_2026_MS + day_ms + 7 * hour_ms, wallet, 1020.0, 1)
    assert summary is not None
    assert summary.text == ("daily summary since 2026-01-01 08:00 UTC: 3 trade(s) closed (2 won), pnl +12.50, "
                            "equity 1020.00 USDT, 1 open")
    assert daily.check(JAN_1_2026_MS + day_ms + 9 * hour_ms, wallet, 1020.0, 1) is None
    wallet.balance, wallet.trades = 1002.5, 4
    later = daily.check(JAN_1_2026_MS + 3 * day_ms + 8 * hour_ms, wallet, 1002.5, 0)  # a day without a tick skipped
    assert later is not None and later.text.startswith("daily summary since 2026-01-02 07:00 UTC: 1 trade(s) "
                                                       "closed (0 won), pnl -10.00")


def test_reconciliation_problems_and_unprotected_positions_are_told_once_each():
    watch = Watch(halted=None)
    assert watch.reconcile_problem(None) is None
    problem = watch.reconcile_problem("BTC/USDT:USDT: a position the books do not know")
    assert problem is not None and problem.text == ("reconciliation problem, new entries halted: BTC/USDT:USDT: "
                                                    "a position the books do not know")
    assert watch.reconcile_problem("BTC/USDT:USDT: a position the books do not know") is None  # still the same
    assert watch.reconcile_problem(None) is None
    bare = Position("BTC/USDT:USDT", "1m", LONG, 0.1, 50_000.0, 0, 0, 49_000.0, 52_000.0, 0.0, 0.02, 2.0,
                    orders={"stop": "tb-1"})
    covered = Position("ETH/USDT:USDT", "1m", LONG, 1.0, 3_000.0, 0, 0, 2_900.0, 3_200.0, 0.0, 0.02, 2.0,
                       orders={"stop": "tb-2", "target": "tb-3"})
    [told] = watch.unprotected([bare, covered])
    assert told.text == "unprotected position: long BTC/USDT:USDT 1m has no target order on the exchange"
    assert watch.unprotected([bare, covered]) == []  # told once
    assert watch.unprotected([covered]) == []
    assert len(watch.unprotected([bare])) == 1  # bare again: told again


async def test_the_metrics_count_what_became_of_the_notifications(tmp_path, fast_pace):
    """METRICS_PORT and a webhook: trading_bot_notifications_total{destination,outcome} are the outbox's counts."""
    from prometheus_client.parser import text_string_to_metric_families

    from trading_bot.settings import Secret

    hook = await FakeWebhook().start()
    daemon = notifying_daemon(tmp_path, webhook_url=Secret(hook.url), metrics_port=free_port())
    try:
        await daemon.start()
        await daemon.start_metrics()
        await daemon.start_notifications()
        await daemon.tick()
        await until(lambda: len(hook.received) >= 1)  # started
        await daemon.tick()  # the figures of a heartbeat after the send …
        assert daemon._metrics is not None and daemon.notifications is not None
        daemon._metrics.refresh(daemon.parts.report)  # what a scrape builds …
        text = daemon._metrics.exposition().decode()  # … read with no await in between
        sent = daemon.notifications.counters["webhook"].sent  # the stopped message comes later
    finally:
        await daemon.shutdown()
        await hook.close()
    got = {(s.name, tuple(sorted(s.labels.items()))): s.value
           for family in text_string_to_metric_families(text) for s in family.samples}
    assert got["trading_bot_notifications_total", (("destination", "webhook"), ("outcome", "sent"))] == sent >= 1
    assert got["trading_bot_notifications_total", (("destination", "webhook"), ("outcome", "dropped"))] == 0
    assert got["trading_bot_notification_retries_total", (("destination", "webhook"),)] == 0
    assert not any(dict(labels).get("destination") == "telegram" for _, labels in got)  # not configured
