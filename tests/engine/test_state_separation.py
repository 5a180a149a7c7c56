"""Paper, live and replay never share books or a journal, and one daemon runs per state folder."""

from __future__ import annotations

import json
import os

import pytest

from conftest import make_settings, write_synthetic_cache
from fakes.clocks import JAN_1_2026_MS, SharedClock
from fakes.replay import SYMBOL, TF, replay_settings
from trading_bot.cli.main import main
from trading_bot.domain.intents import OrderIntent
from trading_bot.domain.trades import BotBook, Position
from trading_bot.domain.wallet import SavedState, Wallet
from trading_bot.engine.daemon import Daemon, StartupError
from trading_bot.marketdata.sources import SyntheticSource
from trading_bot.persistence.state_lock import StateLock, StateLockedError
from trading_bot.persistence.state_store import StateStore, decode_state, encode_state, read_journal
from trading_bot.persistence.strategy_config_file import write_config

BTC = "BTC/USDT:USDT"
JOURNAL = b'{"symbol":"BTC/USDT:USDT","timeframe":"1m","side":1,"entry_ts":1,"pnl":2.5}\n'


def live_books(mode: str = "live") -> bytes:
    """What a live run leaves: an open BTC position with its exchange orders, and an unresolved intent.
    (The stop is above any price: a paper run that adopted it would close it on its first candle.)"""
    book = BotBook(BTC, "1m", last_candle_ts=JAN_1_2026_MS - 60_000)
    book.position = Position(BTC, "1m", 1, 0.01, 90_000.0, JAN_1_2026_MS - 120_000, JAN_1_2026_MS - 180_000,
                             10_000_000.0, 10_000_001.0, 0.36, 0.01, 2.0,
                             orders={"entry": "11", "stop": "12", "target": "13", "entry_client": "tb-e-1"})
    intent = OrderIntent("tb-e-2", "entry", "ETH/USDT:USDT", "1m", -1, 0.5, None, JAN_1_2026_MS - 5_000, JAN_1_2026_MS - 60_000)
    state = SavedState(Wallet(5_000.0, 5_002.5, 0.36, 1, 1), {f"{BTC}|1m": book}, JAN_1_2026_MS, mode, {"tb-e-2": intent})
    return encode_state(state, JAN_1_2026_MS, "exchange")


def paper_settings(tmp_path):
    settings = make_settings(tmp_path, symbols=(BTC, "ETH/USDT:USDT"), timeframes=("1m",))
    write_config(settings.strategy_config, {"version": 1, "defaults": {"threshold": 0.0001, "sl_pct": 0.004, "rr_ratio": 1.5}})
    return settings


async def run_paper(settings, cycles: int = 30) -> None:
    daemon = Daemon(settings, cycles=cycles, clock=SharedClock(JAN_1_2026_MS, wake_every_ms=60_000),
                    source=SyntheticSource(settings.synthetic_seed), install_signals=False)
    await daemon.run()


async def test_a_paper_run_over_the_live_books_of_today_leaves_them_byte_identical(tmp_path):
    # Today's live mode wrote its books into data/state, the folder paper mode used too.
    settings = paper_settings(tmp_path)
    legacy = settings.legacy_state_dir
    legacy.mkdir(parents=True)
    (legacy / "positions.json").write_bytes(live_books())
    (legacy / "trades.jsonl").write_bytes(JOURNAL)
    await run_paper(settings)

    live = StateStore(settings.with_overrides(dry_run=False).state_dir())
    assert live.positions_path.read_bytes() == live_books(), "the live books, intents and positions, untouched"
    assert live.trades_path.read_bytes() == JOURNAL, "no made-up exit of a real position in the live journal"
    paper = StateStore(settings.state_dir())
    assert paper.directory != live.directory
    saved = decode_state(paper.positions_path.read_bytes(), "positions.json")
    assert saved.mode == "paper" and saved.intents == {} and saved.wallet.initial_balance == settings.initial_balance
    assert all(t.get("pnl") != 2.5 for t in read_journal(paper.trades_path)), "the paper journal is its own"


