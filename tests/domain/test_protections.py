"""The account rules (domain/protections.py): daily loss limit, max drawdown, cooldown, and where
run_instant asks them (after every exit of the instant, before any signal)."""

from __future__ import annotations

from trading_bot.domain.instant import Account, ClosingCandle, run_instant
from trading_bot.domain.protections import ACTIVE, DAY_MS, HALTED, REDUCING, AccountGuard, ProtectionLimits
from trading_bot.domain.sizing import RiskLimits, position_size
from trading_bot.domain.trades import LONG, BotBook, ClosedTrade, Costs, Position
from trading_bot.domain.wallet import Wallet

DAY0 = 20_000 * DAY_MS  # a UTC midnight
M5 = 300_000


def trade(pnl: float, reason: str = "stop", exit_ts: int = DAY0, symbol: str = "BTC/USDT:USDT") -> ClosedTrade:
    return ClosedTrade(symbol, "5m", LONG, 1.0, 100.0, exit_ts - M5, exit_ts - 2 * M5, 100.0 + pnl, exit_ts, reason,
                       0.0, 0.0, pnl, pnl)


def guard(**limits: float) -> AccountGuard:
    return AccountGuard(ProtectionLimits(**limits), Wallet(1000.0, 1000.0))


def test_the_daily_loss_limit_stops_entries_for_the_rest_of_the_utc_day_only():
    g = guard(daily_loss_limit=0.03)
    book = BotBook("BTC/USDT:USDT", "5m")
    g.begin(DAY0 + 3_600_000)
    g.book(book, trade(-20.0))
    assert g.allows_entries() and g.state().state == ACTIVE
    g.book(book, trade(-10.0))  # 30 of the day's 1000: reached
    assert not g.allows_entries()
    state = g.state()
    assert state.state == REDUCING and state.reason == ("daily loss limit 3% of the day's 1000.00 reached; entries "
                                                     "resume at 00:00 UTC")
    g.book(book, trade(+50.0, "target"))  # a win later the same day does not lift it
    g.begin(DAY0 + DAY_MS - 1)
    assert not g.allows_entries()
    g.begin(DAY0 + DAY_MS)  # 00:00 UTC: a new day from the balance now
    assert g.allows_entries() and g.record.day_start_balance == 1020.0
    g.book(book, trade(-30.0))  # 30 of 1020 is under 3 %
    assert g.allows_entries()


def test_an_exit_booked_at_midnight_counts_for_the_new_day():
    g = guard(daily_loss_limit=0.03)
    book = BotBook("BTC/USDT:USDT", "5m")
    g.begin(DAY0 - M5)
    g.book(book, trade(-25.0, exit_ts=DAY0 - 2 * M5))
    g.begin(DAY0)  # the 23:55 candle closes at 00:00: its exit is the new day's
    g.book(book, trade(-25.0, exit_ts=DAY0 - M5))
    assert g.allows_entries(), "25 of the new day's 975 is under the limit"
    assert g.record.day_start_balance == 975.0


def test_the_max_drawdown_halts_until_an_operator_resumes_from_a_new_peak():
    g = guard(max_drawdown=0.10)
    book = BotBook("BTC/USDT:USDT", "5m")
    g.begin(DAY0)
    g.book(book, trade(+200.0, "target"))  # peak 1200
    g.book(book, trade(-110.0))  # 1090: 9.2 % below the peak
    assert g.allows_entries()
    g.book(book, trade(-10.0))  # 1080: 10 %
    state = g.state()
    assert state.state == HALTED and "1080.00 from a peak of 1200.00" in state.reason
    g.begin(DAY0 + 3 * DAY_MS)
    assert not g.allows_entries(), "a new day does not lift a halt"
    assert g.resume() == state.reason
    assert g.allows_entries() and g.record.peak_balance == 1080.0
    g.book(book, trade(-100.0))  # 980: 9.3 % below the new peak
    assert g.allows_entries()


