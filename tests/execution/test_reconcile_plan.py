"""The reconciliation plan, decided by a pure function from the local books and one exchange
snapshot (no fake exchange: plain dicts as ccxt would answer), the gathering of that snapshot, and
carrying a plan out against a stand-in broker."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from trading_bot.domain.intents import OrderIntent
from trading_bot.domain.params import StrategyParams
from trading_bot.domain.trades import LONG, SHORT, BotBook, ClosedTrade, Position
from trading_bot.domain.wallet import bot_id
from trading_bot.execution.live.fills import ExchangePosition
from trading_bot.execution.live.protection import Protected
from trading_bot.execution.live.reconcile import carry_out, finish, gather_snapshot
from trading_bot.execution.live.reconcile_plan import (
    Adopt,
    AttachProtection,
    BookExit,
    BookOpenedAndClosed,
    CancelOrphan,
    DropIntent,
    ExchangeSnapshot,
    Halt,
    LeaveAlone,
    Protect,
    ReconcilePlan,
    ReconcileReport,
    TakeOverEntry,
    plan_reconciliation,
    settles_at,
    symbols_to_check,
)

BTC, ETH = "BTC/USDT:USDT", "ETH/USDT:USDT"
PARAMS = StrategyParams(weights=(0.2,) * 5, threshold=0.1, sl_pct=0.01, rr_ratio=2.0)
NOW = 1_767_225_600_000


def position(symbol: str = BTC, timeframe: str = "1m", side: int = LONG, qty: float = 0.02, **orders: str) -> Position:
    return Position(symbol=symbol, timeframe=timeframe, side=side, qty=qty, entry_price=100.0, entry_ts=NOW - 60_000,
                    signal_ts=NOW - 120_000, stop=99.0, target=102.0, entry_fee=0.0, sl_pct=0.01, rr_ratio=2.0,
                    orders={"entry": "e1", "opened_ms": str(NOW - 60_000), **orders})


def books(*positions: Position, keys: tuple[tuple[str, str], ...] = ((BTC, "1m"),)) -> dict[str, BotBook]:
    out = {bot_id(s, tf): BotBook(s, tf) for s, tf in keys}
    for p in positions:
        out.setdefault(bot_id(p.symbol, p.timeframe), BotBook(p.symbol, p.timeframe)).position = p
    return out


def trigger(order_id: str, client_id: str) -> dict[str, Any]:
    return {"id": order_id, "clientOrderId": client_id, "info": {"clientAlgoId": client_id}}


def held(symbol: str = BTC, side: int = LONG, contracts: float = 0.02, entry: float = 100.0) -> ExchangePosition:
    return ExchangePosition(symbol, side, contracts, entry)


def entry_intent(client_id: str = "tb-e-1", symbol: str = BTC, side: int = LONG) -> OrderIntent:
    return OrderIntent(client_id, "entry", symbol, "1m", side, 0.02, None, NOW - 90_000, NOW - 120_000)


def plan(local: dict[str, BotBook], *, intents: dict[str, OrderIntent] | None = None,
         open_triggers: dict[str, list[dict[str, Any]]] | None = None,
         positions: dict[str, ExchangePosition] | None = None, lookups: dict[str, dict[str, Any] | None] | None = None,
         traded: tuple[tuple[str, str], ...] = ((BTC, "1m"),), adopt_unknown: bool = True) -> ReconcilePlan:
    snapshot = ExchangeSnapshot(open_triggers or {BTC: []}, positions or {}, lookups or {})
    return plan_reconciliation(local, intents or {}, list(traded), snapshot, params_for=lambda s, tf: PARAMS,
                               adopt_unknown=adopt_unknown, round_price=lambda s, p: round(p, 1), now_ms=NOW)


PROTECTED = {"stop": "s1", "target": "t1"}
ITS_TRIGGERS = {BTC: [trigger("s1", "tb-s-1"), trigger("t1", "tb-t-1")]}


# --- one test per action kind ------------------------------------------------------------------


def test_books_that_match_the_exchange_need_nothing():
    assert plan(books(position(**PROTECTED)), open_triggers=ITS_TRIGGERS, positions={BTC: held()}).actions == ()


def test_an_intent_not_on_the_exchange_is_dropped():
    intent = entry_intent()
    assert plan(books(), intents={intent.client_id: intent}, lookups={intent.client_id: None}).actions == (
        DropIntent(intent, "not on the exchange: dropped"),)


def test_a_filled_entry_whose_position_is_open_is_taken_over_and_protected():
    intent = entry_intent()
    found = {"id": "e9", "clientOrderId": intent.client_id, "timestamp": NOW - 80_000, "average": 100.5, "filled": 0.02}
    result = plan(books(), intents={intent.client_id: intent}, positions={BTC: held(entry=100.5)},
                  lookups={intent.client_id: found})
    take_over, protect = result.actions
    assert isinstance(take_over, TakeOverEntry) and take_over.intent == intent
    taken = take_over.position
    assert (taken.side, taken.qty, taken.entry_price, taken.entry_ts) == (LONG, 0.02, 100.5, NOW - 80_000)
    assert taken.orders == {"entry": "e9", "entry_client": intent.client_id, "opened_ms": str(NOW - 80_000)}
    assert taken.signal_ts == intent.signal_ts and (taken.stop, taken.target) == (99.5, 102.5)
    assert protect == Protect(BTC, "1m", ("stop", "target"))


def test_an_entry_opened_and_closed_while_the_bot_was_down_is_booked_not_adopted_nor_checked():
    intent = entry_intent(side=SHORT)
    found = {"id": "e9", "clientOrderId": intent.client_id, "timestamp": NOW - 80_000, "average": 100.5, "filled": 0.02}
    [booked] = plan(books(), intents={intent.client_id: intent}, lookups={intent.client_id: found}).actions
    assert isinstance(booked, BookOpenedAndClosed)
    assert (booked.position.side, booked.position.qty, booked.position.entry_price) == (SHORT, 0.02, 100.5)


def test_a_found_entry_whose_book_already_holds_a_position_is_only_dropped():
    intent = entry_intent()
    found = {"id": "e9", "status": "closed", "filled": 0.02}
    result = plan(books(position(**PROTECTED)), intents={intent.client_id: intent}, open_triggers=ITS_TRIGGERS,
                  positions={BTC: held()}, lookups={intent.client_id: found})
    assert result.actions == (DropIntent(intent, "found on the exchange"),)


def test_a_stop_placed_before_a_crash_is_attached_so_it_is_neither_placed_again_nor_cancelled():
    intent = OrderIntent("tb-s-2", "stop", BTC, "1m", SHORT, 0.02, 99.0, NOW - 5_000)
    local = books(position(target="t1"))
    triggers = {BTC: [trigger("s2", "tb-s-2"), trigger("t1", "tb-t-1")]}
    result = plan(local, intents={"tb-s-2": intent}, open_triggers=triggers, positions={BTC: held()},
                  lookups={"tb-s-2": {"id": "s2", "status": "open"}})
    assert result.actions == (AttachProtection(intent, "stop", "s2"),)
    assert "stop" not in local[bot_id(BTC, "1m")].position.orders, "planning changes nothing"


def test_a_protective_intent_found_but_no_longer_open_is_dropped_with_its_status():
    intent = OrderIntent("tb-t-2", "target", BTC, "1m", SHORT, 0.02, 102.0, NOW - 5_000)
    result = plan(books(), intents={"tb-t-2": intent}, lookups={"tb-t-2": {"id": "t2", "status": "canceled"}})
    assert result.actions == (DropIntent(intent, "found (canceled)"),)


def test_a_position_the_exchange_no_longer_holds_has_its_exit_booked():
    assert plan(books(position(**PROTECTED)), open_triggers={BTC: [trigger("t1", "tb-t-1")]}).actions == (
        BookExit(BTC, "1m"), CancelOrphan(BTC, "t1"))


def test_a_position_held_on_the_other_side_is_booked_and_the_exchange_one_adopted():
    result = plan(books(position(**PROTECTED)), open_triggers={BTC: []}, positions={BTC: held(side=SHORT)})
    booked, adopted, protect = result.actions
    assert booked == BookExit(BTC, "1m")
    assert isinstance(adopted, Adopt) and adopted.position.side == SHORT
    assert protect == Protect(BTC, "1m", ("stop", "target"), " for the adopted position")


def test_a_position_size_mismatch_halts_and_still_places_what_is_missing():
    result = plan(books(position(stop="s1")), open_triggers={BTC: [trigger("s1", "tb-s-1")]},
                  positions={BTC: held(contracts=0.03)})
    assert result.actions == (Halt(f"{BTC}: the exchange holds 0.03, the bot 0.02"), Protect(BTC, "1m", ("target",)))


def test_a_stop_missing_on_the_exchange_is_placed_again():
    result = plan(books(position(**PROTECTED)), open_triggers={BTC: [trigger("t1", "tb-t-1")]}, positions={BTC: held()})
    assert result.actions == (Protect(BTC, "1m", ("stop",)),)


def test_an_unknown_exchange_position_is_adopted_by_the_symbols_first_bot_and_protected():
    traded = ((BTC, "5m"), (BTC, "1m"))
    result = plan(books(keys=traded), positions={BTC: held(side=SHORT, contracts=0.01, entry=200.0)}, traded=traded)
    adopted, protect = result.actions
    assert isinstance(adopted, Adopt)
    assert (adopted.position.timeframe, adopted.position.side, adopted.position.qty) == ("5m", SHORT, 0.01)
    assert adopted.position.entry_ts == NOW and adopted.position.orders == {"opened_ms": str(NOW)}
    assert (adopted.position.stop, adopted.position.target) == (202.0, 196.0)
    assert protect == Protect(BTC, "5m", ("stop", "target"), " for the adopted position")


def test_with_adoption_off_an_unknown_position_is_left_alone():
    result = plan(books(), positions={BTC: held(side=SHORT, contracts=0.01)}, adopt_unknown=False)
    assert result.actions == (LeaveAlone(held(side=SHORT, contracts=0.01)),)


def test_orphan_protective_orders_of_ours_are_cancelled_others_and_referenced_ones_kept():
    triggers = {BTC: [trigger("s1", "tb-s-1"), trigger("t1", "tb-t-1"), trigger("o1", "tb-s-old"),
                      trigger("m1", "manual-stop")], ETH: [trigger("o2", "tb-t-old")]}
    result = plan(books(position(**PROTECTED)), open_triggers=triggers, positions={BTC: held()})
    assert result.actions == (CancelOrphan(BTC, "o1"), CancelOrphan(ETH, "o2"))


# --- ordering subtleties --------------------------------------------------------------------------


def test_intents_are_resolved_first_then_positions_checked_then_unknown_ones_adopted_then_orphans_cancelled():
    intent = entry_intent(symbol=ETH)
    traded = ((BTC, "1m"), (ETH, "1m"))
    result = plan(books(position(symbol=BTC, stop="s1"), keys=traded), intents={intent.client_id: intent},
                  open_triggers={BTC: [trigger("s1", "tb-s-1"), trigger("x", "tb-t-x")], ETH: []},
                  positions={ETH: held(symbol=ETH)}, lookups={intent.client_id: None}, traded=traded)
    assert [type(a) for a in result.actions] == [DropIntent, BookExit, Adopt, Protect, CancelOrphan, CancelOrphan]
    assert result.of(CancelOrphan) == [CancelOrphan(BTC, "s1"), CancelOrphan(BTC, "x")], "the booked position's too"


def test_a_position_kept_by_the_checks_is_never_adopted_even_if_protecting_it_will_close_it():
    """Protecting a kept position may find the price past its stop and close it at market (only
    carrying the plan out tells): the exchange position is then gone, and must not be adopted."""
    result = plan(books(position(target="t1")), open_triggers={BTC: [trigger("t1", "tb-t-1")]}, positions={BTC: held()})
    assert result.of(Adopt) == [] and result.actions == (Protect(BTC, "1m", ("stop",)),)


def test_a_symbol_taken_out_of_the_settings_keeps_its_position_its_orders_and_is_never_adopted():
    kept = position(symbol=ETH, **PROTECTED)
    local = books(kept)  # ETH's book was saved by a bot not running this time
    assert symbols_to_check([BTC], [kept], []) == [BTC, ETH]
    result = plan(local, open_triggers={BTC: [], ETH: [trigger("s1", "tb-s-1"), trigger("t1", "tb-t-1")]},
                  positions={ETH: held(symbol=ETH)})
    assert result.actions == ()
    # An exchange position on a symbol no bot trades is neither adopted nor reported.
    assert plan(books(), open_triggers={BTC: [], ETH: []}, positions={ETH: held(symbol=ETH)}).actions == ()


def test_symbols_of_intents_are_checked_too():
    intent = OrderIntent("tb-s-3", "stop", ETH, "1m", SHORT, 0.02, 99.0, NOW)
    assert symbols_to_check([BTC], [], [intent, replace(intent, symbol="")]) == [BTC, ETH]


def test_the_intents_settle_once_the_newest_ones_recv_window_has_passed():
    intents = [entry_intent("tb-e-1"), replace(entry_intent("tb-e-2"), created_ms=NOW)]
    assert settles_at(intents, 5_000) == NOW + 5_000 + 1_000


# --- gathering the snapshot -----------------------------------------------------------------------


class Exchange:
    """Answers like the order gateway and records the order of the questions."""

    recv_window_ms = 5_000

    def __init__(self, log: list[str]) -> None:
        self.log = log

    async def open_triggers(self, symbol: str) -> list[dict[str, Any]]:
        self.log.append(f"open_triggers {symbol}")
        return [trigger("s1", "tb-s-1")] if symbol == BTC else []

    async def positions(self, symbols: list[str]) -> dict[str, ExchangePosition]:
        self.log.append(f"positions {','.join(symbols)}")
        return {BTC: held()}

    async def lookup(self, symbol: str, client_id: str, trigger: bool) -> dict[str, Any] | None:
        self.log.append(f"lookup {client_id}{' trigger' if trigger else ''}")
        return {"id": "9"} if client_id == "tb-e-1" else None


async def gather(intents: dict[str, OrderIntent], now: int) -> tuple[ExchangeSnapshot, list[str]]:
    log: list[str] = []

    async def sleep_until(wake: int) -> None:
        log.append(f"sleep until {wake}")

    snapshot = await gather_snapshot(Exchange(log), intents, [BTC, ETH], lambda: now, sleep_until)
    return snapshot, log


async def test_orders_are_fetched_before_positions_and_intents_looked_up_last():
    stop = OrderIntent("tb-s-1", "stop", BTC, "1m", SHORT, 0.02, 99.0, NOW - 60_000)
    intents = {"tb-e-1": entry_intent(), "tb-s-1": stop}
    snapshot, log = await gather(intents, NOW)
    assert log == [f"open_triggers {BTC}", f"open_triggers {ETH}", f"positions {BTC},{ETH}", "lookup tb-e-1",
                   "lookup tb-s-1 trigger"]
    assert snapshot.lookups == {"tb-e-1": {"id": "9"}, "tb-s-1": None} and snapshot.positions == {BTC: held()}
    assert snapshot.open_triggers == {BTC: [trigger("s1", "tb-s-1")], ETH: []}


async def test_intents_wait_for_their_recv_window_to_settle_before_anything_is_asked():
    sent_just_now = replace(entry_intent(), created_ms=NOW - 1_000)
    _, log = await gather({"tb-e-1": sent_just_now}, NOW)
    assert log[0] == f"sleep until {NOW - 1_000 + 5_000 + 1_000}" and log[1].startswith("open_triggers")
    _, settled = await gather({"tb-e-1": replace(sent_just_now, created_ms=NOW - 10_000)}, NOW)
    _, without_intents = await gather({}, NOW)
    assert not any(line.startswith("sleep") for line in settled + without_intents)


# --- carrying the plan out ------------------------------------------------------------------------


class Ledger:
    def __init__(self, intents: dict[str, OrderIntent]) -> None:
        self.pending = intents

    def forget(self, client_id: str) -> None:
        self.pending.pop(client_id, None)


class Exits:
    def __init__(self, broker: Broker) -> None:
        self.broker = broker

    async def book_and_close(self, book: BotBook) -> ClosedTrade:
        assert book.position is not None
        trade = a_trade(book.position)
        self.broker.done.append(f"book {book.symbol} {book.timeframe}")
        book.position = None
        return trade


class Protection:
    def __init__(self, broker: Broker, outcome: Protected) -> None:
        self.broker, self.outcome = broker, outcome

    async def protect(self, book: BotBook, position: Position, kinds: tuple[str, ...], *,
                      close_if_stop_refused: bool) -> Protected:
        assert not close_if_stop_refused, "reconciliation reports a refused stop, it does not close"
        self.broker.done.append(f"protect {position.symbol} {'+'.join(kinds)}")
        if self.outcome.trade is not None:
            book.position = None
        return self.outcome

    @staticmethod
    def attach(position: Position, kind: str, order_id: str) -> None:
        position.orders[kind] = order_id


class Orders:
    def __init__(self, broker: Broker) -> None:
        self.broker = broker

    async def cancel_trigger(self, symbol: str, order_id: str) -> bool:
        self.broker.done.append(f"cancel {order_id}")
        return order_id != "gone"


class Broker:
    """The public parts of the live broker that carrying out a plan uses."""

    def __init__(self, local: dict[str, BotBook], intents: dict[str, OrderIntent],
                 protected: Protected | None = None) -> None:
        self.books = local
        self.intents = intents
        self.done: list[str] = []
        self.ledger = Ledger(intents)
        self.exits = Exits(self)
        self.protection = Protection(self, protected or Protected(placed=["stop", "target"]))
        self.orders = Orders(self)
        self.halted: str | None = "stale"
        self.reconcile_requested = True

    def book(self, symbol: str, timeframe: str) -> BotBook:
        return self.books[bot_id(symbol, timeframe)]

    def take_over(self, position: Position) -> BotBook:
        book = self.book(position.symbol, position.timeframe)
        book.position = position
        return book

    def open_positions(self) -> list[Position]:
        return [b.position for b in self.books.values() if b.position is not None]

    async def refresh_balance(self) -> None:
        self.done.append("refresh balance")

    async def persist(self) -> None:
        self.done.append("persist")


def a_trade(p: Position) -> ClosedTrade:
    return ClosedTrade(symbol=p.symbol, timeframe=p.timeframe, side=p.side, qty=p.qty, entry_price=p.entry_price,
                       entry_ts=p.entry_ts, signal_ts=p.signal_ts, exit_price=99.0, exit_ts=NOW, exit_reason="stop",
                       entry_fee=0.0, exit_fee=0.0, gross_pnl=-0.02, pnl=-0.02)


async def run(broker: Broker, the_plan: ReconcilePlan) -> ReconcileReport:
    report = await carry_out(broker, the_plan)  # (duck-typed: a stand-in for the LiveBroker)
    await finish(broker, report)
    return report


async def test_carrying_out_resolves_intents_books_adopts_protects_and_cancels_in_plan_order():
    intent = entry_intent(symbol=BTC)
    traded = ((BTC, "1m"), (ETH, "1m"))
    local = books(position(symbol=ETH, **PROTECTED), keys=traded)
    the_plan = plan(local, intents={intent.client_id: intent}, open_triggers={BTC: [trigger("gone", "tb-s-x")], ETH: []},
                    positions={BTC: held()}, lookups={intent.client_id: None}, traded=traded)
    broker = Broker(local, {intent.client_id: intent})
    report = await run(broker, the_plan)
    assert broker.done == [f"book {ETH} 1m", f"protect {BTC} stop+target", "cancel gone", "refresh balance", "persist"]
    assert broker.intents == {} and broker.halted is None and not broker.reconcile_requested
    [adopted] = broker.open_positions()
    assert adopted.symbol == BTC and report.adopted == [f"{BTC} long 0.02 @ 100.0 by the 1m bot"]
    assert report.protection_placed == [f"{BTC} 1m stop", f"{BTC} 1m target"] and report.orphans_cancelled == []
    assert report.lines() == [
        f"  intents resolved: {intent.client_id} entry {BTC}: not on the exchange: dropped",
        f"  exits booked: {ETH} 1m stop pnl=-0.02",
        f"  positions adopted: {BTC} long 0.02 @ 100.0 by the 1m bot",
        f"  protective orders placed: {BTC} 1m stop; {BTC} 1m target",
    ]


async def test_a_stop_refused_while_carrying_out_halts_and_a_crossed_one_that_cannot_close_is_a_problem():
    local = books(position(**PROTECTED))
    the_plan = plan(local, open_triggers={BTC: []}, positions={BTC: held(contracts=0.03)})
    outcome = Protected(refused=["stop"], crossed="target", closed_at_market=True)
    broker = Broker(local, {}, outcome)
    report = await run(broker, the_plan)
    assert report.problems == [f"{BTC}: the exchange holds 0.03, the bot 0.02", f"{BTC}: the exchange refused the stop order",
                               f"{BTC}: past its target, and closing it at market failed"]
    assert broker.halted == "; ".join(report.problems) and "refresh balance" not in broker.done


async def test_a_position_closed_at_market_while_protecting_it_is_booked_and_not_adopted():
    local = books(position(target="t1"))
    the_plan = plan(local, open_triggers={BTC: [trigger("t1", "tb-t-1")]}, positions={BTC: held()})
    trade = a_trade(position())
    broker = Broker(local, {}, Protected(crossed="stop", closed_at_market=True, trade=trade))
    report = await run(broker, the_plan)
    assert report.exits_booked == [trade] and report.adopted == [] and broker.open_positions() == []
    assert broker.done == [f"protect {BTC} stop", "refresh balance", "persist"]


async def test_an_attached_stop_becomes_the_positions_and_a_booked_round_trip_is_reported():
    stop = OrderIntent("tb-s-2", "stop", BTC, "1m", SHORT, 0.02, 99.0, NOW - 5_000)
    opened = entry_intent("tb-e-2", symbol=ETH)
    traded = ((BTC, "1m"), (ETH, "1m"))
    local = books(position(target="t1"), keys=traded)
    intents = {"tb-s-2": stop, "tb-e-2": opened}
    the_plan = plan(local, intents=intents, open_triggers={BTC: [trigger("s2", "tb-s-2"), trigger("t1", "tb-t-1")]},
                    positions={BTC: held()}, traded=traded,
                    lookups={"tb-s-2": {"id": "s2", "status": "open"}, "tb-e-2": {"id": "e5", "filled": 0.01}})
    broker = Broker(local, dict(intents))
    report = await run(broker, the_plan)
    assert local[bot_id(BTC, "1m")].position.orders["stop"] == "s2"
    assert [t.symbol for t in report.exits_booked] == [ETH] and broker.intents == {}
    assert report.intents_resolved == [f"tb-s-2 stop {BTC}: placed before a crash: attached to the position",
                                       f"tb-e-2 entry {ETH}: opened and closed while the bot was down: trade booked"]


def test_the_plan_renders_nothing_when_nothing_was_done():
    assert ReconcileReport().lines() == []


@pytest.mark.parametrize("kinds", [("stop",), ("target",), ("stop", "target")])
def test_protect_actions_name_only_what_is_missing(kinds):
    present = {k: v for k, v in PROTECTED.items() if k not in kinds}
    triggers = {BTC: [trigger(v, f"tb-{k[0]}-1") for k, v in present.items()]}
    result = plan(books(position(**present)), open_triggers=triggers, positions={BTC: held()})
    assert result.actions == (Protect(BTC, "1m", kinds),)


def test_the_plan_is_pure_it_changes_no_book():
    local = books(position(**PROTECTED))
    before = {key: replace(book.position, orders=dict(book.position.orders)) for key, book in local.items() if book.position}
    plan(local, open_triggers={BTC: []})
    assert {key: book.position for key, book in local.items() if book.position} == before
