"""Config watch: the strategy config in force, its hot reload and the SIGHUP reload.

Every heartbeat compares the file's stamp (mtime, size, inode) with the one loaded; a changed file is
loaded and validated whole before it replaces the config in force (all or nothing: a broken file keeps
the previous config and is not retried until it changes again). SIGHUP forces the same reload beside
the heartbeat, between systemd's RELOADING=1 and READY=1.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from trading_bot.domain.params import StrategyConfig, StrategyConfigError
from trading_bot.ops.systemd import Notifier
from trading_bot.persistence.strategy_config_file import config_stamp, load_config

log = logging.getLogger("trading_bot")


@dataclass
class ConfigWatch:
    """The strategy config in force, and how it got there (shown in status)."""

    config: StrategyConfig
    stamp: tuple[int, int, int] | None
    reloads: int = 0
    last_reload_ms: int | None = None
    last_error: str | None = None
    rejected_stamp: tuple[int, int, int] | None = None


class ConfigWatcher:
    """The strategy config file of the running bots. Exists before startup loads the file, so a
    SIGHUP that arrives first finds `loaded` False and has nothing to reload."""

    def __init__(self, path: Path, keys: list[tuple[str, str]], universe_timeframes: tuple[str, ...] | None = None) -> None:
        self.path = path
        self.keys = keys
        # TRADING_SYMBOLS=top:N or all: any symbol the file names may be traded later, on these
        # timeframes, so each is validated with the file (a bot added later never meets a bad entry)
        # and none is called unused.
        self.universe_timeframes = universe_timeframes
        self._watch: ConfigWatch | None = None  # None until startup loads the file
        self._lock = asyncio.Lock()  # the tick and a SIGHUP reload may both check at once

    def track(self, keys: list[tuple[str, str]]) -> None:
        """The running bots, when the symbol universe chose or changed them."""
        self.keys = keys

    def _load(self) -> StrategyConfig:
        config = load_config(self.path, self.keys)
        if self.universe_timeframes is not None:
            config.validate_for(config.named_keys(self.universe_timeframes))
        return config

    def load(self) -> None:
        """Startup: the file must be valid (StrategyConfigError otherwise: the bot does not start)."""
        stamp = config_stamp(self.path)
        self._watch = ConfigWatch(self._load(), stamp)
        self._warn_unused(self._watch.config)

    def _warn_unused(self, config: StrategyConfig) -> None:
        keys = self.keys if self.universe_timeframes is None else [*self.keys, *config.named_keys(self.universe_timeframes)]
        for warning in config.unused_overrides(keys):
            log.warning("strategy config: %s", warning)

    @property
    def loaded(self) -> bool:
        return self._watch is not None

    @property
    def watch(self) -> ConfigWatch:
        if self._watch is None:
            raise RuntimeError("the strategy config is not loaded yet")
        return self._watch

    def current(self) -> StrategyConfig:
        """The config in force (the strategies ask at every evaluation)."""
        return self.watch.config

    async def check(self, now_ms: int, force: bool = False) -> None:
        """Reload if the file changed since it was loaded (or was rejected); always when forced."""
        async with self._lock:
            await self._reload_if_changed(now_ms, force)

    async def _reload_if_changed(self, now_ms: int, force: bool) -> None:
        watch = self.watch
        stamp = config_stamp(self.path)
        if not force and (stamp == watch.stamp or stamp == watch.rejected_stamp):
            return
        try:
            config = await asyncio.to_thread(self._load)
        except StrategyConfigError as exc:
            watch.last_error = str(exc)
            watch.rejected_stamp = stamp
            log.error("strategy config rejected, keeping the previous one: %s", exc)
            return
        self._watch = ConfigWatch(config, stamp, watch.reloads + 1, now_ms)
        log.info("strategy config reloaded from %s (%d bots)", config.source, len(self.keys))
        self._warn_unused(config)


async def reload_on_sighup(watcher: ConfigWatcher, notifier: Notifier, now_ms: Callable[[], int],
                           status_line: Callable[[], str]) -> None:
    """SIGHUP: runs beside the heartbeat (never skips one); RELOADING=1 … READY=1 for systemd. Log
    files are reopened too (logrotate moved them)."""
    from trading_bot.ops.logs import reopen_log_files

    notifier.reloading()
    try:
        reopen_log_files()
        if watcher.loaded:
            await watcher.check(now_ms(), force=True)
    finally:
        notifier.ready(status_line())
