"""Backtest the whole portfolio: every bot on one wallet, under one MAX_OPEN_POSITIONS, in the order of
events the daemon follows (domain/instant.py `run_instant`, the very function the paper broker runs).
So `run --replay` over the same candles and settings gives this trade list, bit for bit, sizes included.

Fast because most candles change nothing: a flat bot matters only on a candle whose score crosses its
threshold, a bot in position only on the candle it exits (found with numpy, the same comparisons as
`rules.exit_on_candle`), a waiting signal only at the next open. Only those instants are handed to
`run_instant`, with only the bots that have something to do; leaving the others out changes nothing.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from trading_bot.backtest.metrics import Metrics, compute_metrics
from trading_bot.backtest.reference import series_scores
from trading_bot.domain.candles import HIGH, LOW, OPEN, TS
from trading_bot.domain.funding_settlement import FundingSettlement
from trading_bot.domain.instant import Account, ClosingCandle, OpeningCandle, run_instant
from trading_bot.domain.params import StrategyParams
from trading_bot.domain.protections import AccountGuard, ProtectionLimits, TradingState
from trading_bot.domain.sizing import RiskLimits, may_open, position_size
from trading_bot.domain.timeframes import timeframe_ms
from trading_bot.domain.trades import LONG, BotBook, ClosedTrade, Costs
from trading_bot.domain.wallet import Wallet, bot_id

# Within an instant: funding (phase 0) first, then closes (phases 1–2), then opens (phase 3).
FUNDING_EVENT, CLOSE_EVENT, OPEN_EVENT = -1, 0, 1


@dataclass(frozen=True)
class PortfolioSeries:
    symbol: str
    timeframe: str
    candles: np.ndarray
    params: StrategyParams
    scores: np.ndarray | None = None  # default: the strategy's score over `candles`


@dataclass
class PortfolioResult:
    trades: list[ClosedTrade] = field(default_factory=list)  # in booking order (the daemon's journal order)
    wallet: Wallet = field(default_factory=lambda: Wallet(0.0, 0.0))
    skipped_entries: int = 0  # signals refused because MAX_OPEN_POSITIONS was reached
    open_positions: int = 0  # still open at the end
    start_ms: int = 0
    end_ms: int = 0
    candles: dict[str, int] = field(default_factory=dict)  # candles traded per bot
    candles_in_position: dict[str, int] = field(default_factory=dict)
    time_in_position_ms: int = 0  # time with at least one position open
    final_state: TradingState = field(default_factory=TradingState)  # the account rules' state at the end
    refused: dict[str, int] = field(default_factory=dict)  # signals refused by each account rule
    funding_labels: dict[str, str] = field(default_factory=dict)  # per symbol: history or the default rate


class _Bot:
    """One series' arrays and where it stands in them."""

    def __init__(self, order: int, s: PortfolioSeries, start_ms: int) -> None:
        self.order = order
        self.book = BotBook(s.symbol, s.timeframe)
        self.params = s.params
        c = s.candles
        self.ts = c[:, TS].astype(np.int64)
        self.opens, self.highs, self.lows = (np.ascontiguousarray(c[:, col]) for col in (OPEN, HIGH, LOW))
        self.tf_ms = timeframe_ms(s.timeframe)
        self.scores = series_scores(c, s.params) if s.scores is None else s.scores
        th = s.params.threshold
        # Candles whose score would signal (the comparisons of rules.signal_side; NaN never does).
        self.candidates = np.flatnonzero((self.scores >= th) | (self.scores <= -th))
        self.first = int(np.searchsorted(self.ts + self.tf_ms, start_ms, side="right"))  # first delivered candle
        # Python lists for the per-event reads: indexing a numpy array for one float is slower.
        self.ts_l: list[int] = self.ts.tolist()
        self.opens_l: list[float] = self.opens.tolist()
        self.highs_l: list[float] = self.highs.tolist()
        self.lows_l: list[float] = self.lows.tolist()
        self.scores_l: list[float] = np.asarray(self.scores, dtype=np.float64).tolist()
        self.n = c.shape[0]
        self.entry_index = -1

    def close_ms(self, k: int) -> int:
        return self.ts_l[k] + self.tf_ms

    def next_candidate(self, k: int) -> int | None:
        i = int(np.searchsorted(self.candidates, k, side="left"))
        return int(self.candidates[i]) if i < self.candidates.shape[0] else None

    def exit_index(self, k: int) -> int | None:
        """The first candle from k on whose open, low or high reaches the position's stop or target."""
        pos = self.book.position
        assert pos is not None
        size = 64
        while k < self.n:
            end = min(self.n, k + size)
            o, h, lo = self.opens[k:end], self.highs[k:end], self.lows[k:end]
            if pos.side == LONG:
                hit = (o <= pos.stop) | (o >= pos.target) | (lo <= pos.stop) | (h >= pos.target)
            else:
                hit = (o >= pos.stop) | (o <= pos.target) | (h >= pos.stop) | (lo <= pos.target)
            i = int(np.argmax(hit))
            if hit[i]:
                return k + i
            k, size = end, size * 4
        return None

    def closing(self, k: int) -> ClosingCandle:
        p = self.params
        return ClosingCandle(self.book, self.ts_l[k], self.opens_l[k], self.highs_l[k], self.lows_l[k],
                             self.scores_l[k], p.threshold, p.sl_pct, p.rr_ratio)

    def opening(self, k: int) -> OpeningCandle:
        return OpeningCandle(self.book, self.ts_l[k], self.opens_l[k], self.params.sl_pct, self.params.rr_ratio)


