"""The live-only notifications, from a live daemon against the fake exchange: a position the exchange
will not protect (every target order answered -1001) is told once, with what it lacks, and so is the
reconciliation problem that halts entries."""

from __future__ import annotations

from fakes.fake_telegram import FakeWebhook
from fakes.live_bot import live_settings
from fakes.waiting import until
from trading_bot.engine.daemon import Daemon
from trading_bot.settings import Secret

ALGO = ("POST", "/fapi/v1/algoOrder")


async def test_a_position_left_without_its_target_and_the_halt_are_told_once(tmp_path, market, monkeypatch):
    from trading_bot.engine.notifications import notifier
    from trading_bot.engine.notifications.outbox import Pace

    monkeypatch.setattr(notifier, "WEBHOOK_PACE", Pace(burst=1000, per_second=1000.0, attempts=3, backoff_s=0.01))
    clock, fake = market
    hook = await FakeWebhook().start()

    def after_the_stop(method: str, path: str, params: dict[str, str]) -> None:
        if (method, path) == ALGO and params.get("type") == "STOP_MARKET":
            fake.inject("-1001", ALGO[1], method=ALGO[0], times=1000)  # the target, and every try at it
            fake.on_executed = None

    fake.on_executed = after_the_stop
    daemon = Daemon(live_settings(tmp_path, fake, webhook_url=Secret(hook.url)), clock=clock, install_signals=False)
    try:
        await daemon.start()
        await daemon.start_notifications()
        clock.advance(60_000)
        await daemon.tick()  # enters, places the stop; the target keeps failing
        [position] = daemon.parts.broker.open_positions()
        assert position.missing_protection() == ("target",)
        await daemon.tick()  # still without: not told again
        await until(lambda: any(m["event"] == "unprotected_position" for m in hook.received))
    finally:
        await daemon.shutdown()
        await hook.close()
    told = [m for m in hook.received if m["event"] == "unprotected_position"]
    assert len(told) == 1, told
    assert told[0]["text"].startswith(f"unprotected position: {'long' if position.side > 0 else 'short'} BTC/USDT:USDT 1m")
    assert told[0]["text"].endswith(" has no target order on the exchange") and told[0]["fields"]["missing"] == ["target"]
    # the reconciliation the failures asked for could not place it either: it halted entries, and said so
    assert [m["event"] for m in hook.received] == ["started", "trade_opened", "trading_state", "reconciliation_problem",
                                                   "unprotected_position", "stopped"]
    [problem] = [m for m in hook.received if m["event"] == "reconciliation_problem"]
    assert problem["text"].startswith("reconciliation problem, new entries halted: ") and "target" in problem["text"]
