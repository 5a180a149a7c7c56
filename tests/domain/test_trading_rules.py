"""Every paper exit case, by the rules in docs/architecture.md."""

from __future__ import annotations

import math

import pytest

from trading_bot.domain.rules import exit_on_candle, on_closed_candle, protective_levels, signal_side
from trading_bot.domain.trades import LONG, SHORT, BotBook, Costs

COSTS = Costs(fee_rate=0.001, slippage=0.0)


def fixed_size(qty: float = 2.0):
    return lambda side, entry, stop: qty


def open_book(side: int, entry_open: float = 100.0, sl: float = 0.02, rr: float = 2.0, costs: Costs = COSTS) -> BotBook:
    """A book whose signal fired on candle 0 and filled at the open of candle 1 (a quiet candle)."""
    book = BotBook("BTC/USDT:USDT", "5m")
    score = 1.0 if side == LONG else -1.0
    on_closed_candle(book, 0, 99.0, 99.5, 98.5, score, 0.5, sl, rr, costs, fixed_size())
    assert book.pending is not None and book.pending.side == side
    out = on_closed_candle(book, 1, entry_open, entry_open + 0.1, entry_open - 0.1, 0.0, 0.5, sl, rr, costs, fixed_size())
    assert out.opened is not None and out.closed is None
    return book


def step(book: BotBook, ts: int, o: float, h: float, low: float, score: float = 0.0):
    return on_closed_candle(book, ts, o, h, low, score, 0.5, 0.02, 2.0, COSTS, fixed_size())


def test_levels_long_and_short():
    assert protective_levels(LONG, 100.0, 0.02, 2.0) == pytest.approx((98.0, 104.0))
    assert protective_levels(SHORT, 100.0, 0.02, 2.0) == pytest.approx((102.0, 96.0))


def test_signal_thresholds_and_nan():
    assert signal_side(0.5, 0.5) == LONG
    assert signal_side(-0.5, 0.5) == SHORT
    assert signal_side(0.49, 0.5) == 0
    assert signal_side(math.nan, 0.5) == 0


def test_entry_fills_at_next_open_with_slippage_against_us():
    costs = Costs(fee_rate=0.001, slippage=0.01)
    long_book = open_book(LONG, entry_open=100.0, costs=costs)
    assert long_book.position.entry_price == pytest.approx(101.0)
    assert long_book.position.entry_ts == 1 and long_book.position.signal_ts == 0
    assert long_book.position.stop == pytest.approx(101.0 * 0.98)
    short_book = open_book(SHORT, entry_open=100.0, costs=costs)
    assert short_book.position.entry_price == pytest.approx(99.0)


def test_stop_hit_long():
    book = open_book(LONG)
    out = step(book, 2, 100.0, 101.0, 97.5)
    assert out.closed.exit_reason == "stop" and out.closed.exit_price == pytest.approx(98.0)
    assert book.position is None


def test_target_hit_long():
    book = open_book(LONG)
    out = step(book, 2, 100.0, 104.5, 99.0)
    assert out.closed.exit_reason == "target" and out.closed.exit_price == pytest.approx(104.0)


def test_both_levels_in_one_candle_stop_wins():
    book = open_book(LONG)
    out = step(book, 2, 100.0, 105.0, 97.0)
    assert out.closed.exit_reason == "stop" and out.closed.exit_price == pytest.approx(98.0)
    short = open_book(SHORT)
    out = step(short, 2, 100.0, 103.0, 95.0)
    assert out.closed.exit_reason == "stop" and out.closed.exit_price == pytest.approx(102.0)


def test_gap_through_stop_fills_at_open():
    book = open_book(LONG)
    out = step(book, 2, 96.0, 96.5, 95.0)
    assert out.closed.exit_reason == "stop" and out.closed.exit_price == 96.0
    short = open_book(SHORT)
    out = step(short, 2, 103.5, 104.0, 103.0)
    assert out.closed.exit_reason == "stop" and out.closed.exit_price == 103.5


def test_gap_through_target_fills_at_open():
    book = open_book(LONG)
    out = step(book, 2, 106.0, 107.0, 105.5)
    assert out.closed.exit_reason == "target" and out.closed.exit_price == 106.0
    short = open_book(SHORT)
    out = step(short, 2, 94.0, 94.5, 93.0)
    assert out.closed.exit_reason == "target" and out.closed.exit_price == 94.0


def test_short_exits():
    book = open_book(SHORT)
    out = step(book, 2, 100.0, 100.5, 95.5)
    assert out.closed.exit_reason == "target" and out.closed.exit_price == pytest.approx(96.0)


def test_fee_on_both_sides_and_pnl():
    book = open_book(LONG)  # qty 2 @ 100, fee 0.1 %
    out = step(book, 2, 100.0, 104.5, 99.0)
    trade = out.closed
    assert trade.entry_fee == pytest.approx(2 * 100.0 * 0.001)
    assert trade.exit_fee == pytest.approx(2 * 104.0 * 0.001)
    assert trade.gross_pnl == pytest.approx(2 * 4.0)
    assert trade.pnl == pytest.approx(8.0 - 0.2 - 0.208)


def test_fill_candle_itself_is_checked_for_exits():
    book = BotBook("X/USDT:USDT", "1m")
    step(book, 0, 99.0, 99.5, 98.5, score=1.0)
    out = step(book, 1, 100.0, 100.2, 97.0)  # fills at 100, then the same candle hits the stop
    assert out.opened is not None and out.closed is not None and out.closed.exit_reason == "stop"


def test_signals_ignored_while_open_and_reentry_after_exit_candle():
    book = open_book(LONG)
    out = step(book, 2, 100.0, 100.5, 99.5, score=-1.0)  # position open: short signal ignored
    assert out.signalled is None and book.pending is None
    out = step(book, 3, 100.0, 104.5, 99.5, score=-1.0)  # exits at target; its close may signal
    assert out.closed is not None and out.signalled is not None and out.signalled.side == SHORT
    out = step(book, 4, 103.0, 103.2, 102.8)
    assert out.opened is not None and out.opened.side == SHORT and out.opened.entry_price == 103.0


def test_zero_size_rejects_entry():
    book = BotBook("X/USDT:USDT", "1m")
    on_closed_candle(book, 0, 1, 1, 1, 1.0, 0.5, 0.02, 2.0, COSTS, fixed_size(0.0))
    out = on_closed_candle(book, 1, 1, 1, 1, 0.0, 0.5, 0.02, 2.0, COSTS, fixed_size(0.0))
    assert out.rejected is not None and book.position is None


def test_exit_on_candle_none_when_untouched():
    assert exit_on_candle(LONG, 98.0, 104.0, 100.0, 103.9, 98.1) is None
    assert exit_on_candle(SHORT, 102.0, 96.0, 100.0, 101.9, 96.1) is None
