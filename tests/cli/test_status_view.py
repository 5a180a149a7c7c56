"""`trading-bot status` shows the trading state: the running daemon's word, or the saved books'."""

from __future__ import annotations

import time

from trading_bot.cli.status_view import collect_status, render_status
from trading_bot.domain.protections import DAY_MS
from trading_bot.domain.wallet import GuardRecord, SavedState, Wallet
from trading_bot.persistence.state_store import StateStore


def test_a_stopped_daemons_halt_and_todays_daily_limit_are_shown_from_the_saved_books(tmp_path):
    from trading_bot.persistence.state_store import encode_state

    store = StateStore(tmp_path)
    halted = SavedState(Wallet(1000.0, 900.0), mode="paper",
                        guard=GuardRecord(drawdown_halt="max drawdown 10% reached: balance 900.00 from a peak of 1000.00"))
    store.positions_path.write_bytes(encode_state(halted, 0, "synthetic"))
    status = collect_status(tmp_path, "paper")
    assert status["trading_state"]["state"] == "halted"
    assert "trading HALTED: max drawdown 10% reached" in render_status(status)

    today = int(time.time() * 1000) // DAY_MS
    for day, shown in ((today, "reducing"), (today - 1, "active")):
        limited = SavedState(Wallet(1000.0, 970.0), mode="paper", guard=GuardRecord(day=day, daily_limit_day=day))
        store.positions_path.write_bytes(encode_state(limited, 0, "synthetic"))
        status = collect_status(tmp_path, "paper")
        assert status["trading_state"]["state"] == shown, day
    assert not [line for line in render_status(status).splitlines() if line.startswith("trading ")], "active: no line"
