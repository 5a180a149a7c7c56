"""The one place that turns exchange data into the bot's books: an exchange position as the bot reads
it, a Position from an entry order or from an exchange position, a ClosedTrade from fills (the REST
trade list's or the user data stream's), and the stream's events as the books use them.

Pure functions of what the exchange answered (no requests, no ccxt): the gateway fetches, these build.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, NamedTuple

from trading_bot.domain.params import StrategyParams
from trading_bot.domain.rules import protective_levels
from trading_bot.domain.trades import LONG, SHORT, ClosedTrade, Position
from trading_bot.execution.live.orders import ORDER_SIDE, client_id_of

RoundPrice = Callable[[str, float], float]  # (symbol, price) -> the price at the symbol's tick size


FILLS_LEAD_MS = 60_000  # fills are read from a minute before the position opened (clocks differ)


class FillsNotVisible(Exception):
    """The exchange no longer holds the position, but its closing fills are not (all) listed yet."""


@dataclass(frozen=True)
class ExchangePosition:
    """One open position as the exchange reports it (netted per symbol)."""

    symbol: str
    side: int
    contracts: float
    entry_price: float  # 0.0 when the exchange gave none

    @property
    def signed_amount(self) -> float:
        return self.side * self.contracts


def parse_positions(raw: Iterable[dict[str, Any]]) -> dict[str, ExchangePosition]:
    """fetch_positions' answer: the symbols with a position open (ccxt lists flat ones too)."""
    held: dict[str, ExchangePosition] = {}
    for p in raw:
        contracts = float(p.get("contracts") or 0.0)
        if contracts:
            held[p["symbol"]] = ExchangePosition(p["symbol"], LONG if p.get("side") == "long" else SHORT, contracts,
                                                 float(p.get("entryPrice") or 0.0))
    return held


def _with_levels(symbol: str, side: int, entry_price: float, params: StrategyParams,
                 round_price: RoundPrice) -> tuple[float, float]:
    stop, target = protective_levels(side, entry_price, params.sl_pct, params.rr_ratio)
    return round_price(symbol, stop), round_price(symbol, target)


def position_from_entry(order: dict[str, Any], *, symbol: str, timeframe: str, side: int, qty: float,
                        last_close: float, fill_candle_ts: int, signal_ts: int, client_id: str, fee_rate: float,
                        params: StrategyParams, round_price: RoundPrice, now_ms: int) -> Position:
    """The position our acknowledged market entry opened (price, size and fee as the answer gives them)."""
    entry_price = float(order.get("average") or order.get("price") or last_close)
    filled = float(order.get("filled") or qty)
    fee = (order.get("fee") or {}).get("cost")
    entry_fee = float(fee) if fee is not None else filled * entry_price * fee_rate
    stop, target = _with_levels(symbol, side, entry_price, params, round_price)
    return Position(
        symbol=symbol, timeframe=timeframe, side=side, qty=filled, entry_price=entry_price, entry_ts=fill_candle_ts,
        signal_ts=signal_ts, stop=stop, target=target, entry_fee=entry_fee, sl_pct=params.sl_pct,
        rr_ratio=params.rr_ratio,
        orders={"entry": str(order.get("id")), "entry_client": client_id, "opened_ms": str(now_ms)},
    )


def position_from_exchange(held: ExchangePosition, timeframe: str, params: StrategyParams, order: dict[str, Any] | None,
                           signal_ts: int | None, *, round_price: RoundPrice, now_ms: int) -> Position:
    """A position built from the exchange's account of it. Its entry time comes from the entry order
    when there is one, so booking the same trade twice (a crash in between) gives the same journal key."""
    symbol = held.symbol
    entry = held.entry_price or float((order or {}).get("average") or 0.0)
    stop, target = _with_levels(symbol, held.side, entry, params, round_price)
    opened = now_ms
    orders = {"opened_ms": str(opened)}
    if order is not None:
        opened = int(order.get("timestamp") or opened)
        orders.update(entry=str(order.get("id")), entry_client=client_id_of(order), opened_ms=str(opened))
    return Position(symbol=symbol, timeframe=timeframe, side=held.side, qty=held.contracts, entry_price=entry,
                    entry_ts=opened, signal_ts=int(signal_ts or opened), stop=stop, target=target, entry_fee=0.0,
                    sl_pct=params.sl_pct, rr_ratio=params.rr_ratio, orders=orders)


