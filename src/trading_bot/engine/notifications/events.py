"""What the daemon tells people, as one-line texts: each event's kind, its text and its fields (the
webhook's JSON carries all three; Telegram shows the text).

Built from the books' own objects on the loop, synchronously: a producer never awaits anything.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from trading_bot.domain.formatting import format_ms, format_price
from trading_bot.domain.protections import TradingState
from trading_bot.domain.trades import SIDE_NAMES, ClosedTrade, Position

STARTED = "started"
STOPPED = "stopped"
OPENED = "trade_opened"
CLOSED = "trade_closed"
STATE_CHANGED = "trading_state"
RECONCILE_PROBLEM = "reconciliation_problem"
UNPROTECTED = "unprotected_position"
DAILY_SUMMARY = "daily_summary"
REPLY = "reply"  # an answer to a chat command: Telegram only, to the chat that asked


@dataclass(frozen=True)
class Event:
    kind: str
    text: str
    fields: dict[str, Any] = field(default_factory=dict)
    chat_id: int | None = None  # a reply goes to this chat only; None: to every allow-listed chat


def started(mode: str, bots: int, equity: float, state: TradingState) -> Event:
    return Event(STARTED, f"trading-bot started: {mode}, {bots} bots, equity {equity:.2f} USDT, "
                          f"trading {state.describe()}",
                 {"mode": mode, "bots": bots, "equity": equity, "trading_state": state.state})


def stopped(mode: str, heartbeats: int, open_positions: int, balance: float) -> Event:
    return Event(STOPPED, f"trading-bot stopped: {mode}, {heartbeats} heartbeats, {open_positions} open "
                          f"position(s), balance {balance:.2f} USDT",
                 {"mode": mode, "heartbeats": heartbeats, "open_positions": open_positions, "balance": balance})


def opened(p: Position) -> Event:
    side = SIDE_NAMES[p.side]
    return Event(OPENED, f"opened {side} {p.symbol} {p.timeframe} @ {format_price(p.entry_price)} qty={p.qty:.6g} "
                         f"stop={format_price(p.stop)} target={format_price(p.target)}",
                 {"symbol": p.symbol, "timeframe": p.timeframe, "side": side, "price": p.entry_price, "qty": p.qty,
                  "stop": p.stop, "target": p.target})


def closed(t: ClosedTrade, balance: float) -> Event:
    side = SIDE_NAMES[t.side]
    return Event(CLOSED, f"closed {side} {t.symbol} {t.timeframe} at {t.exit_reason} @ {format_price(t.exit_price)} "
                         f"pnl={t.pnl:+.2f} balance={balance:.2f}",
                 {"symbol": t.symbol, "timeframe": t.timeframe, "side": side, "price": t.exit_price,
                  "entry_price": t.entry_price, "reason": t.exit_reason, "pnl": t.pnl, "balance": balance})


def state_changed(old: TradingState, new: TradingState) -> Event:
    return Event(STATE_CHANGED, f"trading state: {old.describe()} → {new.describe()}",
                 {"from": old.state, "to": new.state, "reason": new.reason})


def reconcile_problem(problems: str) -> Event:
    return Event(RECONCILE_PROBLEM, f"reconciliation problem, new entries halted: {problems}", {"problems": problems})


def unprotected(p: Position, missing: tuple[str, ...]) -> Event:
    side = SIDE_NAMES[p.side]
    return Event(UNPROTECTED, f"unprotected position: {side} {p.symbol} {p.timeframe} has no {' or '.join(missing)} "
                              "order on the exchange",
                 {"symbol": p.symbol, "timeframe": p.timeframe, "side": side, "missing": missing})


def daily_summary(day_start_ms: int, trades: int, wins: int, pnl: float, equity: float, open_positions: int) -> Event:
    return Event(DAILY_SUMMARY, f"daily summary since {format_ms(day_start_ms)} UTC: {trades} trade(s) closed "
                                f"({wins} won), pnl {pnl:+.2f}, equity {equity:.2f} USDT, {open_positions} open",
                 {"since_ms": day_start_ms, "trades": trades, "wins": wins, "pnl": pnl, "equity": equity,
                  "open_positions": open_positions})


def reply(chat_id: int, text: str) -> Event:
    return Event(REPLY, text, chat_id=chat_id)
