"""The intents of the orders in flight: recorded and saved before an order is sent, dropped once its
outcome is known, kept (for reconciliation to look up) while it is not.

The idea is Hummingbot's in-flight order tracking (tracking starts before the request is sent): the
bot's record of an order exists before the exchange's does, so no answer, lost or late, can leave
an order the bot knows nothing of.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

from trading_bot.domain.intents import OrderIntent
from trading_bot.exchange.exceptions import BaseError, ExchangeError, OperationFailed


@dataclass(frozen=True)
class OutcomePolicy:
    """Which failures of a send leave the intent for reconciliation and which drop it. Anything else
    (a bug, a cancellation) keeps it too, without asking for a reconciliation: the next one resolves it."""

    unknown: tuple[type[BaseException], ...]  # may have executed: kept, and a reconciliation requested
    refused: tuple[type[BaseException], ...]  # did not execute (or cannot outlive the position): dropped


# An entry whose answer is lost may have opened a position: only the exchange can say.
ENTRY_POLICY = OutcomePolicy(unknown=(OperationFailed,), refused=(ExchangeError,))


# A stop, target or close whose outcome is unknown is kept too, and the reconciliation it asks for
# (at the next heartbeat) attaches the order if it exists or places what the position lacks. A
# refusal drops it. One that executed after all is cancelled with the position (an exit cancels
# every protective order of ours on the symbol), so it cannot outlive it.
PROTECTIVE_POLICY = OutcomePolicy(unknown=(OperationFailed,), refused=(BaseError,))


class IntentLedger:
    """The bot's intents (client order id -> intent), shared with the books it saves."""

    def __init__(self, pending: dict[str, OrderIntent], persist: Callable[[], Awaitable[None]]) -> None:
        self.pending = pending
        self._persist = persist
        self.reconcile_requested = False  # an order's outcome is unknown: reconcile at the next heartbeat

    def unresolved_entry(self, symbol: str) -> bool:
        return any(i.kind == "entry" and i.symbol == symbol for i in self.pending.values())

    def forget(self, client_id: str) -> None:
        """Reconciliation resolved it (saved with the books afterwards)."""
        self.pending.pop(client_id, None)

    @asynccontextmanager
    async def in_flight(self, intent: OrderIntent, policy: OutcomePolicy) -> AsyncIterator[OrderIntent]:
        """Record the intent and save, then run the block (which sends the order and books what it
        did); when the block succeeds, or fails with a refusal, drop the intent and save; when the
        outcome is unknown, keep it and ask for a reconciliation. The failure is raised on: the
        caller says what it means. Book the order's result inside the block, so the saved state never
        lacks both the intent and what the order did."""
        self.pending[intent.client_id] = intent
        await self._persist()
        try:
            yield intent
        except policy.unknown:
            self.reconcile_requested = True
            raise
        except policy.refused:
            self.pending.pop(intent.client_id, None)
            await self._persist()
            raise
        self.pending.pop(intent.client_id, None)
        await self._persist()