def backtest_portfolio(series: Sequence[PortfolioSeries], costs: Costs, limits: RiskLimits, initial_balance: float,
                       start_ms: int, protections: ProtectionLimits | None = None,
                       funding: FundingSettlement | None = None) -> PortfolioResult:
    """Trade every candle that closes after start_ms (earlier ones only warm the indicators up), the bots
    in the given order (the daemon's: the settings' symbol × timeframe order), under the account rules
    (domain/protections.py) as the daemon applies them."""
    bots = [_Bot(i, s, start_ms) for i, s in enumerate(series)]
    wallet = Wallet(initial_balance, initial_balance)
    guard = AccountGuard(protections or ProtectionLimits(), wallet)
    result = PortfolioResult(wallet=wallet, start_ms=start_ms)
    books = [b.book for b in bots]
    if funding is not None:
        funding.settled_ms = None
    account = Account(guard, books, funding, record_funding=False)
    symbols = sorted({b.book.symbol for b in bots})
    end_ms = max((b.close_ms(b.n - 1) for b in bots if b.n), default=start_ms)
    funding_due: list[int] = []  # the one funding moment scheduled (only while a position is open)

    def schedule_funding(after_ms: int) -> None:
        # A moment with nothing open books nothing, and each instant's phase 0 settles what is due;
        # a moment with a position open is an instant of its own (its day may begin there).
        if funding is None or funding_due or not any(b.position is not None for b in books):
            return
        moment = funding.next_moment(after_ms, symbols)
        if moment <= end_ms:
            funding_due.append(moment)
            heapq.heappush(events, (moment, FUNDING_EVENT, -1, -1))
    events: list[tuple[int, int, int, int]] = []  # (instant ms, close/open, bot order, candle index)

    def schedule_flat(bot: _Bot, k: int) -> None:
        nxt = bot.next_candidate(k)
        if nxt is not None:
            heapq.heappush(events, (bot.close_ms(nxt), CLOSE_EVENT, bot.order, nxt))

    for bot in bots:
        schedule_flat(bot, bot.first)

    def size(side: int, entry: float, stop: float) -> float:
        return position_size(wallet.balance, entry, stop, limits)

    def entry_allowed() -> bool:
        # A book holds a position or a waiting signal, never both: one count is both terms of may_open.
        allowed = may_open(sum(1 for b in books if b.position is not None or b.pending is not None), 0, limits)
        if not allowed:
            result.skipped_entries += 1
        return allowed

    def book_exit(trade: ClosedTrade) -> None:
        result.trades.append(trade)

    while events:
        instant = events[0][0]
        closes: list[tuple[_Bot, int]] = []
        opens: list[tuple[_Bot, int]] = []
        while events and events[0][0] == instant:
            _, kind, order, k = heapq.heappop(events)
            if kind == FUNDING_EVENT:
                funding_due.clear()
            else:
                (closes if kind == CLOSE_EVENT else opens).append((bots[order], k))
        # Phases 1–2 first: a signal taken now fills at an open of this same instant (phase 3), so the
        # opens are known only then. run_instant's phases run in sequence, so two calls are one.
        run_instant(instant, [b.closing(k) for b, k in closes], [], costs, size, entry_allowed, account, book_exit)
        for bot, k in closes:  # what each bot waits for next (a close event never leaves a position open)
            if bot.entry_index >= 0 and bot.book.position is None:
                key = bot_id(bot.book.symbol, bot.book.timeframe)
                result.candles_in_position[key] = result.candles_in_position.get(key, 0) + k - bot.entry_index + 1
                bot.entry_index = -1
            if bot.book.pending is not None:
                if k + 1 < bot.n:
                    if bot.ts_l[k + 1] == instant:
                        opens.append((bot, k + 1))
                    else:  # a gap in the data: it fills when the next recorded candle opens
                        heapq.heappush(events, (bot.ts_l[k + 1], OPEN_EVENT, bot.order, k + 1))
            else:
                schedule_flat(bot, k + 1)
        if not opens:
            schedule_funding(instant)
            continue
        opens.sort(key=lambda e: e[0].order)
        run_instant(instant, [], [b.opening(k) for b, k in opens], costs, size, entry_allowed, account, book_exit)
        for bot, k in opens:
            if bot.book.position is not None:
                bot.entry_index = k
                e = bot.exit_index(k)
                if e is not None:
                    heapq.heappush(events, (bot.close_ms(e), CLOSE_EVENT, bot.order, e))
            else:
                schedule_flat(bot, k)  # the fill was refused (sizing): flat again from this candle
        schedule_funding(instant)
    for bot in bots:
        key = bot_id(bot.book.symbol, bot.book.timeframe)
        result.candles[key] = max(0, bot.n - bot.first)
        result.candles_in_position.setdefault(key, 0)
        if bot.book.position is not None:
            result.candles_in_position[key] += bot.n - bot.entry_index
            result.open_positions += 1
        if bot.n:
            result.end_ms = max(result.end_ms, bot.close_ms(bot.n - 1))
    result.time_in_position_ms = _time_in_position(result.trades, bots)
    result.final_state = guard.state()
    result.refused = dict(guard.refused)
    if funding is not None:
        result.funding_labels = funding.labels(symbols)
    return result


