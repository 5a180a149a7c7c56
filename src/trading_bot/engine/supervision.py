"""Supervision of the broker against the exchange: what live mode does besides trading.

`LiveSupervisor` prepares the live broker at startup (an exchange that keeps failing there, after the
retries, is a StartupError: one line, exit 2) and reconciles its books with the exchange: at
start, every RECONCILE_EVERY_S, after an outage of the exchange client, and when the broker asks
(an order's outcome is unknown; the user data stream reconnected, so the events of its gap are
lost); a reconciliation the exchange cannot complete is retried after RECONCILE_RETRY_S. At
shutdown it places whatever stop or target a position cut short still lacks, within
EXIT_DEADLINE_S of the stop request. `PaperSupervisor` is its paper counterpart: nothing to
supervise. Paper and live differ by which of the two startup builds, not by branches in the loop.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from trading_bot.engine.config_watch import ConfigWatcher
from trading_bot.engine.errors import StartupError
from trading_bot.engine.recording import Recorder
from trading_bot.exchange.errors import is_exchange_error

if TYPE_CHECKING:
    from trading_bot.exchange.client import ExchangeClient
    from trading_bot.execution.live.broker import LiveBroker

log = logging.getLogger("trading_bot")


RECONCILE_EVERY_S = 600.0


RECONCILE_RETRY_S = 30.0  # after a reconciliation the exchange could not complete


EXIT_DEADLINE_S = 4.4  # after the grace, live positions a cut-short tick left bare get until then (ccxt closes in 0.25 s)


@dataclass
class ReconcileTally:
    """What the reconciliations of this run found (the metrics show it): rounds done, rounds the exchange
    could not complete, and the problems they left for a person (a position we could not protect, …)."""

    rounds: int = 0
    failed: int = 0
    problems: int = 0  # since the start
    last_problems: int = 0  # in the last completed round: still there until a round finds none


class Supervisor(Protocol):
    @property
    def tally(self) -> ReconcileTally | None:
        """What the reconciliations found; None: nothing to reconcile against (paper)."""

    async def start(self) -> None:
        """Startup, once the parts are built: get the broker ready to trade."""

    async def reconcile_if_due(self) -> None:
        """Each heartbeat, after the broker's sync."""

    async def protect_before_exit(self, stop_requested_at: float | None) -> None:
        """Shutdown of a daemon that got ready, unless a second signal asked to stop at once."""

    async def admit(self, symbols: tuple[str, ...]) -> bool:
        """The symbol universe added these (already in the broker's keys): get them ready to trade.
        False: not now (logged); the caller takes them out again."""


class PaperSupervisor:
    """Paper and replay: the books are the truth, there is no exchange to answer to."""

    tally = None

    async def start(self) -> None:
        pass

    async def admit(self, symbols: tuple[str, ...]) -> bool:
        return True

    async def reconcile_if_due(self) -> None:
        pass

    async def protect_before_exit(self, stop_requested_at: float | None) -> None:
        pass


class LiveSupervisor:
    def __init__(self, broker: LiveBroker, client: ExchangeClient, config: ConfigWatcher, adopt_unknown: bool,
                 where: str, recorder: Recorder) -> None:
        self.broker = broker
        self.recorder = recorder  # tells of the exits reconciliation books, as of the heartbeat's
        self.client = client
        self.config = config
        self.adopt_unknown = adopt_unknown
        self.where = where  # "demo endpoints", the exchange URL or "production" (for the LIVE line)
        self._reconciled_at = 0.0  # monotonic
        self.tally = ReconcileTally()

    async def start(self) -> None:
        from trading_bot.execution.live.broker import LiveError

        try:
            await self.broker.prepare()
            log.warning("LIVE trading on %s (%s): real orders, balance %.2f USDT", self.client.exchange_id, self.where,
                        self.broker.wallet.balance)
            await self.reconcile()
        except LiveError as exc:
            raise StartupError(str(exc)) from None
        except Exception as exc:
            if not is_exchange_error(exc):
                raise
            # Each request was already retried (retry.py): the exchange keeps failing, so do not trade blind.
            reason = " ".join(str(exc).split())[:200]
            raise StartupError(f"the exchange kept failing at startup ({type(exc).__name__}: {reason}); "
                               "nothing was traded: start again once it answers") from None

    async def admit(self, symbols: tuple[str, ...]) -> bool:
        """Margin mode and leverage for the new symbols, as at startup, then a reconciliation in this
        heartbeat (the account may already hold a position or orders on them)."""
        from trading_bot.execution.live.broker import LiveError

        try:
            await self.broker.prepare_symbols(symbols)
        except LiveError as exc:
            log.error("universe: cannot trade %s: %s", ", ".join(symbols), exc)
            return False
        except Exception as exc:
            if not is_exchange_error(exc):
                raise
            log.error("universe: could not prepare %s on the exchange (%s): not added this time", ", ".join(symbols),
                      " ".join(str(exc).split())[:200])
            return False
        self._reconciled_at = time.monotonic() - RECONCILE_EVERY_S  # due now: reconcile_if_due runs later in this heartbeat
        return True

    async def reconcile(self) -> None:
        """Put the books right against the exchange."""
        from trading_bot.execution.live.reconcile import reconcile  # live only: paper never loads it

        self._reconciled_at = time.monotonic()
        self.client.outage_recovered = False
        report = await reconcile(self.broker, self.config.current(), self.adopt_unknown)
        self.tally.rounds += 1
        self.tally.problems += len(report.problems)
        self.tally.last_problems = len(report.problems)
        for trade in report.exits_booked:  # already in the journal (the broker writes it first)
            self.recorder.closed_elsewhere(trade)

    async def reconcile_if_due(self) -> None:
        if not (self.client.outage_recovered or self.broker.reconcile_requested
                or time.monotonic() - self._reconciled_at >= RECONCILE_EVERY_S):
            return
        try:
            await self.reconcile()
        except Exception as exc:
            if not is_exchange_error(exc):
                raise
            log.error("reconciliation failed (%s): trying again in %.0f s", str(exc)[:200], RECONCILE_RETRY_S)
            self.tally.failed += 1
            self._reconciled_at = time.monotonic() - RECONCILE_EVERY_S + RECONCILE_RETRY_S

    async def protect_before_exit(self, stop_requested_at: float | None) -> None:
        """A tick cut short after an entry filled and before its stop was sent would leave the position
        bare for the whole downtime: place what is missing, within the exit deadline."""
        since = time.monotonic() - (stop_requested_at or time.monotonic())
        budget = max(0.3, EXIT_DEADLINE_S - since)
        try:
            await asyncio.wait_for(self.broker.protect_unprotected(), budget)
        except TimeoutError:
            log.critical("exiting with a position whose stop or target could not be placed in time: the next start "
                         "places it")
        except Exception as exc:
            if not is_exchange_error(exc):
                raise
            log.critical("exiting with a position whose stop or target could not be placed (%s): the next start "
                         "places it", str(exc)[:200])
