"""One daemon per state folder (the flock itself; tests/engine/test_daemon_lock.py runs two daemons)."""

from __future__ import annotations

import os

import pytest

from trading_bot.persistence.state_lock import StateLock, StateLockedError


def test_a_second_holder_is_refused_with_the_pid_of_the_first_and_may_take_it_once_released(tmp_path):
    first = StateLock(tmp_path / "state")
    first.acquire()
    assert (tmp_path / "state" / "daemon.lock").read_text() == f"{os.getpid()}\n"
    second = StateLock(tmp_path / "state")  # its own open file: flock refuses it as it would another process
    with pytest.raises(StateLockedError, match=f"in use by another trading-bot \\(PID {os.getpid()}\\)"):
        second.acquire()
    assert not second.held
    first.release()
    second.acquire()
    assert second.held
    second.release()


def test_different_folders_do_not_block_each_other(tmp_path):
    paper, replay = StateLock(tmp_path / "state" / "paper"), StateLock(tmp_path / "replay" / "state")
    paper.acquire()
    replay.acquire()
    paper.release()
    replay.release()