def test_the_cooldown_follows_n_stopouts_in_a_row_for_m_candles_of_the_bot():
    g = guard(cooldown_stopouts=2, cooldown_candles=3)
    book = BotBook("BTC/USDT:USDT", "5m")
    t = DAY0 + 10 * M5
    g.book(book, trade(-1.0, exit_ts=t))
    g.book(book, trade(+1.0, "target", exit_ts=t + M5))  # a target ends the streak
    g.book(book, trade(-1.0, exit_ts=t + 2 * M5))
    assert book.cooldown_until_ts is None and book.stop_streak == 1
    g.book(book, trade(-1.0, exit_ts=t + 3 * M5))
    assert book.cooldown_until_ts == t + 6 * M5 and book.stop_streak == 0
    stopped = t + 3 * M5
    assert [g.cooling_down(book, stopped + i * M5) for i in range(5)] == [True, True, True, False, False]
    gate = g.entry_gate(book, stopped, lambda: True)
    assert gate() is False and g.refused == {"cooldown": 1}
    assert g.entry_gate(book, stopped + 3 * M5, lambda: True)()
    other = BotBook("BTC/USDT:USDT", "1h")
    assert not g.cooling_down(other, stopped), "per bot"


def test_everything_off_by_default_changes_nothing():
    g = guard()
    book = BotBook("BTC/USDT:USDT", "5m")
    g.begin(DAY0)
    for _ in range(20):
        g.book(book, trade(-45.0))
    assert g.allows_entries() and book.cooldown_until_ts is None and g.wallet.balance == 100.0


def test_the_max_order_notional_caps_the_size():
    limits = RiskLimits(0.01, 5.0, 10)
    free = position_size(10_000.0, 100.0, 99.0, limits)  # 5000 USDT by leverage
    assert free * 100.0 == 5000.0
    capped = RiskLimits(0.01, 5.0, 10, max_order_notional=1200.0)
    assert position_size(10_000.0, 100.0, 99.0, capped) * 100.0 == 1200.0
    assert position_size(10_000.0, 100.0, 90.0, capped) == 10.0, "a looser cap than risk's size changes nothing"


def _holding(symbol: str, ts: int) -> BotBook:
    book = BotBook(symbol, "5m", last_candle_ts=ts - M5)
    book.position = Position(symbol, "5m", LONG, 10.0, 100.0, ts - M5, ts - 2 * M5, 98.0, 110.0, 0.0, 0.02, 5.0)
    return book


def test_a_loss_booked_at_an_instant_stops_every_bots_signal_of_that_instant():
    """Phase 1 books every exit first, so the loss of a bot listed after the signalling one still counts."""
    wallet = Wallet(1000.0, 1000.0)
    g = AccountGuard(ProtectionLimits(daily_loss_limit=0.015), wallet)
    t = DAY0 + 12 * M5
    flat = BotBook("ETH/USDT:USDT", "5m", last_candle_ts=t - 2 * M5)
    stopped = _holding("BTC/USDT:USDT", t)  # its candle falls through the stop at 98: -20 on 10 units
    closing = [ClosingCandle(flat, t - M5, 50.0, 51.0, 49.0, 1.0, 0.5, 0.01, 2.0),
               ClosingCandle(stopped, t - M5, 99.0, 99.5, 97.0, 0.0, 0.5, 0.01, 2.0)]
    booked: list[ClosedTrade] = []
    outcomes = run_instant(t, closing, [], Costs(0.0, 0.0), lambda side, e, s: 1.0, lambda: True,
                           Account(g, [flat, stopped]), booked.append)
    assert [b.exit_reason for b in booked] == ["stop"] and wallet.balance == 980.0
    assert outcomes[0].signalled is None and flat.pending is None
    assert g.refused == {"daily_loss_limit": 1}
    # The same instant without the limit: the flat bot signals.
    flat2, stopped2 = BotBook("ETH/USDT:USDT", "5m", last_candle_ts=t - 2 * M5), _holding("BTC/USDT:USDT", t)
    closing2 = [ClosingCandle(flat2, t - M5, 50.0, 51.0, 49.0, 1.0, 0.5, 0.01, 2.0),
                ClosingCandle(stopped2, t - M5, 99.0, 99.5, 97.0, 0.0, 0.5, 0.01, 2.0)]
    free = AccountGuard(ProtectionLimits(), Wallet(1000.0, 1000.0))
    run_instant(t, closing2, [], Costs(0.0, 0.0), lambda side, e, s: 1.0, lambda: True, Account(free, [flat2, stopped2]))
    assert flat2.pending is not None
