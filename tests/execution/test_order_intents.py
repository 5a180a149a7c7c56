"""Typed order intents: today's positions.json reads unchanged and is written with the same keys,
and the one in-flight helper keeps or drops an intent the way each kind of order needs."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys

import ccxt
import pytest

from conftest import subprocess_env
from trading_bot.domain.intents import OrderIntent
from trading_bot.execution.live.intent_ledger import ENTRY_POLICY, PROTECTIVE_POLICY, IntentLedger
from trading_bot.persistence.state_store import decode_state, encode_state

# positions.json as the bot has always written it: an entry in flight and a stop in flight.
TODAYS_FILE = {
    "version": 1, "mode": "live", "clock_ms": None, "saved_at": 0, "data_source": "exchange",
    "wallet": {"initial_balance": 10000.0, "balance": 10000.0, "fees_paid": 0.0, "trades": 0, "wins": 0}, "bots": {},
    "intents": {
        "tb-e-abc": {"kind": "entry", "symbol": "BTC/USDT:USDT", "timeframe": "1m", "side": -1, "qty": 0.02,
                     "signal_ts": 1_767_225_540_000, "created_ms": 1_767_225_601_000},
        "tb-s-def": {"kind": "stop", "symbol": "BTC/USDT:USDT", "timeframe": "1m", "created_ms": 1_767_225_602_000},
    },
}


def test_todays_intents_read_as_typed_intents():
    saved = decode_state(json.dumps(TODAYS_FILE).encode(), "positions.json")
    assert saved.intents == {
        "tb-e-abc": OrderIntent("tb-e-abc", "entry", "BTC/USDT:USDT", "1m", -1, 0.02, None, 1_767_225_601_000,
                                1_767_225_540_000),
        "tb-s-def": OrderIntent("tb-s-def", "stop", "BTC/USDT:USDT", "1m", None, None, None, 1_767_225_602_000),
    }
    assert saved.intents["tb-s-def"].protective and not saved.intents["tb-e-abc"].protective


def test_intents_are_written_with_todays_keys_and_read_back_the_same():
    saved = decode_state(json.dumps(TODAYS_FILE).encode(), "positions.json")
    written = json.loads(encode_state(saved, 0, "exchange"))
    for client_id, raw in TODAYS_FILE["intents"].items():
        assert {k: written["intents"][client_id][k] for k in raw} == raw, "every key today's readers use, unchanged"
    assert decode_state(encode_state(saved, 0, "exchange"), "positions.json").intents == saved.intents


def test_an_intent_of_an_unknown_kind_makes_the_state_unreadable():
    broken = json.loads(json.dumps(TODAYS_FILE))
    broken["intents"]["tb-e-abc"]["kind"] = "hedge"
    with pytest.raises(ValueError, match="unknown kind 'hedge'"):
        decode_state(json.dumps(broken).encode(), "positions.json")


@pytest.mark.slow
def test_the_typed_intents_and_the_state_store_keep_paper_mode_free_of_ccxt(tmp_path):
    code = ("import sys; import trading_bot.execution.paper, trading_bot.persistence.state_store, "
            "trading_bot.domain.intents, trading_bot.execution.live.reconcile_plan, trading_bot.execution.live.fills; "
            "print('ccxt' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=subprocess_env(tmp_path),
                         check=True, timeout=60)
    assert out.stdout.strip() == "False"


# --- the in-flight helper -------------------------------------------------------------------------


class Saves:
    """The books' persist callback: records what was saved."""

    def __init__(self, pending: dict[str, OrderIntent]) -> None:
        self.pending = pending
        self.snapshots: list[list[str]] = []

    async def __call__(self) -> None:
        self.snapshots.append(sorted(self.pending))


def ledger() -> tuple[IntentLedger, Saves]:
    pending: dict[str, OrderIntent] = {}
    saves = Saves(pending)
    return IntentLedger(pending, saves), saves


INTENT = OrderIntent("tb-e-1", "entry", "BTC/USDT:USDT", "1m", 1, 0.02, None, 0, 0)


async def test_an_intent_is_saved_before_the_order_is_sent_and_dropped_and_saved_after():
    book, saves = ledger()
    async with book.in_flight(INTENT, ENTRY_POLICY):
        assert saves.snapshots == [["tb-e-1"]], "saved before sending"
    assert book.pending == {} and saves.snapshots == [["tb-e-1"], []] and not book.reconcile_requested


@pytest.mark.parametrize("policy", [ENTRY_POLICY, PROTECTIVE_POLICY])
async def test_a_refused_order_drops_its_intent(policy):
    book, saves = ledger()
    with pytest.raises(ccxt.InsufficientFunds):
        async with book.in_flight(INTENT, policy):
            raise ccxt.InsufficientFunds("-2019")
    assert book.pending == {} and saves.snapshots[-1] == [] and not book.reconcile_requested


# A lost answer, and Binance's -1001 (ccxt raises OperationFailed, neither a NetworkError nor an ExchangeError).
UNKNOWN_OUTCOMES = [ccxt.RequestTimeout("lost"), ccxt.OperationFailed('binanceusdm {"code":-1001}')]


@pytest.mark.parametrize("failure", UNKNOWN_OUTCOMES, ids=["timeout", "-1001"])
@pytest.mark.parametrize("intent", [INTENT, OrderIntent("tb-s-1", "stop", "BTC/USDT:USDT", "1m", -1, 0.02, 99.0, 0)],
                         ids=["entry", "stop"])
async def test_an_order_whose_outcome_is_unknown_keeps_its_intent_and_asks_for_a_reconciliation(intent, failure):
    """(The reconciliation looks it up: an entry that filled becomes the bot's position, a stop or target
    found is attached, and what is not found is dropped and placed again.)"""
    book, saves = ledger()
    policy = ENTRY_POLICY if intent.kind == "entry" else PROTECTIVE_POLICY
    with pytest.raises(type(failure)):
        async with book.in_flight(intent, policy):
            raise failure
    assert list(book.pending) == [intent.client_id] and book.reconcile_requested
    assert saves.snapshots == [[intent.client_id]]


@pytest.mark.parametrize("failure", [asyncio.CancelledError, RuntimeError])
async def test_a_send_cut_short_or_a_bug_keeps_the_intent_for_the_next_reconciliation(failure):
    book, saves = ledger()
    with pytest.raises(failure):
        async with book.in_flight(INTENT, PROTECTIVE_POLICY):
            raise failure()
    assert list(book.pending) == ["tb-e-1"] and saves.snapshots == [["tb-e-1"]] and not book.reconcile_requested


def test_an_entry_in_flight_holds_back_its_symbol():
    book, _ = ledger()
    book.pending["tb-e-1"] = INTENT
    book.pending["tb-s-1"] = OrderIntent("tb-s-1", "stop", "ETH/USDT:USDT", "1m", -1, 0.02, 99.0, 0)
    assert book.unresolved_entry("BTC/USDT:USDT") and not book.unresolved_entry("ETH/USDT:USDT")
