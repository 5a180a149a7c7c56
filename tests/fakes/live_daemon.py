"""A live daemon in its own process against the fake exchange, both on one time-lapse clock
(CLOCK_SPEED, CLOCK_ORIGIN_MS): what the crash and shutdown tests start, kill and restart."""

from __future__ import annotations

import asyncio
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import subprocess_env
from fakes.fake_binance import FakeBinance
from trading_bot.engine.clock import fast_time_ms
from trading_bot.persistence.state_store import StateStore, decode_state, read_journal, trade_key
from trading_bot.persistence.strategy_config_file import write_config

SPEED = 30  # a 1m candle every 2 s of wall time
SYMBOLS = {"BTC/USDT:USDT": "BTCUSDT", "ETH/USDT:USDT": "ETHUSDT"}
KEY, SECRET = "k-daemon", "s-daemon"


async def start_fast_market(tmp_path: Path, speed: float = SPEED) -> tuple[FakeBinance, dict[str, str]]:
    """The fake on a time-lapse clock, the settings that put a daemon on the same clock, and a
    hair-trigger config (every new candle signals) with a 0.4 % stop and a 0.6 % target."""
    origin = int(time.time() * 1000)
    fake = await FakeBinance(now_ms=lambda: fast_time_ms(speed, origin), api_key=KEY, api_secret=SECRET).start()
    write_config(tmp_path / "config" / "strategy_config.json",
                 {"version": 1, "defaults": {"threshold": 0.0001, "sl_pct": 0.004, "rr_ratio": 1.5}})
    return fake, {"CLOCK_SPEED": str(speed), "CLOCK_ORIGIN_MS": str(origin)}


def live_store(tmp_path: Path) -> StateStore:
    """The live books of a DaemonProcess run in tmp_path (Settings.state_dir for DRY_RUN=false)."""
    return StateStore(tmp_path / "data" / "state" / "live")


class PricePath:
    """Mean-reverting noise around the synthetic price, a step every 10 ms of wall time: a 0.4 % stop
    or a 0.6 % target is reached within a second or two. Held still while `moving` is False."""

    def __init__(self, fake: FakeBinance, rng: random.Random) -> None:
        self.fake, self.rng = fake, rng
        self.moving = False
        self.offsets = dict.fromkeys(SYMBOLS.values(), 0.0)

    async def run(self) -> None:
        while True:
            if self.moving:
                for symbol_id, offset in self.offsets.items():
                    self.offsets[symbol_id] = offset = 0.95 * offset + self.rng.gauss(0.0, 0.0012)
                    self.fake.set_price(symbol_id, self.fake.synthetic_price(symbol_id) * (1 + offset))
            await asyncio.sleep(0.01)


class DaemonProcess:
    """`trading-bot run` in live mode against the fake, one process per start."""

    def __init__(self, tmp_path: Path, fake: FakeBinance, clock: dict[str, str]) -> None:
        self.tmp_path = tmp_path
        self.env = subprocess_env(
            tmp_path, DRY_RUN="false", LIVE_TRADING_CONFIRMED="yes", API_KEY=KEY, API_SECRET=SECRET,
            EXCHANGE_URL=fake.url, TRADING_SYMBOLS=",".join(SYMBOLS), TRADING_TIMEFRAMES="1m",
            HEARTBEAT_SECONDS="15", HISTORY_CANDLES="200",
            MAX_OPEN_POSITIONS="4", EXCHANGE_RECV_WINDOW_MS="60000", MARKET_DATA="auto", **clock)
        self.starts = 0
        self.proc: subprocess.Popen | None = None
        self.log_path = tmp_path / "daemon-0.log"

    def start(self) -> None:
        self.starts += 1
        self.log_path = self.tmp_path / f"daemon-{self.starts}.log"
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "trading_bot", "run"], cwd=self.tmp_path, env=self.env,
                                         stdout=log, stderr=subprocess.STDOUT)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    async def ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while "ready:" not in self.log():
            assert self.proc is not None and self.proc.poll() is None, f"the daemon exited:\n{self.log()[-3000:]}"
            assert time.monotonic() < deadline, f"not ready after {timeout}s:\n{self.log()[-3000:]}"
            await asyncio.sleep(0.05)

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)

    async def reap(self, expect: int = -signal.SIGKILL, timeout: float = 30.0) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None:
            assert time.monotonic() < deadline, f"still running {timeout}s later:\n{self.log()[-3000:]}"
            await asyncio.sleep(0.01)
        assert self.proc.returncode == expect, f"exit {self.proc.returncode}:\n{self.log()[-3000:]}"

    def kill_and_wait(self) -> None:
        """Teardown: nothing may outlive the test."""
        if self.proc is not None:
            self.kill()
            self.proc.wait(timeout=10)


async def no_intent_in_flight(store: StateStore, timeout: float = 5.0) -> None:
    """Until positions.json holds no order intent: the daemon keeps running after ready, and an entry
    it sends then (refused while the test holds the market still) is on disk for a round trip before
    it is resolved. One that stays is left to assert_state_agrees_with_the_exchange to report."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if store.positions_path.exists() and not decode_state(store.positions_path.read_bytes(), "positions.json").intents:
            return
        await asyncio.sleep(0.02)


def assert_state_agrees_with_the_exchange(fake: FakeBinance, store: StateStore) -> int:
    """What a daemon left on disk against the exchange, at a moment nothing moves: every exchange
    position is the bot's, once, with exactly its stop and target; no orders of ours on flat symbols;
    no intent unresolved; no client id used twice; the journal's PnL is the exchange's realised PnL.
    Returns how many trades the journal holds."""
    saved = decode_state(store.positions_path.read_bytes(), "positions.json")
    assert saved.intents == {}, "every intent was resolved"
    held = [book.position for book in saved.books.values() if book.position is not None]
    assert len({p.symbol for p in held}) == len(held), "one position per symbol, never two"
    ours = {SYMBOLS[p.symbol]: p for p in held}
    on_exchange = {s: pos["amount"] for s, pos in fake.positions.items() if pos["amount"]}
    assert {s: p.side * p.qty for s, p in ours.items()} == pytest.approx(on_exchange), "no position lost or invented"
    for symbol_id in SYMBOLS.values():
        protective = sorted((a["orderType"], float(a["quantity"]), a["side"], str(a["algoId"]))
                            for a in fake.algo_orders.values()
                            if a["symbol"] == symbol_id and a["algoStatus"] == "NEW" and a["clientAlgoId"].startswith("tb-"))
        position = ours.get(symbol_id)
        if position is None:
            assert protective == [], f"{symbol_id} is flat: no orders of ours left"
            continue
        close_side = "SELL" if position.side > 0 else "BUY"
        assert protective == [("STOP_MARKET", position.qty, close_side, position.orders.get("stop")),
                              ("TAKE_PROFIT_MARKET", position.qty, close_side, position.orders.get("target"))]
    assert fake.duplicate_client_ids == []
    journal = read_journal(store.trades_path)
    assert len({trade_key(t) for t in journal}) == len(journal), "no trade booked twice"
    assert sum(t["gross_pnl"] for t in journal) == pytest.approx(fake.realized_pnl(), abs=1e-6)
    return len(journal)
