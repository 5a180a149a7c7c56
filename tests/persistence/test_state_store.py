"""The state store under concurrency: parallel bots save and journal at the same moment."""

from __future__ import annotations

import asyncio
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trading_bot.domain.trades import BotBook, ClosedTrade
from trading_bot.domain.wallet import SavedState, Wallet
from trading_bot.persistence.state_store import (
    REPEAT_WINDOW_MS,
    StateStore,
    decode_state,
    iter_journal_backwards,
    read_journal,
    trade_key,
)


def a_trade(entry_ts: int) -> ClosedTrade:
    return ClosedTrade(symbol="BTC/USDT:USDT", timeframe="1m", side=1, qty=0.01, entry_price=60_000.0,
                       entry_ts=entry_ts, signal_ts=entry_ts - 60_000, exit_price=60_300.0, exit_ts=entry_ts + 120_000,
                       exit_reason="target", entry_fee=0.24, exit_fee=0.24, gross_pnl=3.0, pnl=2.52)


async def test_parallel_saves_all_land_and_the_last_state_wins(tmp_path):
    store = StateStore(tmp_path / "state")
    wallet = Wallet(10_000.0, 10_000.0)
    books = {"BTC/USDT:USDT|1m": BotBook("BTC/USDT:USDT", "1m")}
    state = SavedState(wallet, books, mode="live")

    async def save(balance: float) -> None:
        wallet.balance = balance  # the live books change between saves, as they do in the bot
        await store.save(state, 0, "exchange")

    await asyncio.gather(*(save(10_000.0 + i) for i in range(20)))
    assert decode_state(store.positions_path.read_bytes(), "positions.json").wallet.balance == 10_019.0
    assert list(store.directory.glob(".*.tmp")) == []


async def test_the_same_trade_journaled_twice_at_once_is_written_once(tmp_path):
    store = StateStore(tmp_path / "state")
    results = await asyncio.gather(*(store.append_trade(a_trade(1_767_225_600_000)) for _ in range(5)),
                                   store.append_trade(a_trade(1_767_225_660_000)))
    assert sorted(results) == [False] * 4 + [True] * 2
    assert [t["entry_ts"] for t in read_journal(store.trades_path)] == [1_767_225_600_000, 1_767_225_660_000]


async def test_a_write_whose_caller_is_cancelled_still_finishes(tmp_path):
    """A stop request cuts a heartbeat short mid-save: the write completes (never a stray temp file,
    an open handle, or a rename racing the next save) and then the cancellation goes on."""
    store = StateStore(tmp_path / "state")
    state = SavedState(Wallet(10_000.0, 10_123.0), {}, mode="live")
    for write in (store.save(state, 0, "exchange"), store.append_trade(a_trade(1_767_225_600_000))):
        task = asyncio.ensure_future(write)
        await asyncio.sleep(0)  # the write has started
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert decode_state(store.positions_path.read_bytes(), "positions.json").wallet.balance == 10_123.0
    assert [t["entry_ts"] for t in read_journal(store.trades_path)] == [1_767_225_600_000]
    assert list(store.directory.glob(".*.tmp")) == []


def test_the_pause_is_saved_and_a_file_from_before_it_reads_as_not_paused():
    import json

    from trading_bot.persistence.state_store import StateError, encode_state

    state = SavedState(Wallet(100.0, 100.0), mode="live", paused=True)
    doc = json.loads(encode_state(state, 0, "exchange"))
    assert doc["paused"] is True and decode_state(json.dumps(doc).encode(), "p").paused
    del doc["paused"]  # positions.json as older versions wrote it
    assert decode_state(json.dumps(doc).encode(), "p").paused is False
    doc["paused"] = "yes"
    with pytest.raises(StateError, match="paused must be true or false"):
        decode_state(json.dumps(doc).encode(), "p")


def test_the_account_rules_record_and_each_bots_cooldown_survive_a_restart_and_old_files_read():
    import json

    from trading_bot.domain.wallet import GuardRecord
    from trading_bot.persistence.state_store import StateError, encode_state

    book = BotBook("BTC/USDT:USDT", "5m", last_candle_ts=600_000, stop_streak=2, cooldown_until_ts=900_000)
    guard = GuardRecord(day=20_000, day_start_balance=990.0, peak_balance=1010.0, daily_limit_day=20_000,
                        drawdown_halt="max drawdown 5% reached")
    state = SavedState(Wallet(1000.0, 980.0), {"BTC/USDT:USDT|5m": book}, mode="paper", guard=guard)
    back = decode_state(encode_state(state, 0, "synthetic"), "p")
    assert back.guard == guard
    assert back.books["BTC/USDT:USDT|5m"] == book
    doc = json.loads(encode_state(state, 0, "synthetic"))
    del doc["guard"]
    del doc["bots"]["BTC/USDT:USDT|5m"]["stop_streak"], doc["bots"]["BTC/USDT:USDT|5m"]["cooldown_until_ts"]
    old = decode_state(json.dumps(doc).encode(), "p")  # as files before the account rules were written
    assert old.guard == GuardRecord() and old.books["BTC/USDT:USDT|5m"].cooldown_until_ts is None
    doc["guard"] = {"peak_balance": "lots"}
    with pytest.raises(StateError, match=r"guard\.peak_balance must be a number"):
        decode_state(json.dumps(doc).encode(), "p")


