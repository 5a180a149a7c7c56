"""The one place that reads exchange data into the books: positions, and trades from fills (plain
dicts as ccxt answers them)."""

from __future__ import annotations

import pytest

from trading_bot.domain.params import StrategyParams
from trading_bot.domain.trades import LONG, SHORT, Position
from trading_bot.execution.live.fills import (
    ExchangePosition,
    FillsNotVisible,
    closed_trade_from_fills,
    fills_since_ms,
    parse_positions,
    position_from_entry,
    position_from_exchange,
)

BTC = "BTC/USDT:USDT"
PARAMS = StrategyParams(weights=(0.2,) * 5, threshold=0.1, sl_pct=0.01, rr_ratio=2.0)
OPENED = 1_767_225_600_000


def to_tick(symbol: str, price: float) -> float:
    return round(price, 1)


def test_positions_are_parsed_once_flat_ones_left_out():
    held = parse_positions([{"symbol": BTC, "side": "short", "contracts": 0.02, "entryPrice": 100.0},
                            {"symbol": "ETH/USDT:USDT", "side": "long", "contracts": 0.0, "entryPrice": 0.0}])
    assert held == {BTC: ExchangePosition(BTC, SHORT, 0.02, 100.0)} and held[BTC].signed_amount == -0.02


def test_a_position_from_the_entry_order_takes_its_price_size_and_fee():
    order = {"id": 7, "average": 100.0, "filled": 0.02, "fee": {"cost": 0.01}}
    p = position_from_entry(order, symbol=BTC, timeframe="1m", side=LONG, qty=0.03, last_close=99.0,
                            fill_candle_ts=OPENED, signal_ts=OPENED - 60_000, client_id="tb-e-1", fee_rate=0.0004,
                            params=PARAMS, round_price=to_tick, now_ms=OPENED + 5)
    assert (p.qty, p.entry_price, p.entry_fee, p.stop, p.target) == (0.02, 100.0, 0.01, 99.0, 102.0)
    assert p.orders == {"entry": "7", "entry_client": "tb-e-1", "opened_ms": str(OPENED + 5)}
    bare = position_from_entry({"id": 8}, symbol=BTC, timeframe="1m", side=SHORT, qty=0.03, last_close=99.0,
                               fill_candle_ts=OPENED, signal_ts=0, client_id="tb-e-2", fee_rate=0.0004, params=PARAMS,
                               round_price=to_tick, now_ms=OPENED)
    assert (bare.qty, bare.entry_price, bare.entry_fee) == (0.03, 99.0, pytest.approx(0.03 * 99.0 * 0.0004))


def test_a_position_from_the_exchange_keeps_its_entry_orders_time_for_the_same_journal_key():
    held = ExchangePosition(BTC, SHORT, 0.02, 0.0)
    order = {"id": 9, "clientOrderId": "tb-e-9", "timestamp": OPENED, "average": 100.0}
    p = position_from_exchange(held, "1m", PARAMS, order, None, round_price=to_tick, now_ms=OPENED + 99_000)
    assert (p.entry_price, p.entry_ts, p.signal_ts, p.stop, p.target) == (100.0, OPENED, OPENED, 101.0, 98.0)
    assert p.orders == {"opened_ms": str(OPENED), "entry": "9", "entry_client": "tb-e-9"}


def a_position(**orders: str) -> Position:
    return Position(symbol=BTC, timeframe="1m", side=LONG, qty=0.02, entry_price=100.0, entry_ts=OPENED,
                    signal_ts=OPENED - 60_000, stop=99.0, target=102.0, entry_fee=0.5, sl_pct=0.01, rr_ratio=2.0,
                    orders={"entry": "e1", "opened_ms": str(OPENED), **orders})


def fill(order: str, side: str, amount: float, price: float, ts: int, pnl: str | None = None) -> dict:
    info = {} if pnl is None else {"realizedPnl": pnl}
    return {"id": f"{order}-{ts}", "order": order, "side": side, "amount": amount, "price": price, "timestamp": ts,
            "fee": {"cost": 0.01}, "info": info}


def test_the_exit_is_the_first_closing_fills_after_the_entry_up_to_the_positions_size():
    fills = [fill("old", "sell", 0.02, 90.0, OPENED - 30_000),  # an earlier trade's exit
             fill("e1", "buy", 0.02, 100.0, OPENED + 1),
             fill("x1", "sell", 0.01, 99.0, OPENED + 60_000, "-0.01"), fill("x1", "sell", 0.01, 98.0, OPENED + 61_000, "-0.02"),
             fill("later", "sell", 0.02, 97.0, OPENED + 99_000)]  # the next position's
    trade = closed_trade_from_fills(a_position(), fills, "stop", now_ms=OPENED + 200_000)
    assert (trade.exit_price, trade.exit_ts, trade.exit_reason) == (98.5, OPENED + 61_000, "stop")
    assert trade.gross_pnl == pytest.approx(-0.03) and trade.entry_fee == 0.01 and trade.exit_fee == 0.02
    assert trade.pnl == pytest.approx(-0.03 - 0.03)


def test_an_exit_whose_fills_are_not_all_listed_waits_when_asked_to():
    fills = [fill("e1", "buy", 0.02, 100.0, OPENED + 1), fill("x1", "sell", 0.01, 99.0, OPENED + 60_000)]
    with pytest.raises(FillsNotVisible, match=r"fills for only 0\.01 of 0\.02"):
        closed_trade_from_fills(a_position(), fills, "stop", now_ms=OPENED, require_fills=True)
    partial = closed_trade_from_fills(a_position(), fills, "stop", now_ms=OPENED)
    assert partial.gross_pnl == pytest.approx(0.02 * (99.0 - 100.0)) and partial.entry_fee == 0.01
    nothing = closed_trade_from_fills(a_position(), [], "outside", now_ms=OPENED + 5)
    assert (nothing.exit_price, nothing.exit_ts, nothing.entry_fee) == (100.0, OPENED + 5, 0.5)


def test_fills_are_read_from_a_minute_before_the_position_opened():
    assert fills_since_ms(a_position()) == OPENED - 60_000
    assert fills_since_ms(Position(**{**a_position().__dict__, "orders": {}})) == -60_000