def fills_since_ms(position: Position) -> int:
    """Where the position's fills start (0: it recorded no opening time; read what the exchange lists)."""
    return int(position.orders.get("opened_ms") or 0) - FILLS_LEAD_MS


def _ts(fill: dict[str, Any]) -> int:
    return int(fill.get("timestamp") or 0)


def _fee(fills: list[dict[str, Any]]) -> float:
    return sum(float((t.get("fee") or {}).get("cost") or 0.0) for t in fills)


def _exit_fills(position: Position, fills: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The entry's fills, and the exit: the first closing fills after the entry, up to the position's
    size (earlier or later trades on the same symbol are not this position's). An adopted position
    has no entry order: it was open when adopted, so nothing before that moment closed it."""
    entry_id = position.orders.get("entry")
    entry_fills = [t for t in fills if str(t.get("order")) == entry_id]
    entered_at = min((_ts(t) for t in entry_fills),
                     default=int(position.orders.get("opened_ms") or fills_since_ms(position)))
    exit_side = ORDER_SIDE[-position.side]
    exits, closed_qty = [], 0.0
    for t in sorted(fills, key=_ts):
        if closed_qty >= position.qty * (1 - 1e-9):
            break
        if t.get("side") == exit_side and str(t.get("order")) != entry_id and _ts(t) >= entered_at:
            exits.append(t)
            closed_qty += float(t["amount"])
    return entry_fills, exits


class ExitFill(NamedTuple):
    """One closing fill, whichever way it was read (the REST trade list or the user data stream)."""

    qty: float
    price: float
    fee: float
    realized: float | None  # the exchange's realised PnL of the fill (None: not given)
    time_ms: int


def _closed_trade(position: Position, exits: list[ExitFill], entry_fee: float, reason: str,
                  now_ms: int) -> ClosedTrade:
    """The closed trade from its closing fills: the exchange's realised PnL where it gives one, else
    the price move; the exit at the fills' size-weighted price and latest time."""
    qty = sum(f.qty for f in exits)
    exit_price = sum(f.qty * f.price for f in exits) / qty if qty else position.entry_price
    exit_fee = sum(f.fee for f in exits)
    realised = [f.realized for f in exits if f.realized is not None]
    gross = sum(realised) if realised else position.side * position.qty * (exit_price - position.entry_price)
    return ClosedTrade(
        symbol=position.symbol, timeframe=position.timeframe, side=position.side, qty=position.qty,
        entry_price=position.entry_price, entry_ts=position.entry_ts, signal_ts=position.signal_ts,
        exit_price=exit_price, exit_ts=max((f.time_ms for f in exits), default=now_ms), exit_reason=reason,
        entry_fee=entry_fee, exit_fee=exit_fee, gross_pnl=gross, pnl=gross - entry_fee - exit_fee,
        funding=position.funding,
    )


def _exit_fill(trade: dict[str, Any]) -> ExitFill:
    realized = trade.get("info", {}).get("realizedPnl")
    return ExitFill(float(trade["amount"]), float(trade["price"]), _fee([trade]),
                    float(realized) if realized is not None else None, _ts(trade))


def closed_trade_from_fills(position: Position, fills: list[dict[str, Any]], reason: str, *, now_ms: int,
                            require_fills: bool = False) -> ClosedTrade:
    """The closed trade, from the exchange's fills on the symbol. With require_fills, FillsNotVisible
    while the closing fills listed cover less than the position (the trade list can lag the position)."""
    entry_fills, exits = _exit_fills(position, fills)
    qty = sum(float(t["amount"]) for t in exits)
    if require_fills and qty < position.qty * (1 - 1e-9):
        raise FillsNotVisible(f"closed, but fills for only {qty:g} of {position.qty:g} are listed")
    return _closed_trade(position, [_exit_fill(t) for t in exits], _fee(entry_fills) or position.entry_fee, reason,
                         now_ms)


# --- the user data stream (Binance USDⓈ-M's raw events, field names as Binance documents them) ---


@dataclass(frozen=True)
class StreamFill:
    """One execution of an order, from an ORDER_TRADE_UPDATE of execution type TRADE."""

    symbol_id: str  # the exchange's id ("BTCUSDT"), not ccxt's symbol
    order_id: str
    client_id: str
    trade_id: str
    reduce_only: bool
    qty: float  # l: this fill's size
    price: float  # L: this fill's price
    fee: float  # n: its commission (Binance leaves n out when there is none)
    realized: float  # rp: its realised profit
    time_ms: int  # T: the trade time
    status: str  # X: the order's status after it (PARTIALLY_FILLED, FILLED, ...)

    def as_exit(self) -> ExitFill:
        return ExitFill(self.qty, self.price, self.fee, self.realized, self.time_ms)


@dataclass(frozen=True)
class AlgoUpdate:
    """An ALGO_UPDATE: a conditional order's status, and the matching-engine order it became."""

    symbol_id: str
    algo_id: str
    client_id: str
    status: str  # NEW, CANCELED, TRIGGERING, TRIGGERED, FINISHED, REJECTED, EXPIRED
    order_id: str  # ai: the order it was sent as once triggered ("" before)


@dataclass(frozen=True)
class PositionUpdate:
    """A position as an ACCOUNT_UPDATE reports it (one-way mode: the BOTH side)."""

    symbol_id: str
    amount: float  # pa: signed
    time_ms: int


StreamEvent = StreamFill | AlgoUpdate | PositionUpdate


def parse_stream_event(event: dict[str, Any]) -> list[StreamEvent]:
    """What the books use of one user data stream event: the fills, the conditional orders' fate and
    the positions it reports (nothing for the other events, or an ORDER_TRADE_UPDATE that is no fill)."""
    kind, body = event.get("e"), event.get("o")
    if kind == "ORDER_TRADE_UPDATE" and isinstance(body, dict):
        if body.get("x") != "TRADE":
            return []
        return [StreamFill(str(body["s"]), str(body["i"]), str(body.get("c") or ""), str(body.get("t") or ""),
                           bool(body.get("R")), float(body["l"]), float(body["L"]), float(body.get("n") or 0.0),
                           float(body.get("rp") or 0.0), int(body.get("T") or event.get("T") or 0), str(body.get("X")))]
    if kind == "ALGO_UPDATE" and isinstance(body, dict):
        return [AlgoUpdate(str(body["s"]), str(body["aid"]), str(body.get("caid") or ""), str(body.get("X")),
                           str(body.get("ai") or ""))]
    account = event.get("a")
    if kind == "ACCOUNT_UPDATE" and isinstance(account, dict):
        time_ms = int(event.get("T") or event.get("E") or 0)
        return [PositionUpdate(str(p["s"]), float(p["pa"]), time_ms) for p in account.get("P") or []
                if p.get("ps", "BOTH") == "BOTH"]
    return []


def closed_trade_from_stream(position: Position, fills: list[StreamFill], reason: str, *, now_ms: int) -> ClosedTrade:
    """The closed trade from the stream's fills of its stop or target (their own price, size,
    commission, realised PnL and trade time; no request)."""
    return _closed_trade(position, [f.as_exit() for f in sorted(fills, key=lambda f: f.time_ms)], position.entry_fee,
                         reason, now_ms)