async def test_a_paper_run_never_reads_the_live_folder(tmp_path):
    settings = paper_settings(tmp_path)
    live = StateStore(settings.with_overrides(dry_run=False).state_dir())
    live.directory.mkdir(parents=True)
    live.positions_path.write_bytes(live_books())
    live.trades_path.write_bytes(JOURNAL)
    await run_paper(settings, cycles=3)
    assert live.positions_path.read_bytes() == live_books() and live.trades_path.read_bytes() == JOURNAL
    assert sorted(p.name for p in live.directory.iterdir()) == ["positions.json", "trades.jsonl"]


async def test_live_refuses_books_of_another_mode_instead_of_discarding_them(tmp_path, market):
    from fakes.live_bot import live_settings

    clock, fake = market
    settings = live_settings(tmp_path, fake)
    store = StateStore(settings.state_dir())
    store.directory.mkdir(parents=True)
    store.positions_path.write_bytes(live_books(mode="paper"))
    with pytest.raises(StartupError, match="holds paper books, not live ones"):
        await Daemon(settings, cycles=1, clock=clock, install_signals=False).run()
    assert store.positions_path.read_bytes() == live_books(mode="paper"), "kept as it was"
    assert not fake.orders


async def test_a_second_daemon_on_the_same_folder_is_refused_before_it_touches_anything(tmp_path):
    settings = paper_settings(tmp_path)
    holder = StateLock(settings.state_dir())
    holder.acquire()
    try:
        with pytest.raises(StateLockedError, match=f"PID {os.getpid()}"):
            await run_paper(settings, cycles=1)
        assert sorted(p.name for p in settings.state_dir().iterdir()) == ["daemon.lock"], "nothing read or written"
    finally:
        holder.release()
    await run_paper(settings, cycles=1)  # free again: it runs


async def test_a_replay_and_a_paper_run_of_one_data_dir_do_not_block_each_other(tmp_path):
    settings = replay_settings(tmp_path)
    write_synthetic_cache(settings.candles_dir, SYMBOL, TF, 400)
    paper = StateLock(settings.state_dir())
    paper.acquire()
    try:
        await Daemon(settings, replay=True, install_signals=False).run()
    finally:
        paper.release()
    assert StateStore(settings.state_dir(replay=True)).positions_path.exists()


@pytest.mark.parametrize(("argv", "mode"), [([], "paper"), (["--mode", "live"], "live"), (["--replay"], "replay"),
                                            (["--mode", "replay"], "replay")])
def test_status_shows_the_books_of_one_mode_and_says_which(tmp_path, monkeypatch, capsys, argv, mode):
    monkeypatch.setenv("DATA_DIR", str(tmp_path / "data"))
    settings = make_settings(tmp_path)
    for each in ("paper", "live", "replay"):
        store = StateStore(settings.state_dir(mode=each))
        store.directory.mkdir(parents=True)
        store.positions_path.write_bytes(live_books(mode=each))
    env_file = str(tmp_path / ".env")
    assert main(["--env-file", env_file, "status", *argv]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert f"mode {mode}" in first
    assert main(["--env-file", env_file, "status", "--json", *argv]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["mode"] == mode and status["state_dir"] == str(settings.state_dir(mode=mode))


def test_status_of_a_mode_that_has_not_run_says_so_and_points_at_unmoved_legacy_files(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("DATA_DIR", str(tmp_path / "data"))
    legacy = tmp_path / "data" / "state"
    legacy.mkdir(parents=True)
    (legacy / "positions.json").write_bytes(live_books())
    assert main(["--env-file", str(tmp_path / ".env"), "status", "--mode", "live"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("mode live: no state yet") and "the next `trading-bot run` moves it" in out
    assert (legacy / "positions.json").read_bytes() == live_books(), "status only reads"
    with pytest.raises(SystemExit) as exited:  # argparse: --mode and --replay together
        main(["--env-file", str(tmp_path / ".env"), "status", "--mode", "live", "--replay"])
    assert exited.value.code == 2
