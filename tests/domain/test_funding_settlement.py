"""Funding booked on open positions at funding moments (domain/funding_settlement.py)."""

from __future__ import annotations

import pytest

from trading_bot.domain.funding import DEFAULT_FUNDING_RATE, FundingSchedule
from trading_bot.domain.funding_settlement import FundingSettlement
from trading_bot.domain.protections import AccountGuard, ProtectionLimits
from trading_bot.domain.rules import close_position
from trading_bot.domain.trades import LONG, SHORT, BotBook, Costs, Position
from trading_bot.domain.wallet import Wallet

H8 = 8 * 3_600_000
DAY0 = 20_000 * 86_400_000


def _held(symbol: str, side: int, qty: float, price: float) -> BotBook:
    book = BotBook(symbol, "1h")
    book.position = Position(symbol, "1h", side, qty, price, DAY0, DAY0 - 3_600_000, price * 0.9, price * 1.2, 0.0,
                             0.1, 2.0)
    return book


def test_each_moment_pays_on_what_is_held_then_in_the_bots_order_and_the_first_call_only_starts():
    btc = FundingSchedule.from_records("BTC/USDT:USDT", [(DAY0 + H8 + 7, 0.0003), (DAY0 + 2 * H8 + 3, -0.0002)])
    settlement = FundingSettlement({"BTC/USDT:USDT": btc})
    wallet = Wallet(1000.0, 1000.0)
    guard = AccountGuard(ProtectionLimits(), wallet)
    long_btc, short_eth, flat = _held("BTC/USDT:USDT", LONG, 2.0, 100.0), _held("ETH/USDT:USDT", SHORT, 10.0, 10.0), \
        BotBook("SOL/USDT:USDT", "1h")
    books = [long_btc, short_eth, flat]
    assert settlement.settle(DAY0 + 60_000, books, guard) == [], "nothing was held before the first instant"
    paid = settlement.settle(DAY0 + 2 * H8 + 60_000, books, guard)
    assert [(p.symbol, p.time_ms, p.rate, p.from_history) for p in paid] == [
        ("BTC/USDT:USDT", DAY0 + H8, 0.0003, True), ("ETH/USDT:USDT", DAY0 + H8, DEFAULT_FUNDING_RATE, False),
        ("BTC/USDT:USDT", DAY0 + 2 * H8, -0.0002, True), ("ETH/USDT:USDT", DAY0 + 2 * H8, DEFAULT_FUNDING_RATE, False)]
    assert [p.amount for p in paid] == pytest.approx([-0.06, 0.01, 0.04, 0.01])  # a long pays a positive rate
    assert long_btc.position.funding == pytest.approx(-0.02) and short_eth.position.funding == pytest.approx(0.02)
    assert wallet.funding == pytest.approx(0.0) and wallet.balance == pytest.approx(1000.0)
    assert settlement.settle(DAY0 + 2 * H8 + 60_000, books, guard) == [], "each moment once"
    trade = close_position(long_btc.position, "target", 120.0, DAY0 + 3 * H8, Costs(0.0, 0.0))
    assert trade.funding == pytest.approx(-0.02) and trade.pnl == pytest.approx(40.0), "funding apart from PnL"


def test_funding_counts_for_the_account_limits():
    wallet = Wallet(1000.0, 1000.0)
    guard = AccountGuard(ProtectionLimits(max_drawdown=0.01), wallet)
    settlement = FundingSettlement({"BTC/USDT:USDT": FundingSchedule.from_records("BTC/USDT:USDT", [(DAY0 + H8, 0.05)])},
                                   settled_ms=DAY0)
    settlement.settle(DAY0 + H8, [_held("BTC/USDT:USDT", LONG, 2.0, 100.0)], guard)
    assert wallet.balance == pytest.approx(990.0) and "max drawdown" in guard.state().reason


def test_the_next_moment_for_the_backtest_scheduler():
    four_hourly = FundingSchedule.from_records("ETH/USDT:USDT", [(DAY0 + k * H8 // 2, 0.0001) for k in range(6)])
    settlement = FundingSettlement({"ETH/USDT:USDT": four_hourly})
    assert settlement.next_moment(DAY0 + 1, ["BTC/USDT:USDT"]) == DAY0 + H8
    assert settlement.next_moment(DAY0 + 1, ["BTC/USDT:USDT", "ETH/USDT:USDT"]) == DAY0 + H8 // 2
