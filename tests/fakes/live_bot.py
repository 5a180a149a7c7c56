"""Live-mode helpers shared by the live tests: the settings of a live bot pointed at the fake (the
`market` fixture in conftest.py), and a bot that has just opened a position."""

from __future__ import annotations

from conftest import make_settings
from fakes.clocks import JAN_1_2026_MS
from trading_bot.engine.daemon import Daemon
from trading_bot.persistence.strategy_config_file import write_config
from trading_bot.settings import Secret

START_MS = JAN_1_2026_MS + 10 * 60_000  # a round minute
LIVE_KEY, LIVE_SECRET = "k-live", "s-live"
SYMBOL, SYMBOL_ID = "BTC/USDT:USDT", "BTCUSDT"


def live_settings(tmp_path, fake, **changes):
    changes = {"max_open_positions": 5, **changes}
    settings = make_settings(tmp_path, dry_run=False, live_confirmed=True, symbols=(SYMBOL,), timeframes=("1m",),
                             exchange_url=fake.url, api_key=Secret(LIVE_KEY), api_secret=Secret(LIVE_SECRET),
                             exchange_timeout_ms=2000, exchange_recv_window_ms=1000, **changes)
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
