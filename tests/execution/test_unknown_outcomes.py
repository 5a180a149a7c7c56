"""Binance's server-side errors (-1000, -1001, -1006, -1007, -1008: HTTP 5xx, "execution status
unknown") are neither a refusal nor a lost connection to the trading code: the order is looked up
by its client id, resent under the same id if it never executed, and the books reconciled at the
next heartbeat when even that cannot say. Startup retries them, and exits with one line if they last."""

from __future__ import annotations

import asyncio
import logging
import sys

import pytest

from conftest import subprocess_env
from fakes.live_bot import LIVE_KEY, LIVE_SECRET, SYMBOL, SYMBOL_ID, live_settings, open_a_position
from trading_bot.engine.daemon import Daemon, StartupError
from trading_bot.exchange.retry import RetryPolicy

ENTRY = ("POST", "/fapi/v1/order")
ALGO = ("POST", "/fapi/v1/algoOrder")


def entry_orders(fake) -> list[dict]:
    return [o for o in fake.orders.values() if not o.get("reduceOnly") and o.get("origType", o.get("type")) == "MARKET"]


def open_algo_types(fake) -> list[str]:
    return sorted(o["orderType"] for o in fake.algo_orders.values()
                  if o["algoStatus"] == "NEW" and o["symbol"] == SYMBOL_ID)


def posts(fake, path: str) -> list:
    return sorted((r for r in fake.requests if r.method == "POST" and r.path == path), key=lambda r: r.time)


@pytest.mark.parametrize("fault", ["-1006_executed", "-1000_executed", "-1001_executed", "-1008_executed"])
async def test_an_executed_entry_answered_with_a_server_error_gets_its_stop_and_target(tmp_path, market, fault):
    clock, fake = market
    fake.inject(fault, ENTRY[1], method=ENTRY[0])
    bot, _ = await open_a_position(tmp_path, clock, fake)
    try:
        for _ in range(3):  # within three heartbeats, whatever path resolves it
            if bot.parts.broker.open_positions():
                break
            clock.advance(5_000)
            await bot.tick()
        [position] = bot.parts.broker.open_positions()
        assert len(entry_orders(fake)) == 1 and fake.duplicate_client_ids == []
        assert fake.positions[SYMBOL_ID]["amount"] == pytest.approx(position.side * position.qty)
        assert open_algo_types(fake) == ["STOP_MARKET", "TAKE_PROFIT_MARKET"]
        assert {"stop", "target"} <= position.orders.keys() and bot.parts.broker.intents == {}
    finally:
        await bot.shutdown()


async def test_an_unexecuted_entry_answered_1001_frees_its_symbol_at_the_next_heartbeat(tmp_path, market, caplog):
    """Every send and resend answered -1001: the outcome stays unknown, the intent is kept, and the
    reconciliation the heartbeat asks for finds no order: the next signal trades."""
    caplog.set_level(logging.INFO)
    clock, fake = market
    fake.inject("-1001", ENTRY[1], method=ENTRY[0], times=3)
    bot, _ = await open_a_position(tmp_path, clock, fake)
    try:
        assert bot.parts.broker.open_positions() == [] and entry_orders(fake) == []
        assert "outcome unknown" in caplog.text
        clock.advance(5_000)
        await bot.tick()
        assert bot.parts.broker.intents == {}, "reconciliation resolved the intent"
        clock.advance(55_000)
        await bot.tick()  # the next candle's signal is not blocked
        [position] = bot.parts.broker.open_positions()
        assert len(entry_orders(fake)) == 1 and fake.duplicate_client_ids == []
        assert {"stop", "target"} <= position.orders.keys()
    finally:
        await bot.shutdown()


def fail_next_algo_after(fake, order_type: str, fault: str, times: int = 1) -> None:
    """Once the exchange has executed the `order_type` algo order, the next `times` algo orders get `fault`."""
    def hook(method: str, path: str, params: dict[str, str]) -> None:
        if (method, path) == ALGO and params.get("type") == order_type:
            fake.inject(fault, ALGO[1], method=ALGO[0], times=times)
            fake.on_executed = None

    fake.on_executed = hook


@pytest.mark.parametrize("fault", ["-1001", "-1006_executed"])
async def test_a_take_profit_answered_with_a_server_error_is_placed_under_the_same_id(tmp_path, market, fault):
    clock, fake = market
    fail_next_algo_after(fake, "STOP_MARKET", fault)
    bot, _ = await open_a_position(tmp_path, clock, fake)
    try:
        [position] = bot.parts.broker.open_positions()
        assert open_algo_types(fake) == ["STOP_MARKET", "TAKE_PROFIT_MARKET"]
        assert {"stop", "target"} <= position.orders.keys()
        targets = [r for r in posts(fake, ALGO[1]) if r.params.get("type") == "TAKE_PROFIT_MARKET"]
        assert targets[0].status >= 500
        assert {r.params["clientAlgoId"] for r in targets} == {position.orders["target_client"]}
        assert fake.duplicate_client_ids == []
    finally:
        await bot.shutdown()


