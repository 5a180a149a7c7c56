"""The symbol universe (TRADING_SYMBOLS=top:N or all) as pure rules: which markets qualify, which of
them are chosen, what changes when the choice is made again, and when it is made again.

The fetching is exchange/universe.py's (the markets and the 24 h tickers), the offline listing is the
synthetic market's (marketdata/synthetic.py), and engine/universe.py adds and removes the bots.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence, Set
from dataclasses import dataclass
from typing import Any

from trading_bot.domain.intents import OrderIntent
from trading_bot.domain.trades import BotBook

QUOTE = "USDT"
HOUR_MS = 3_600_000
DAY_MS = 86_400_000
# After the top of the day (top:N) or of the hour (all): at 00:00 UTC every timeframe closes at once
# and funding is paid, the heaviest tick of the day; the ticker request and the new bots' history
# downloads come a few minutes later instead of on top of it.
REFRESH_DELAY_MS = 5 * 60_000
RETRY_MS = 10 * 60_000  # a refresh the exchange did not answer: the symbols stay, asked again then
NAMES_SHOWN = 5  # symbols named in a log line before "…"


@dataclass(frozen=True)
class UniverseRule:
    """top:N (count) or all (count None): how the traded symbols are chosen."""

    count: int | None = None

    def __str__(self) -> str:
        return "all" if self.count is None else f"top:{self.count}"

    def describe(self) -> str:
        if self.count is None:
            return "every active USDT-margined perpetual"
        return f"the {self.count} USDT-margined perpetual{'s' if self.count != 1 else ''} with the largest 24 h quote volume"

    @property
    def period_ms(self) -> int:
        """top:N follows the daily volumes; all follows the markets (the client reloads them hourly)."""
        return HOUR_MS if self.count is None else DAY_MS

    def next_refresh_ms(self, now_ms: int) -> int:
        """The first refresh moment (the period's start + REFRESH_DELAY_MS) after now_ms."""
        period = self.period_ms
        return (now_ms - REFRESH_DELAY_MS) // period * period + period + REFRESH_DELAY_MS


def parse_universe(raw: str) -> UniverseRule | None:
    """`top:N` or `all` (any case); None for anything else (a symbol list). ValueError for a top:
    without a whole number ≥ 1."""
    value = raw.strip().lower()
    if value == "all":
        return UniverseRule()
    if value != "top" and not value.startswith("top:"):
        return None
    count = value[4:].strip()
    if not count.isdigit() or int(count) < 1:
        raise ValueError(f"top:N takes a whole number of symbols, at least 1 (e.g. top:20), got {raw.strip()!r}")
    return UniverseRule(int(count))


def eligible_symbols(markets: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """The active linear USDT perpetuals among ccxt's unified markets, by symbol. (active None: the
    exchange does not say, so the market counts.)"""
    return sorted(symbol for symbol, m in markets.items()
                  if m.get("swap") and m.get("linear") and m.get("quote") == QUOTE and m.get("settle") == QUOTE
                  and m.get("active") is not False)


def choose(rule: UniverseRule, eligible: Iterable[str], volumes: Mapping[str, float | None] | None = None) -> tuple[str, ...]:
    """all: every eligible symbol, in the order given. top:N: the N with the largest volume (a missing
    or non-finite one counts as 0; ties and volumes=None keep the order given)."""
    names = list(dict.fromkeys(eligible))
    if rule.count is None:
        return tuple(names)
    if volumes is not None:
        names.sort(key=lambda symbol: -_volume(volumes.get(symbol)))  # stable: ties keep their order
    return tuple(names[: rule.count])


def _volume(value: float | None) -> float:
    return value if value is not None and math.isfinite(value) else 0.0


@dataclass(frozen=True)
class UniverseChange:
    """What a new choice changes, by symbol: `kept` left the choice but holds a position, a waiting
    entry or an order intent, so its bots stay (no new entries) until it is flat."""

    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    kept: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.added or self.removed)

    def line(self, rule: UniverseRule, running: int, why: str = "") -> str:
        """One log line: `universe top:20 (refresh): added 2 (…), removed 1 (…), kept 1 because open (…); 20 symbols`."""
        return (f"universe {rule}{f' ({why})' if why else ''}: added {len(self.added)}{_names(self.added)}, "
                f"removed {len(self.removed)}{_names(self.removed)}, kept {len(self.kept)} because open"
                f"{_names(self.kept)}; {running} symbol{'s' if running != 1 else ''}")


def _names(symbols: Sequence[str]) -> str:
    if not symbols:
        return ""
    shown = ", ".join(symbols[:NAMES_SHOWN])
    return f" ({shown}{', …' if len(symbols) > NAMES_SHOWN else ''})"


def plan_change(running: Sequence[str], chosen: Sequence[str], busy: Set[str]) -> UniverseChange:
    """running: the symbols with bots now; chosen: the new choice; busy: symbols with a position, a
    waiting entry or an intent. A symbol that left the choice is removed once it is not busy."""
    have, wanted = set(running), set(chosen)
    leaving = [symbol for symbol in running if symbol not in wanted]
    return UniverseChange(added=tuple(s for s in chosen if s not in have),
                          removed=tuple(s for s in leaving if s not in busy),
                          kept=tuple(s for s in leaving if s in busy))


def start_symbols(chosen: Sequence[str], busy: Iterable[str]) -> tuple[str, ...]:
    """At startup: the choice, then the busy symbols of the saved books that are not in it (kept)."""
    return tuple(dict.fromkeys([*chosen, *sorted(busy)]))


def busy_symbols(books: Iterable[BotBook], intents: Iterable[OrderIntent]) -> set[str]:
    """Symbols with an open position, a signal waiting for its fill or an order intent (live): what
    keeps a symbol's bots running after it left the choice."""
    return ({b.symbol for b in books if b.position is not None or b.pending is not None}
            | {intent.symbol for intent in intents})
