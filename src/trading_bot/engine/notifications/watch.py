"""What the notifications notice after each heartbeat, from the books rather than from a hook in the
code that changed them: a reconciliation problem (the live broker's `halted`, which only
reconciliation sets), a held position without its stop or target on the exchange (live; the same
count as the metrics' unprotected_positions), and the daily summary (once per UTC day on the bot's
clock, at NOTIFY_DAILY_HOUR_UTC). Each is a few comparisons: it runs on the heartbeat."""

from __future__ import annotations

from trading_bot.domain.trades import Position
from trading_bot.domain.wallet import Wallet
from trading_bot.engine.notifications import events
from trading_bot.engine.notifications.events import Event

DAY_MS = 86_400_000
HOUR_MS = 3_600_000


class DailySummary:
    """Trades, PnL and equity since the last summary (or the start), once the day turns at `hour` UTC."""

    def __init__(self, hour: int, now_ms: int, wallet: Wallet) -> None:
        self.hour = hour
        self._period = self._period_of(now_ms)
        self._since_ms = now_ms
        self._mark(wallet)

    def _period_of(self, now_ms: int) -> int:
        return (now_ms - self.hour * HOUR_MS) // DAY_MS

    def _mark(self, wallet: Wallet) -> None:
        self._trades, self._wins, self._pnl = wallet.trades, wallet.wins, wallet.realised_pnl

    def due(self, now_ms: int) -> bool:
        """One comparison: the heartbeat asks this every tick, the figures only when it is due."""
        return self._period_of(now_ms) > self._period

    def check(self, now_ms: int, wallet: Wallet, equity: float, open_positions: int) -> Event | None:
        if not self.due(now_ms):
            return None
        period = self._period_of(now_ms)
        event = events.daily_summary(self._since_ms, wallet.trades - self._trades, wallet.wins - self._wins,
                                     wallet.realised_pnl - self._pnl, equity, open_positions)
        self._period = period
        self._since_ms = period * DAY_MS + self.hour * HOUR_MS
        self._mark(wallet)
        return event


class Watch:
    def __init__(self, halted: str | None) -> None:
        self._halted = halted  # a halt already in force at start is told in the started message
        self._unprotected: set[tuple[str, str]] = set()

    def reconcile_problem(self, halted: str | None) -> Event | None:
        """A new (or different) reconciliation halt."""
        new = halted is not None and halted != self._halted
        self._halted = halted
        return events.reconcile_problem(halted) if new and halted is not None else None

    def unprotected(self, positions: list[Position]) -> list[Event]:
        """The positions that have just become unprotected (each told once until protected again)."""
        found: list[Event] = []
        now: set[tuple[str, str]] = set()
        for p in positions:
            missing = p.missing_protection()
            if missing:
                now.add((p.symbol, p.timeframe))
                if (p.symbol, p.timeframe) not in self._unprotected:
                    found.append(events.unprotected(p, missing))
        self._unprotected = now
        return found
