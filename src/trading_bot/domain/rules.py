"""The one set of trading rules, shared by the paper broker and the backtest (pure: no I/O, no clock).

- A signal is taken on a closed candle t; the entry fills at the open of candle t+1 plus slippage
  (against us), and a fee is charged on each side.
- Long: stop = entry × (1 − sl_pct), target = entry × (1 + sl_pct × rr_ratio); short mirrored.
- From candle t+1 on, each candle's low/high is checked; if both levels are touched in one candle
  the stop wins; a candle that opens beyond a level fills at that open.
- One position per bot; signals are ignored while it is open. After an exit during candle k, the
  signal at the close of k may open the next position at the open of k+1.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from trading_bot.domain.trades import LONG, SHORT, BotBook, ClosedTrade, Costs, PendingEntry, Position

# Sizing callback: (side, entry_price, stop) -> quantity (0 rejects the entry).
SizeFn = Callable[[int, float, float], float]
# Whether a new entry may be signalled (the portfolio cap): asked at the signal step, after this
# candle's exit is booked, so a position closing on the candle does not count against the cap.
EntryGate = Callable[[], bool]


def signal_side(score: float, threshold: float) -> int:
    if score >= threshold:
        return LONG
    if score <= -threshold:
        return SHORT
    return 0  # also for NaN (warm-up)


def entry_fill_price(side: int, open_price: float, slippage: float) -> float:
    return open_price * (1.0 + side * slippage)


def protective_levels(side: int, entry: float, sl_pct: float, rr_ratio: float) -> tuple[float, float]:
    stop = entry * (1.0 - side * sl_pct)
    target = entry * (1.0 + side * sl_pct * rr_ratio)
    return stop, target


def exit_on_candle(side: int, stop: float, target: float, open_: float, high: float, low: float) -> tuple[str, float] | None:
    """(reason, fill price) if the candle takes the position out; the stop is checked first."""
    if side == LONG:
        if open_ <= stop:
            return "stop", open_
        if open_ >= target:
            return "target", open_
        if low <= stop:
            return "stop", stop
        if high >= target:
            return "target", target
    else:
        if open_ >= stop:
            return "stop", open_
        if open_ <= target:
            return "target", open_
        if high >= stop:
            return "stop", stop
        if low <= target:
            return "target", target
    return None


def open_position(book: BotBook, pending: PendingEntry, open_price: float, candle_ts: int,
                  sl_pct: float, rr_ratio: float, costs: Costs, size: SizeFn) -> Position | None:
    entry = entry_fill_price(pending.side, open_price, costs.slippage)
    stop, target = protective_levels(pending.side, entry, sl_pct, rr_ratio)
    qty = size(pending.side, entry, stop)
    if not (qty > 0 and math.isfinite(qty)):
        return None
    return Position(
        symbol=book.symbol, timeframe=book.timeframe, side=pending.side, qty=qty,
        entry_price=entry, entry_ts=candle_ts, signal_ts=pending.signal_ts, stop=stop, target=target,
        entry_fee=qty * entry * costs.fee_rate, sl_pct=sl_pct, rr_ratio=rr_ratio,
    )


def close_position(position: Position, reason: str, price: float, candle_ts: int, costs: Costs) -> ClosedTrade:
    exit_fee = position.qty * price * costs.fee_rate
    gross = position.side * position.qty * (price - position.entry_price)
    return ClosedTrade(
        symbol=position.symbol, timeframe=position.timeframe, side=position.side, qty=position.qty,
        entry_price=position.entry_price, entry_ts=position.entry_ts, signal_ts=position.signal_ts,
        exit_price=price, exit_ts=candle_ts, exit_reason=reason, entry_fee=position.entry_fee,
        exit_fee=exit_fee, gross_pnl=gross, pnl=gross - position.entry_fee - exit_fee, funding=position.funding,
    )


@dataclass
class CandleOutcome:
    opened: Position | None = None
    closed: ClosedTrade | None = None
    signalled: PendingEntry | None = None
    rejected: PendingEntry | None = None  # a fill the sizing refused (risk limits)


def fill_pending(book: BotBook, open_price: float, candle_ts: int, sl_pct: float, rr_ratio: float,
                 costs: Costs, size: SizeFn, outcome: CandleOutcome) -> None:
    """Fill the waiting signal at the open of the candle that starts at candle_ts."""
    pending = book.pending
    if pending is None or book.position is not None:
        return
    book.pending = None
    position = open_position(book, pending, open_price, candle_ts, sl_pct, rr_ratio, costs, size)
    if position is None:
        outcome.rejected = pending
    else:
        book.position = position
        outcome.opened = position


def settle_candle(book: BotBook, ts: int, open_: float, high: float, low: float, sl_pct: float, rr_ratio: float,
                  costs: Costs, size: SizeFn, outcome: CandleOutcome) -> None:
    """The first half of a closed candle: a waiting signal fills at its open, then the exit check."""
    fill_pending(book, open_, ts, sl_pct, rr_ratio, costs, size, outcome)
    position = book.position
    if position is not None:
        hit = exit_on_candle(position.side, position.stop, position.target, open_, high, low)
        if hit is not None:
            outcome.closed = close_position(position, hit[0], hit[1], ts, costs)
            book.position = None


def take_signal(book: BotBook, ts: int, score: float, threshold: float, allow_entry: bool | EntryGate,
                outcome: CandleOutcome) -> None:
    """The second half: the signal at the close, when the bot is flat and the gate allows it."""
    if book.position is None and book.pending is None:
        side = signal_side(score, threshold)
        if side and (allow_entry() if callable(allow_entry) else allow_entry):
            book.pending = PendingEntry(side=side, signal_ts=ts, score=float(score))
            outcome.signalled = book.pending
    book.last_candle_ts = ts


def on_closed_candle(book: BotBook, ts: int, open_: float, high: float, low: float, score: float,
                     threshold: float, sl_pct: float, rr_ratio: float, costs: Costs, size: SizeFn,
                     allow_entry: bool | EntryGate = True) -> CandleOutcome:
    """Advance one bot by one closed candle: fill → exit check → new signal. The single rule both
    the paper broker and the backtest run (across bots, domain/instant.py orders these halves).
    `allow_entry` may be a gate, asked only when a signal would be taken (after the exit of this
    candle is booked)."""
    outcome = CandleOutcome()
    settle_candle(book, ts, open_, high, low, sl_pct, rr_ratio, costs, size, outcome)
    take_signal(book, ts, score, threshold, allow_entry, outcome)
    return outcome
