"""Live-mode helpers shared by the live tests: a clock the bot and the fake exchange share, the
settings of a live bot pointed at the fake, and a bot that has just opened a position."""

from __future__ import annotations

from conftest import make_settings
from fakes.fake_binance import FakeBinance
from trading_bot.engine.clock import ReplayClock
from trading_bot.engine.daemon import Daemon
from trading_bot.persistence.strategy_config_file import write_config
from trading_bot.settings import Secret

START_MS = 1_767_225_600_000 + 10 * 60_000  # a round minute
SYMBOL, SYMBOL_ID = "BTC/USDT:USDT", "BTCUSDT"


class SharedClock(ReplayClock):
    """The bot's and the fake exchange's common time; wall-clock semantics (heartbeats)."""

    simulated = False

    def advance(self, ms: int) -> None:
        self._now += ms


async def start_market() -> tuple[SharedClock, FakeBinance]:
    clock = SharedClock(START_MS + 150)
    fake = await FakeBinance(now_ms=clock.now_ms, api_key="k-live", api_secret="s-live").start()
    return clock, fake


def live_settings(tmp_path, fake, **changes):
    settings = make_settings(tmp_path, dry_run=False, live_confirmed=True, symbols=(SYMBOL,), timeframes=("1m",),
                             exchange_url=fake.url, api_key=Secret("k-live"), api_secret=Secret("s-live"),
                             max_open_positions=5, exchange_timeout_ms=2000, exchange_recv_window_ms=1000, **changes)
    # A hair-trigger threshold: the first new candle signals, whichever way.
    write_config(settings.strategy_config, {"version": 1, "defaults": {"threshold": 0.0001, "sl_pct": 0.01, "rr_ratio": 2}})
    return settings


async def open_a_position(tmp_path, clock, fake, **changes):
    settings = live_settings(tmp_path, fake, **changes)
    daemon = Daemon(settings, clock=clock, install_signals=False)
    await daemon.start()
    clock.advance(60_000)  # the next 1m candle closes …
    await daemon.tick()  # … and the bot enters right away
    return daemon, settings
