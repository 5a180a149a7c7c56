"""What the live broker keeps of the user data stream (execution/live/account_events.py), from events in
Binance's field names: fills counted once whichever connection brought them, partial fills adding
up, a stop known only by its algo id, a protective order the exchange ended, the reconciliation's mark."""

from __future__ import annotations

from trading_bot.domain.trades import LONG, BotBook, Position
from trading_bot.execution.live.account_events import AccountEvents

BTC, BTC_ID = "BTC/USDT:USDT", "BTCUSDT"
OPENED = 1_767_225_600_000


def held_book(**orders: str) -> BotBook:
    book = BotBook(BTC, "1m")
    book.position = Position(symbol=BTC, timeframe="1m", side=LONG, qty=0.3, entry_price=100.0, entry_ts=OPENED,
                             signal_ts=OPENED, stop=99.0, target=102.0, entry_fee=0.01, sl_pct=0.01, rr_ratio=2.0,
                             orders={"entry": "1", "opened_ms": str(OPENED), **orders})
    return book


def events_for(book: BotBook, woken: list[int]) -> AccountEvents:
    return AccountEvents(lambda: [book.position] if book.position else [], lambda symbol: BTC_ID,
                         lambda: woken.append(1), lambda: OPENED + 60_000)


def trade(order_id: int, client_id: str, trade_id: int, qty: str, status: str, price: str = "99.0") -> dict:
    return {"e": "ORDER_TRADE_UPDATE", "E": OPENED, "T": OPENED, "o": {
        "s": BTC_ID, "c": client_id, "S": "SELL", "o": "MARKET", "x": "TRADE", "X": status, "i": order_id,
        "l": qty, "L": price, "n": "0.01", "N": "USDT", "T": OPENED + trade_id, "t": trade_id, "R": True, "rp": "-0.3"}}


def algo(algo_id: str, client_id: str, status: str, order_id: str = "") -> dict:
    return {"e": "ALGO_UPDATE", "E": OPENED, "T": OPENED, "o": {
        "caid": client_id, "aid": int(algo_id), "s": BTC_ID, "X": status, "ai": order_id, "o": "STOP_MARKET"}}


def test_partial_fills_add_up_and_a_fill_seen_twice_counts_once():
    book, woken = held_book(stop="7", stop_client="tb-s-1"), []
    events = events_for(book, woken)
    events.receive(trade(50, "tb-s-1", 1, "0.1", "PARTIALLY_FILLED"))
    events.receive(trade(50, "tb-s-1", 1, "0.1", "PARTIALLY_FILLED"))  # the same fill on a second connection
    assert events.exits([book]) == [] and woken == [1, 1]
    events.receive(trade(50, "tb-s-1", 2, "0.2", "FILLED", price="98.9"))
    [found] = events.exits([book])
    assert found.kind == "stop" and [f.qty for f in found.fills] == [0.1, 0.2]
    events.forget(book.position)
    assert events.exits([book]) == []


def test_a_stop_known_only_by_its_algo_id_is_found_through_its_algo_update():
    """A position whose stop was attached by reconciliation records the order's id, not its client id."""
    book, woken = held_book(stop="7"), []
    events = events_for(book, woken)
    events.receive(trade(50, "tb-s-9", 1, "0.3", "FILLED"))  # the fill comes before the ALGO_UPDATE naming it
    assert events.exits([book]) == [] and woken == []
    events.receive(algo("7", "tb-s-9", "TRIGGERED", order_id="50"))
    assert [f.kind for f in events.exits([book])] == ["stop"] and woken == [1]


def test_fills_of_others_orders_or_of_entries_are_not_kept():
    book, woken = held_book(stop="7", stop_client="tb-s-1"), []
    events = events_for(book, woken)
    events.receive(trade(51, "web_manual", 1, "0.3", "FILLED"))
    entry = trade(52, "tb-e-1", 2, "0.3", "FILLED")
    entry["o"]["R"] = False
    events.receive(entry)
    assert events.exits([book]) == [] and woken == []


def test_a_protective_order_the_exchange_rejects_asks_for_a_reconciliation_which_the_mark_settles():
    book, woken = held_book(stop="7", stop_client="tb-s-1", target="8", target_client="tb-t-1"), []
    events = events_for(book, woken)
    events.connected()  # the first connection: covered by the startup reconciliation's mark
    mark = events.mark()
    events.reconciled(mark)
    assert not events.reconcile_needed
    events.receive(algo("8", "tb-t-1", "CANCELED"))  # ours cancelling a sibling: nothing to do
    assert not events.reconcile_needed
    events.receive(algo("7", "tb-s-1", "REJECTED"))
    assert events.reconcile_needed and woken
    mark = events.mark()
    events.connected()  # a reconnect while that reconciliation runs: it does not cover this one
    events.reconciled(mark)
    assert events.reconcile_needed and not events.lost_protection
    events.reconciled(events.mark())
    assert not events.reconcile_needed


def test_a_flat_position_reported_for_a_held_symbol_contradicts_it_until_a_rest_check():
    book, woken = held_book(stop="7", stop_client="tb-s-1"), []
    events = events_for(book, woken)
    assert book.position is not None
    account = {"e": "ACCOUNT_UPDATE", "E": OPENED, "T": OPENED, "a": {"m": "ORDER", "B": [], "P": [
        {"s": BTC_ID, "pa": "0.300", "ep": "100", "ps": "BOTH"}]}}
    events.receive(account)
    assert not events.contradicted([book.position]) and woken == []
    account["a"]["P"][0]["pa"] = "0.000"
    events.receive(account)
    assert events.contradicted([book.position]) and woken == [1]
    seen = events.positions_seen()
    events.receive(account)  # one more while the REST check is in flight: its answer may predate it
    events.checked(seen)
    assert events.contradicted([book.position])
    events.checked(events.positions_seen())
    assert not events.contradicted([book.position])


def test_the_sibling_of_a_fill_expiring_is_no_loss_of_protection():
    book, woken = held_book(stop="7", stop_client="tb-s-1", target="8", target_client="tb-t-1"), []
    events = events_for(book, woken)
    events.receive(trade(60, "tb-t-1", 1, "0.3", "FILLED", price="102.1"))
    events.receive(algo("7", "tb-s-1", "EXPIRED"))
    assert not events.lost_protection and [f.kind for f in events.exits([book])] == ["target"]
