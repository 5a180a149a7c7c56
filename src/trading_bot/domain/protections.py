"""Account-level protection (pure): the daily loss limit, the max drawdown, the per-bot cooldown after
consecutive stop-outs, and the trading state they and the operator give (active / reducing / halted).

The same rules run in the portfolio backtest, the replay, paper and live (domain/instant.py calls them
at the same points of an instant; the live broker at its signal and its booked exits).

- Equity here is the wallet's booked balance: closed trades (and funding), not open positions' marks.
  The backtest sees only the instants where something happens, so a rule on marks could not give it
  the replay's trades; a rule on booked balance gives the same answer wherever it is asked.
- The UTC day starts with the balance before that day's first instant (an instant is a candle close:
  the 23:55 5m candle closes at 00:00 and its exit counts for the new day).
- Daily loss limit: once a day's booked loss reaches DAILY_LOSS_LIMIT × the day's starting balance,
  no new entries until the next UTC day (REDUCING: open positions keep their stops and targets).
- Max drawdown: once the balance falls MAX_DRAWDOWN below its peak, no new entries until an operator
  resumes (HALTED). Resuming starts a new peak from the balance then, or it would halt again at once.
- Cooldown: after COOLDOWN_STOPOUTS stop-outs in a row, that bot takes no signal for COOLDOWN_CANDLES
  of its candles, counting the stop-out candle (whose close could otherwise signal). Any other exit
  ends the streak; the streak starts again from zero after a cooldown.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from trading_bot.domain.timeframes import last_closed_open_ms, timeframe_ms
from trading_bot.domain.trades import BotBook, ClosedTrade, Position
from trading_bot.domain.wallet import GuardRecord, Wallet

DAY_MS = 86_400_000
ACTIVE, REDUCING, HALTED = "active", "reducing", "halted"


@dataclass(frozen=True)
class ProtectionLimits:
    """0 switches a rule off (the default for each)."""

    daily_loss_limit: float = 0.0  # fraction of the UTC day's starting balance
    max_drawdown: float = 0.0  # fraction of the peak balance
    cooldown_stopouts: int = 0  # consecutive stop-outs of one bot
    cooldown_candles: int = 0  # candles of that bot's timeframe without new signals


@dataclass(frozen=True)
class TradingState:
    state: str = ACTIVE
    reason: str = ""

    @property
    def allows_entries(self) -> bool:
        return self.state == ACTIVE

    def describe(self) -> str:
        return self.state if not self.reason else f"{self.state} ({self.reason})"


def trading_state(halts: list[str], reductions: list[str]) -> TradingState:
    """HALTED (until an operator acts) wins over REDUCING (clears by itself); reasons joined."""
    if halts:
        return TradingState(HALTED, "; ".join(halts))
    if reductions:
        return TradingState(REDUCING, "; ".join(reductions))
    return TradingState()


def _money(value: float) -> str:
    return f"{value:.2f}"


class AccountGuard:
    """The account rules over one wallet. Every booked trade goes through `book`, so the wallet and the
    rules can never disagree about what happened."""

    def __init__(self, limits: ProtectionLimits, wallet: Wallet, record: GuardRecord | None = None) -> None:
        self.limits = limits
        self.wallet = wallet
        self.record = record if record is not None else GuardRecord()
        if self.record.peak_balance is None:
            self.record.peak_balance = wallet.balance
        self.refused: dict[str, int] = {}  # signals refused by each rule in this run (for the reports)

    def begin(self, now_ms: int) -> None:
        """An instant starts (before any of its exits): a new UTC day starts from the balance now."""
        day = now_ms // DAY_MS
        if self.record.day != day:
            self.record.day = day
            self.record.day_start_balance = self.wallet.balance

    def book(self, book: BotBook, trade: ClosedTrade) -> None:
        """A closed trade: on the wallet, into the bot's stop-out streak, then the account limits checked."""
        self.wallet.apply(trade)
        self._streak(book, trade)
        self.check()

    def fund(self, position: Position, amount: float) -> None:
        """A funding payment on an open position: into the wallet and the position. The caller checks
        the limits (`check`) once the moment's payments are all booked."""
        position.funding += amount
        self.wallet.add_funding(amount)

    def _streak(self, book: BotBook, trade: ClosedTrade) -> None:
        limits = self.limits
        if trade.exit_reason != "stop":
            book.stop_streak = 0
            return
        book.stop_streak += 1
        if limits.cooldown_stopouts and book.stop_streak >= limits.cooldown_stopouts and limits.cooldown_candles:
            tf_ms = timeframe_ms(book.timeframe)
            # Counted from the open of the candle of the exit (live books the fill's own time).
            exit_candle = last_closed_open_ms(trade.exit_ts, tf_ms) + tf_ms
            book.cooldown_until_ts = exit_candle + limits.cooldown_candles * tf_ms
            book.stop_streak = 0

    def check(self) -> None:
        """The balance has changed (a trade, funding, the exchange's figure): the peak and both limits."""
        record, limits, balance = self.record, self.limits, self.wallet.balance
        peak = record.peak_balance if record.peak_balance is not None else balance
        record.peak_balance = peak = max(peak, balance)
        start = record.day_start_balance
        if (limits.daily_loss_limit and start is not None and record.day is not None and start > 0
                and start - balance >= limits.daily_loss_limit * start and record.daily_limit_day != record.day):
            record.daily_limit_day = record.day
        if limits.max_drawdown and record.drawdown_halt is None and peak > 0 and peak - balance >= limits.max_drawdown * peak:
            record.drawdown_halt = (f"max drawdown {100 * limits.max_drawdown:g}% reached: balance {_money(balance)} "
                                    f"from a peak of {_money(peak)}")

    def entry_gate(self, book: BotBook, candle_ts: int, then: Callable[[], bool]) -> Callable[[], bool]:
        """The gate for a signal of `book` on the candle opening at candle_ts: the cooldown, the account
        limits, then `then` (the cap). Asked only when the candle would signal; refusals are counted."""
        def gate() -> bool:
            if self.cooling_down(book, candle_ts):
                return self._refuse("cooldown")
            if self.record.drawdown_halt:
                return self._refuse("max_drawdown")
            if self.daily_limit_reached():
                return self._refuse("daily_loss_limit")
            return then()

        return gate

    def _refuse(self, rule: str) -> bool:
        self.refused[rule] = self.refused.get(rule, 0) + 1
        return False

    def cooling_down(self, book: BotBook, candle_ts: int) -> bool:
        return book.cooldown_until_ts is not None and candle_ts < book.cooldown_until_ts

    def halts(self) -> list[str]:
        return [self.record.drawdown_halt] if self.record.drawdown_halt else []

    def daily_limit_reached(self) -> bool:
        record = self.record
        return record.daily_limit_day is not None and record.daily_limit_day == record.day

    def reductions(self) -> list[str]:
        record = self.record
        if self.daily_limit_reached():
            # No live figures in the reason: it names the state, and the state is logged when it changes.
            return [f"daily loss limit {100 * self.limits.daily_loss_limit:g}% of the day's "
                    f"{_money(record.day_start_balance or 0.0)} reached; entries resume at 00:00 UTC"]
        return []

    def allows_entries(self) -> bool:
        return self.record.drawdown_halt is None and not self.daily_limit_reached()

    def state(self) -> TradingState:
        return trading_state(self.halts(), self.reductions())

    def resume(self) -> str | None:
        """An operator resumes: the drawdown halt (if any) is lifted and the peak starts again from here.
        Returns the halt that was lifted."""
        lifted = self.record.drawdown_halt
        self.record.drawdown_halt = None
        self.record.peak_balance = self.wallet.balance
        return lifted
