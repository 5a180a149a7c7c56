"""Shared test helpers. Nothing here touches the network or ../shared."""

from __future__ import annotations

import asyncio
import os
import socket
from pathlib import Path

import numpy as np
import pytest

from trading_bot.domain.timeframes import last_closed_open_ms, timeframe_ms
from trading_bot.marketdata.candle_csv import append_candles, cache_file_name
from trading_bot.marketdata.synthetic import synthetic_candles
from trading_bot.settings import Settings

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def make_settings(tmp_path: Path, **changes: object) -> Settings:
    base = Settings(
        data_dir=tmp_path / "data",
        strategy_config=tmp_path / "config" / "strategy_config.json",
        market_data="synthetic",
        heartbeat_seconds=0.05,
    )
    return base.with_overrides(**changes)


def free_port() -> int:
    """A TCP port on 127.0.0.1 nothing listens on now (METRICS_PORT for a daemon under test)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_synthetic_cache(directory: Path, symbol: str, timeframe: str, count: int, seed: int = 7,
                          end_ms: int | None = None) -> np.ndarray:
    """A cached series of `count` closed candles ending at end_ms (default: now)."""
    tf_ms = timeframe_ms(timeframe)
    import time

    last_open = last_closed_open_ms(end_ms if end_ms is not None else int(time.time() * 1000), tf_ms)
    candles = synthetic_candles(symbol, tf_ms, last_open - (count - 1) * tf_ms, count, None, seed)
    append_candles(directory / cache_file_name(symbol, timeframe), candles)
    return candles


def cli_settings_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, symbols: tuple[str, ...], timeframes: str,
                     **extra: str) -> None:
    """The environment of an in-process CLI run on tmp_path's data, symbols and timeframes."""
    monkeypatch.setenv("DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("STRATEGY_CONFIG", str(tmp_path / "config" / "strategy_config.json"))
    monkeypatch.setenv("TRADING_SYMBOLS", ",".join(symbols))
    monkeypatch.setenv("TRADING_TIMEFRAMES", timeframes)
    for key, value in extra.items():
        monkeypatch.setenv(key, value)


def subprocess_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """An environment for running the CLI in a subprocess: no inherited trading settings."""
    env = {k: v for k, v in os.environ.items() if k not in _TRADING_KEYS}
    env.update({
        "DATA_DIR": str(tmp_path / "data"),
        "STRATEGY_CONFIG": str(tmp_path / "config" / "strategy_config.json"),
        "MARKET_DATA": "synthetic",
        "PYTHONUNBUFFERED": "1",
    })
    env.update(extra)
    return env


def _trading_keys() -> set[str]:
    from trading_bot.settings import FIELDS

    return set(FIELDS) | {"NOTIFY_SOCKET", "WATCHDOG_USEC", "JOURNAL_STREAM"}


_TRADING_KEYS = _trading_keys()


@pytest.fixture(autouse=True)
def _no_trading_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in _TRADING_KEYS:
        monkeypatch.delenv(key, raising=False)


@pytest.fixture(autouse=True)
def _fail_on_swallowed_task_errors():
    """A background task that died with an exception nobody awaited fails the test (asyncio would
    only log it)."""
    errors: list[dict] = []

    def handler(loop: asyncio.AbstractEventLoop, context: dict) -> None:
        errors.append(context)

    policy = asyncio.get_event_loop_policy()
    original_new_loop = policy.new_event_loop

    def new_loop() -> asyncio.AbstractEventLoop:
        loop = original_new_loop()
        loop.set_exception_handler(handler)
        return loop

    policy.new_event_loop = new_loop  # type: ignore[method-assign]
    try:
        yield
    finally:
        policy.new_event_loop = original_new_loop  # type: ignore[method-assign]
    assert not errors, f"unhandled errors in the event loop: {errors}"


@pytest.fixture
def market_start_ms() -> int:
    """When the `market` fixture's clock starts; a module overrides this fixture for another time."""
    from fakes.live_bot import START_MS

    return START_MS + 150


@pytest.fixture
async def market(market_start_ms):
    """The tests' one fake exchange: a loopback FakeBinance (with the live bot's API key) and the
    SharedClock it shares with the daemon under test. Time moves only when the test moves it."""
    from fakes.clocks import SharedClock
    from fakes.fake_binance import FakeBinance
    from fakes.live_bot import LIVE_KEY, LIVE_SECRET

    clock = SharedClock(market_start_ms)
    fake = await FakeBinance(now_ms=clock, api_key=LIVE_KEY, api_secret=LIVE_SECRET).start()
    try:
        yield clock, fake
    finally:
        await fake.stop()


@pytest.fixture
async def pool(market):
    """A pooled client on the `market` fixture's fake, with quick retries."""
    from trading_bot.exchange.client import ExchangeClient
    from trading_bot.exchange.retry import RetryPolicy

    _, fake = market
    exchange = ExchangeClient("binanceusdm", fake.url, retry=RetryPolicy(attempts=2, base_delay=0.01, max_delay=0.02))
    yield exchange
    await exchange.close()


@pytest.fixture
def fake(market):
    """The `market` fixture's exchange, for tests that never move its clock."""
    return market[1]