async def test_a_take_profit_whose_outcome_stays_unknown_is_placed_by_the_next_reconciliation(tmp_path, market):
    """Every send and resend of the target answered -1001: its intent is kept and the reconciliation
    it asks for looks it up (nothing there) and places it, the same heartbeat."""
    clock, fake = market
    fail_next_algo_after(fake, "STOP_MARKET", "-1001", times=3)
    bot, _ = await open_a_position(tmp_path, clock, fake)
    try:
        [position] = bot.parts.broker.open_positions()
        assert open_algo_types(fake) == ["STOP_MARKET", "TAKE_PROFIT_MARKET"]
        assert {"stop", "target"} <= position.orders.keys() and bot.parts.broker.intents == {}
        assert fake.duplicate_client_ids == []
    finally:
        await bot.shutdown()


@pytest.mark.parametrize("fault", ["-1001", "-1000", "-1008", "-1006_executed"])
async def test_a_stop_answered_with_a_server_error_is_placed_not_closed_at_market(tmp_path, market, fault, caplog):
    clock, fake = market
    fake.inject(fault, ALGO[1], method=ALGO[0])
    bot, _ = await open_a_position(tmp_path, clock, fake)
    try:
        assert "COULD NOT PLACE THE STOP" not in caplog.text
        [position] = bot.parts.broker.open_positions()
        assert fake.positions[SYMBOL_ID]["amount"] == pytest.approx(position.side * position.qty)
        assert open_algo_types(fake) == ["STOP_MARKET", "TAKE_PROFIT_MARKET"]
        stops = [r for r in posts(fake, ALGO[1]) if r.params.get("type") == "STOP_MARKET"]
        assert {r.params["clientAlgoId"] for r in stops} == {position.orders["stop_client"]}
        assert fake.duplicate_client_ids == []
    finally:
        await bot.shutdown()


STARTUP_REQUESTS = [("POST", "/fapi/v1/leverage"), ("POST", "/fapi/v1/marginType"), ("GET", "/fapi/v3/account"),
                    ("GET", "/fapi/v3/positionRisk"), ("GET", "/fapi/v1/openAlgoOrders"),
                    ("GET", "/fapi/v1/exchangeInfo")]


@pytest.mark.parametrize(("method", "path"), STARTUP_REQUESTS)
async def test_a_server_error_on_a_startup_request_is_retried(tmp_path, market, method, path):
    clock, fake = market
    fake.inject("-1001", path, method=method)
    bot = Daemon(live_settings(tmp_path, fake), clock=clock, install_signals=False)
    try:
        await bot.start()
        statuses = [r.status for r in fake.requests if (r.method, r.path) == (method, path)]
        assert statuses[0] == 500 and statuses[-1] == 200
    finally:
        await bot.shutdown()


async def test_a_lasting_server_error_at_startup_is_one_line(tmp_path, market):
    clock, fake = market
    fake.inject("-1001", "/fapi/v3/account", times=1000)
    bot = Daemon(live_settings(tmp_path, fake), clock=clock, install_signals=False)
    try:
        bot.exchange.get().retry = RetryPolicy(attempts=2, base_delay=0.01, max_delay=0.02)
        with pytest.raises(StartupError) as raised:
            await bot.start()
        assert "\n" not in str(raised.value) and "-1001" in str(raised.value)
    finally:
        await bot.shutdown()


@pytest.mark.slow
async def test_the_cli_exits_2_with_one_line_when_startup_requests_keep_failing(tmp_path, market):
    _, fake = market
    fake.inject("-1001", "/fapi/v3/account", times=1000)
    live_settings(tmp_path, fake)  # writes the strategy config
    env = subprocess_env(tmp_path, DRY_RUN="false", LIVE_TRADING_CONFIRMED="yes", API_KEY=LIVE_KEY,
                         API_SECRET=LIVE_SECRET, EXCHANGE_URL=fake.url, TRADING_SYMBOLS=SYMBOL, TRADING_TIMEFRAMES="1m")
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "trading_bot", "run", cwd=tmp_path, env=env,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    _, stderr = await asyncio.wait_for(proc.communicate(), 120)
    text = stderr.decode()
    assert proc.returncode == 2, text
    assert "Traceback" not in text
    [line] = [ln for ln in text.splitlines() if ln.startswith("trading-bot: error:")]
    assert "-1001" in line