def _time_in_position(trades: list[ClosedTrade], bots: list[_Bot]) -> int:
    """Length of the union of every position's span (entry open to exit close)."""
    tf = {(b.book.symbol, b.book.timeframe): b.tf_ms for b in bots}
    spans = sorted((t.entry_ts, t.exit_ts + tf[(t.symbol, t.timeframe)]) for t in trades)
    total, cur_start, cur_end = 0, None, 0
    for start, end in spans:
        if cur_start is None or start > cur_end:
            if cur_start is not None:
                total += cur_end - cur_start
            cur_start, cur_end = start, end
        else:
            cur_end = max(cur_end, end)
    if cur_start is not None:
        total += cur_end - cur_start
    return total


@dataclass(frozen=True)
class PortfolioReport:
    per_bot: dict[str, Metrics]
    portfolio: Metrics
    skipped_entries: int


def portfolio_metrics(result: PortfolioResult) -> PortfolioReport:
    """Per bot: its own trades from the initial balance. Portfolio: the shared wallet's equity curve,
    trade by trade in booking order; exposure = share of the period with a position open."""
    initial = result.wallet.initial_balance
    period = float(result.end_ms - result.start_ms)
    per_bot: dict[str, Metrics] = {}
    for key, candles in result.candles.items():  # each trade's PnL with its funding (the wallet's change)
        pnl = np.array([t.net for t in result.trades if bot_id(t.symbol, t.timeframe) == key],
                       dtype=np.float64)
        per_bot[key] = compute_metrics(pnl, initial, period, result.candles_in_position.get(key, 0), candles)
    pnl = np.array([t.net for t in result.trades], dtype=np.float64)
    scale = 1_000_000  # exposure as a share of the period's time, in millionths (compute_metrics takes counts)
    in_position = math.floor(result.time_in_position_ms / period * scale) if period > 0 else 0
    portfolio = compute_metrics(pnl, initial, period, min(in_position, scale), scale)
    return PortfolioReport(per_bot, portfolio, result.skipped_entries)