@settings(max_examples=60, deadline=None)
@given(records=st.lists(st.dictionaries(st.sampled_from("abc"), st.integers(-5, 5), max_size=3), max_size=40),
       block=st.integers(1, 64), garbage=st.lists(st.integers(0, 40), max_size=4), torn=st.booleans())
def test_the_journal_read_backwards_is_the_journal_read_forwards_reversed(tmp_path_factory, records, block, garbage,
                                                                         torn):
    path = tmp_path_factory.mktemp("journal") / "trades.jsonl"
    lines = [json.dumps(r).encode() for r in records]
    for at in sorted(garbage, reverse=True):
        lines.insert(min(at, len(lines)), b'{"torn": tr')  # a garbled line anywhere
    path.write_bytes(b"".join(line + b"\n" for line in lines) + (b'{"symbol": "BT' if torn else b""))
    forwards = read_journal(path)  # it skips the garbled lines and the torn tail too (with warnings)
    assert forwards == records
    assert list(iter_journal_backwards(path, block=block)) == forwards[::-1]


async def test_a_repeat_is_looked_for_among_the_trades_booked_since_the_saved_books(tmp_path):
    """The first append reads the journal back from its end only as far as a trade that exited
    before the saved books' clock less REPEAT_WINDOW_MS: it, and all before it, were booked before
    that save, and their positions are not in the books any more."""
    store = StateStore(tmp_path / "state")
    saved_clock = 1_767_225_600_000 + 400 * 86_400_000
    old = [a_trade(saved_clock - REPEAT_WINDOW_MS - 86_400_000 - k * 60_000) for k in range(3, 0, -1)]
    recent = [a_trade(saved_clock - REPEAT_WINDOW_MS + k * 3_600_000) for k in range(3)]
    for trade in old + recent:
        assert await store.append_trade(trade)
    await store.save(SavedState(Wallet(10_000.0, 10_000.0), {}, clock_ms=saved_clock), 0, "synthetic")

    restarted = StateStore(tmp_path / "state")
    assert restarted.load() is not None
    assert not await restarted.append_trade(recent[0])  # a repeat: written once
    assert await restarted.append_trade(old[-1])  # before the window: never a repeat, so not looked for
    assert [t["entry_ts"] for t in read_journal(store.trades_path)] == [t.entry_ts for t in old + recent + old[-1:]]

    without_books = StateStore(tmp_path / "state")  # nothing loaded: the whole journal is looked through
    assert not await without_books.append_trade(old[0])


async def test_the_keys_kept_are_the_newest_bookings_and_bounded(tmp_path, monkeypatch):
    from trading_bot.persistence import state_store

    monkeypatch.setattr(state_store, "KEYS_KEPT", 3)
    store = StateStore(tmp_path / "state")
    trades = [a_trade(1_767_225_600_000 + k * 60_000) for k in range(6)]
    for trade in trades:
        assert await store.append_trade(trade)
    await store.save(SavedState(Wallet(10_000.0, 10_000.0), {}, clock_ms=trades[-1].exit_ts), 0, "synthetic")
    assert store._journaled is not None and list(store._journaled) == [trade_key(t.to_json()) for t in trades[3:]]
    for trade in trades[3:]:  # the newest bookings are the ones a restart could repeat
        assert not await store.append_trade(trade)

    restarted = StateStore(tmp_path / "state")
    restarted.load()
    assert not await restarted.append_trade(trades[-1])
    assert restarted._journaled is not None and len(restarted._journaled) == 3  # read back only that far
    assert len(read_journal(store.trades_path)) == 6


def test_a_garbled_journal_warns_of_its_first_bad_lines_and_counts_the_rest(tmp_path, caplog):
    path = tmp_path / "trades.jsonl"
    path.write_text("".join(f"garbled {k}\n" for k in range(10)) + json.dumps(a_trade(1).to_json()) + "\n")
    assert len(read_journal(path)) == 1
    assert [r.getMessage().split(": ", 1)[1] for r in caplog.records] == [
        "skipped a bad line 1", "skipped a bad line 2", "skipped a bad line 3", "skipped 7 more bad lines"]
    caplog.clear()
    unreadable: list[str] = []
    assert len(read_journal(path, unreadable)) == 1 and caplog.records == []
    assert unreadable == [f"bad line {k}" for k in range(1, 11)]
