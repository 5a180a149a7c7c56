"""Entries: a market order as soon as the signal candle closes, sized as the paper broker sizes it,
its intent saved before it is sent. An entry whose outcome stays unknown keeps its intent: the
symbol waits until reconciliation has looked it up."""

from __future__ import annotations

import logging
from collections.abc import Callable

from trading_bot.domain.intents import OrderIntent
from trading_bot.domain.params import StrategyParams
from trading_bot.domain.rules import protective_levels
from trading_bot.domain.sizing import RiskLimits, position_size
from trading_bot.domain.trades import SIDE_NAMES, BotBook, Costs, Position
from trading_bot.domain.wallet import Wallet
from trading_bot.exchange.exceptions import ExchangeError, OperationFailed
from trading_bot.execution.latency import LatencyStats
from trading_bot.execution.live.fills import position_from_entry
from trading_bot.execution.live.gateway import OrderGateway
from trading_bot.execution.live.intent_ledger import ENTRY_POLICY, IntentLedger
from trading_bot.execution.live.orders import ORDER_SIDE, new_client_id

log = logging.getLogger(__name__)


class EntryOrders:
    def __init__(self, orders: OrderGateway, ledger: IntentLedger, wallet: Wallet, costs: Costs, limits: RiskLimits,
                 latency: LatencyStats, now_ms: Callable[[], int]) -> None:
        self.orders = orders
        self.ledger = ledger
        self.wallet = wallet
        self.costs = costs
        self.limits = limits
        self.latency = latency
        self.now_ms = now_ms

    def quantity(self, symbol: str, side: int, price: float, sl_pct: float, rr_ratio: float) -> float:
        """The position size at the symbol's step; 0.0 if that is below the exchange's minimum."""
        stop, _ = protective_levels(side, price, sl_pct, rr_ratio)
        raw = position_size(self.wallet.balance, price, stop, self.limits)
        qty = self.orders.round_amount(symbol, raw)
        min_qty, min_cost = self.orders.minimums(symbol)
        if qty <= 0 or qty < min_qty or qty * price < min_cost:
            log.info("%s: order of %.8g (≈%.2f USDT, %.8g before rounding) is below the exchange minimum "
                     "(qty %s, notional %s): skipped", symbol, qty, qty * price, raw, min_qty, min_cost)
            return 0.0
        return qty

    async def enter(self, book: BotBook, side: int, last_close: float, fill_candle_ts: int,
                    params: StrategyParams) -> Position | None:
        """Send the entry and put the position it opened in the book; None if nothing was opened
        (too small, refused, or its outcome is not known yet)."""
        symbol = book.symbol
        qty = self.quantity(symbol, side, last_close, params.sl_pct, params.rr_ratio)
        if qty <= 0:
            return None
        intent = OrderIntent(new_client_id("e"), "entry", symbol, book.timeframe, side, qty, None, self.now_ms(),
                             book.last_candle_ts)
        try:
            async with self.ledger.in_flight(intent, ENTRY_POLICY):
                order = await self.orders.submit(symbol, "market", ORDER_SIDE[side], qty,
                                                 {"clientOrderId": intent.client_id}, intent.client_id, trigger=False)
                latency = self.now_ms() - fill_candle_ts
                self.latency.add(latency)
                book.position = position_from_entry(
                    order, symbol=symbol, timeframe=book.timeframe, side=side, qty=qty, last_close=last_close,
                    fill_candle_ts=fill_candle_ts, signal_ts=book.last_candle_ts or 0, client_id=intent.client_id,
                    fee_rate=self.costs.fee_rate, params=params, round_price=self.orders.round_price,
                    now_ms=self.now_ms())
        except OperationFailed as exc:
            # Sent, and still not found after recvWindow: most likely never executed, but only the
            # exchange can say. The intent stays; reconciliation looks it up; the symbol waits.
            log.error("%s %s: entry %s outcome unknown (%s): kept for reconciliation", symbol, book.timeframe,
                      intent.client_id, str(exc)[:160])
            return None
        except ExchangeError as exc:  # answered with an error: not executed
            log.warning("%s %s: entry refused by the exchange (%s): skipped", symbol, book.timeframe, str(exc)[:200])
            return None
        log.info("entry %s %s %s acknowledged %.0f ms after the signal candle closed", SIDE_NAMES[side], symbol,
                 book.timeframe, latency)
        return book.position
