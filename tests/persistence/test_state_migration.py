"""The one-time move of the shared legacy data/state files into the folder of their mode."""

from __future__ import annotations

import logging
import os

import pytest

from trading_bot.domain.wallet import SavedState, Wallet
from trading_bot.persistence.state_migration import migrate_legacy_state
from trading_bot.persistence.state_store import StateError, encode_state

FILES = {"trades.jsonl": b'{"symbol": "BTC/USDT:USDT", "pnl": 1.5}\n', "status.json": b'{"heartbeat": 7}'}


def layout(tmp_path):
    legacy = tmp_path / "data" / "state"
    folders = {"paper": legacy / "paper", "live": legacy / "live", "replay": tmp_path / "data" / "replay" / "state"}
    return legacy, folders


def write_legacy(legacy, mode: str) -> dict[str, bytes]:
    legacy.mkdir(parents=True, exist_ok=True)
    files = {**FILES, "positions.json": encode_state(SavedState(Wallet(1000.0, 1001.5), mode=mode), 1, "exchange")}
    for name, data in files.items():
        (legacy / name).write_bytes(data)
    return files


def contents(folder) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()} if folder.exists() else {}


@pytest.mark.parametrize("mode", ["paper", "live"])
def test_legacy_files_move_into_the_folder_their_positions_file_names(tmp_path, mode, caplog):
    caplog.set_level(logging.INFO)
    legacy, folders = layout(tmp_path)
    files = write_legacy(legacy, mode)
    assert migrate_legacy_state(legacy, folders) == folders[mode]
    assert contents(folders[mode]) == files
    assert contents(legacy) == {}, "nothing left behind"
    other = "live" if mode == "paper" else "paper"
    assert not folders[other].exists()
    assert caplog.text.count("one-time move") == 1
    caplog.clear()
    assert migrate_legacy_state(legacy, folders) is None, "a re-run finds nothing to do"
    assert contents(folders[mode]) == files and "one-time move" not in caplog.text


def test_nothing_to_move_without_legacy_files(tmp_path):
    legacy, folders = layout(tmp_path)
    assert migrate_legacy_state(legacy, folders) is None
    assert not legacy.exists()


def test_a_move_cut_short_after_the_journal_is_finished_by_the_next_run(tmp_path):
    legacy, folders = layout(tmp_path)
    files = write_legacy(legacy, "live")
    folders["live"].mkdir(parents=True)
    os.rename(legacy / "trades.jsonl", folders["live"] / "trades.jsonl")  # moved; then the power went
    assert migrate_legacy_state(legacy, folders) == folders["live"]
    assert contents(folders["live"]) == files and contents(legacy) == {}


def test_a_move_cut_short_between_link_and_unlink_is_finished_by_the_next_run(tmp_path):
    legacy, folders = layout(tmp_path)
    files = write_legacy(legacy, "live")
    folders["live"].mkdir(parents=True)
    for name in files:  # every file linked into the target, none unlinked from the legacy folder yet
        os.link(legacy / name, folders["live"] / name)
    assert migrate_legacy_state(legacy, folders) == folders["live"]
    assert contents(folders["live"]) == files and contents(legacy) == {}


def test_an_existing_file_in_the_target_is_never_overwritten(tmp_path):
    legacy, folders = layout(tmp_path)
    files = write_legacy(legacy, "live")
    folders["live"].mkdir(parents=True)
    (folders["live"] / "trades.jsonl").write_bytes(b"newer\n")
    with pytest.raises(StateError, match="both exist"):
        migrate_legacy_state(legacy, folders)
    assert (folders["live"] / "trades.jsonl").read_bytes() == b"newer\n"
    assert contents(legacy) == files, "the legacy files stay where they are"


def test_legacy_files_whose_mode_cannot_be_told_stay_put_with_a_clear_error(tmp_path):
    legacy, folders = layout(tmp_path)
    legacy.mkdir(parents=True)
    (legacy / "positions.json").write_text("garbage")
    with pytest.raises(StateError, match="cannot tell whose books"):
        migrate_legacy_state(legacy, folders)
    (legacy / "positions.json").unlink()
    (legacy / "trades.jsonl").write_bytes(FILES["trades.jsonl"])
    with pytest.raises(StateError, match=r"without a positions\.json"):
        migrate_legacy_state(legacy, folders)
    assert (legacy / "trades.jsonl").read_bytes() == FILES["trades.jsonl"]
    assert not folders["paper"].exists() and not folders["live"].exists()
