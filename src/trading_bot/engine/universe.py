"""The symbol universe at run time (TRADING_SYMBOLS=top:N or all): the choice at startup, its refresh
(top:N daily at 00:05 UTC, all hourly, on the bot's clock) and the bots it adds and removes.

- At startup the exchange is asked (markets, and for top:N the 24 h tickers). Unreachable, paper with
  MARKET_DATA=auto trades the synthetic market's own listing (marketdata/synthetic.py), as it does
  with a stale cache today; live and MARKET_DATA=exchange refuse to start (one line). Symbols of the
  saved books that still hold something are added to the choice (kept, below).
- A new symbol's bots read their CSV cache and are fetched by the heartbeat's refresh like every
  series; they are `warming` until the series has enough candles for every feature, and trade from
  the candle after that (the history is not news: it never signals, as at startup).
- A symbol that leaves the choice while it holds a position, a waiting entry or an order intent keeps
  its bots, exit-only (ExitOnly: no new entry), until it is flat; then its bots are removed (their
  books stay in positions.json, as for a symbol taken out of TRADING_SYMBOLS between runs).
- Each change is one log line (domain/universe.py `UniverseChange.line`).
- A refresh the exchange does not answer keeps the symbols and is asked again RETRY_MS later.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from trading_bot.domain.params import StrategyParams
from trading_bot.domain.universe import RETRY_MS, UniverseChange, UniverseRule, choose, plan_change
from trading_bot.engine.config_watch import ConfigWatcher
from trading_bot.engine.errors import StartupError
from trading_bot.engine.exchange_link import ExchangeLink
from trading_bot.engine.supervision import Supervisor
from trading_bot.exchange.errors import is_exchange_error, short_error
from trading_bot.execution.broker import Broker
from trading_bot.marketdata.manager import MarketDataManager, SeriesKey
from trading_bot.marketdata.sources import CandleSource
from trading_bot.marketdata.synthetic import SYNTHETIC_SYMBOLS
from trading_bot.settings import Settings
from trading_bot.signals.scoring import WeightedScoringStrategy

if TYPE_CHECKING:
    from trading_bot.exchange.client import ExchangeClient

log = logging.getLogger("trading_bot")


Chooser = Callable[[], Awaitable[tuple[str, ...]]]


class ChoiceFailed(Exception):
    """The exchange could not give a choice (unreachable, failing, or nothing to choose from)."""


class ExitOnly(WeightedScoringStrategy):
    """A bot of a symbol that left the universe while it held something: it scores as before (a
    waiting entry still fills, the position's stop and target are the rules' as ever) but its
    threshold is one no score reaches, so it opens nothing new."""

    @property
    def params(self) -> StrategyParams:
        return replace(super().params, threshold=math.inf)


def exchange_chooser(client: ExchangeClient, rule: UniverseRule) -> Chooser:
    async def from_exchange() -> tuple[str, ...]:
        from trading_bot.exchange.universe import UniverseUnavailable, exchange_universe

        try:
            return await exchange_universe(client, rule)
        except UniverseUnavailable as exc:
            raise ChoiceFailed(str(exc)) from None
        except Exception as exc:
            if not is_exchange_error(exc):
                raise
            raise ChoiceFailed(short_error(exc)) from None

    return from_exchange


def synthetic_chooser(rule: UniverseRule) -> Chooser:
    async def from_listing() -> tuple[str, ...]:
        return choose(rule, SYNTHETIC_SYMBOLS)  # no volumes: the listing's order is its ranking

    return from_listing


@dataclass(frozen=True)
class StartChoice:
    chosen: tuple[str, ...]
    chooser: Chooser  # what the refreshes ask
    synthetic: bool  # the synthetic market's listing: paper trades on the synthetic market


async def choose_at_start(settings: Settings, rule: UniverseRule, exchange: ExchangeLink, *, live: bool,
                          override: CandleSource | None) -> StartChoice:
    s = settings
    offline = override.name == "synthetic" if override is not None else not live and s.market_data == "synthetic"
    if offline:
        chooser = synthetic_chooser(rule)
        log.info("TRADING_SYMBOLS=%s on the synthetic market: its own listing (%d symbols, ranked in their order)",
                 rule, len(SYNTHETIC_SYMBOLS))
        return StartChoice(await chooser(), chooser, True)
    from trading_bot.exchange.network import exchange_host, network_reachable

    reachable, why = await network_reachable(*exchange_host(s.exchange_id, s.exchange_url))
    if reachable:
        chooser = exchange_chooser(exchange.get(), rule)
        try:
            chosen = await chooser()
        except ChoiceFailed as exc:
            why = str(exc)
        else:
            log.info("TRADING_SYMBOLS=%s, %s: %d chosen (%s%s)", rule, rule.describe(), len(chosen), ", ".join(chosen[:10]),
                     ", …" if len(chosen) > 10 else "")
            return StartChoice(chosen, chooser, False)
    if live or s.market_data == "exchange" or override is not None:
        raise StartupError(f"TRADING_SYMBOLS={rule}: cannot choose the symbols, the exchange did not answer ({why}); "
                           "start again once it does, or set TRADING_SYMBOLS to a list of symbols")
    log.warning("TRADING_SYMBOLS=%s: the exchange did not answer (%s): paper trading on the synthetic market and "
                "its own listing (seed %d, candles in %s)", rule, why, s.synthetic_seed, s.synthetic_dir)
    chooser = synthetic_chooser(rule)
    return StartChoice(await chooser(), chooser, True)


class UniverseKeeper:
    """The running symbols of a top:N / all universe: refreshes the choice, adds and removes bots."""

    def __init__(self, rule: UniverseRule, timeframes: tuple[str, ...], choice: StartChoice, now_ms: int, *,
                 mdm: MarketDataManager, strategies: dict[SeriesKey, WeightedScoringStrategy], broker: Broker,
                 supervisor: Supervisor, config: ConfigWatcher) -> None:
        self.rule = rule
        self.timeframes = timeframes
        self.chosen = choice.chosen
        self.source = "synthetic listing" if choice.synthetic else "exchange"
        self._choose = choice.chooser
        self.mdm = mdm
        self.strategies = strategies
        self.broker = broker
        self.supervisor = supervisor
        self.config = config
        self.next_refresh_ms = rule.next_refresh_ms(now_ms)
        self.refreshed_ms = now_ms
        self.warming: set[SeriesKey] = set()  # bots whose history is not long enough yet: no signals
        self.kept: set[str] = set()  # symbols that left the choice holding something: exit-only
        self._told: set[SeriesKey] = set()  # warming bots whose wait was logged
        for symbol in self.running_symbols():
            if symbol not in self.chosen:
                self._keep(symbol)
        if self.kept:
            log.info("universe %s: kept %d symbol(s) that left the choice with something open: %s (no new entries)",
                     rule, len(self.kept), ", ".join(sorted(self.kept)))

    def running_symbols(self) -> list[str]:
        return list(dict.fromkeys(symbol for symbol, _ in self.mdm.series))

    def _keys_of(self, symbol: str) -> list[SeriesKey]:
        return [key for key in self.mdm.series if key[0] == symbol]

    def _keep(self, symbol: str) -> None:
        self.kept.add(symbol)
        for key in self._keys_of(symbol):
            self.strategies[key] = ExitOnly(key[0], key[1], self.config.current)

    def _take_back(self, symbol: str) -> None:
        self.kept.discard(symbol)
        for key in self._keys_of(symbol):
            self.strategies[key] = WeightedScoringStrategy(key[0], key[1], self.config.current)

    # --- each heartbeat, before the refresh ------------------------------------------------------

    async def update(self, now_ms: int) -> None:
        """The refresh when due; otherwise the kept symbols that are flat now are removed."""
        if now_ms >= self.next_refresh_ms:
            await self._refresh(now_ms)
            return
        if self.kept:
            busy = self.broker.busy_symbols()
            flat = tuple(sorted(symbol for symbol in self.kept if symbol not in busy))
            if flat:
                await self._apply(UniverseChange(removed=flat, kept=tuple(sorted(self.kept - set(flat)))), "flat now")

    async def _refresh(self, now_ms: int) -> None:
        try:
            chosen = await self._choose()
        except ChoiceFailed as exc:
            self.next_refresh_ms = now_ms + RETRY_MS
            log.warning("universe %s: refresh failed (%s): keeping the %d symbols, asking again in %.0f min", self.rule,
                        exc, len(self.running_symbols()), RETRY_MS / 60_000)
            return
        self.chosen = chosen
        self.refreshed_ms = now_ms
        self.next_refresh_ms = self.rule.next_refresh_ms(now_ms)
        await self._apply(plan_change(self.running_symbols(), chosen, self.broker.busy_symbols()), "refresh")

    async def _apply(self, change: UniverseChange, why: str) -> None:
        removed = [key for symbol in change.removed for key in self._keys_of(symbol)]
        self.mdm.remove_series(removed)
        self.broker.remove_bots(removed)
        for key in removed:
            self.strategies.pop(key, None)
            self.warming.discard(key)
            self._told.discard(key)
        self.kept.difference_update(change.removed)
        for symbol in change.kept:
            if symbol not in self.kept:
                self._keep(symbol)
        for symbol in [s for s in self.kept if s in self.chosen]:  # chosen again before it was flat
            self._take_back(symbol)
        if change.added and not await self._add(change.added):
            change = replace(change, added=())
        self.config.track(list(self.mdm.series))
        level = logging.INFO if change or change.kept else logging.DEBUG  # an unchanged `all` is asked hourly
        log.log(level, "%s", change.line(self.rule, len(self.running_symbols()), why))

    async def _add(self, symbols: tuple[str, ...]) -> bool:
        keys = [(symbol, tf) for symbol in symbols for tf in self.timeframes]
        self.broker.add_bots(keys)
        if not await self.supervisor.admit(symbols):  # live: margin mode and leverage first
            self.broker.remove_bots(keys)
            self.next_refresh_ms = min(self.next_refresh_ms, self.refreshed_ms + RETRY_MS)
            return False
        await self.mdm.add_series(keys)
        for key in keys:
            self.strategies[key] = WeightedScoringStrategy(key[0], key[1], self.config.current)
        self.warming.update(keys)
        return True

    # --- each heartbeat, after the refresh ---------------------------------------------------------

    def warm(self, keys: list[SeriesKey]) -> None:
        """Bots without enough history yet (at startup: a young listing's daily candles, say)."""
        self.warming.update(keys)
        self._tell_waiting(keys)

    def _tell_waiting(self, keys: list[SeriesKey]) -> None:
        self._told.update(keys)  # once per bot: a daily series may wait for weeks
        log.warning("universe %s: %d bot(s) wait for enough history before they may trade: %s%s", self.rule, len(keys),
                    ", ".join(f"{s} {tf} ({self.mdm.series[(s, tf)].candles.shape[0]} candles)" for s, tf in keys[:5]),
                    " …" if len(keys) > 5 else "")

    def admit(self, new: dict[SeriesKey, np.ndarray]) -> dict[SeriesKey, np.ndarray]:
        """Take the warming bots' candles out of this heartbeat's new ones (history, not news); a bot
        whose series is long enough now trades from its next candle."""
        if not self.warming:
            return new
        ready, waiting = [], []
        for key in sorted(self.warming):
            fetched = new.pop(key, None) is not None
            if key not in self.mdm.series or not self.mdm.ready(key):
                if fetched and key not in self._told:
                    waiting.append(key)
                continue
            self.warming.discard(key)
            book = self.broker.book(*key)
            if book.position is None and book.pending is None:  # a saved flat book: its last candle is old news
                book.last_candle_ts = self.mdm.series[key].last_ts
            ready.append(key)
        if ready:
            log.info("universe %s: %d new bot(s) ready, trading from their next candle: %s%s", self.rule, len(ready),
                     ", ".join(f"{s} {tf}" for s, tf in ready[:5]), " …" if len(ready) > 5 else "")
        if waiting:
            self._tell_waiting(waiting)
        return new

    def as_json(self) -> dict[str, Any]:
        """For status.json."""
        return {"rule": str(self.rule), "source": self.source, "chosen": list(self.chosen), "kept": sorted(self.kept),
                "warming": len(self.warming), "refreshed_ms": self.refreshed_ms, "next_refresh_ms": self.next_refresh_ms}
