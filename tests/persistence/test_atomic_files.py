"""cut_torn_tail: the one repair of an append-only file (trade journal, candle cache) after a crash."""

from __future__ import annotations

import os

import pytest

from fakes.crashed_writer import dead_writers_temp
from trading_bot.persistence.atomic_files import cut_torn_tail, remove_orphaned_temp_files


@pytest.mark.parametrize("content", [b"", b"a\n", b"a\nb\n"])
def test_a_file_of_whole_lines_is_left_alone(tmp_path, content):
    path = tmp_path / "f"
    path.write_bytes(content)
    assert cut_torn_tail(path) == 0
    assert path.read_bytes() == content


def test_an_absent_file_needs_no_repair(tmp_path):
    assert cut_torn_tail(tmp_path / "none") == 0
    assert not (tmp_path / "none").exists()


def test_only_the_partial_last_line_is_cut(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"one\ntwo\nthr")
    assert cut_torn_tail(path) == 3
    assert path.read_bytes() == b"one\ntwo\n"


def test_a_file_without_any_newline_is_emptied(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"x" * 70_000)
    assert cut_torn_tail(path) == 70_000
    assert path.read_bytes() == b""


def test_a_torn_line_longer_than_one_read_block_is_cut_whole(tmp_path):
    path = tmp_path / "f"
    head = b"".join(b"%d\n" % i for i in range(50_000))
    path.write_bytes(head + b"y" * 200_000)  # the scan back from the end needs several blocks
    assert cut_torn_tail(path) == 200_000
    assert path.read_bytes() == head


def test_only_the_temp_files_of_writers_that_are_gone_are_removed(tmp_path):
    target = tmp_path / "BTC_USDT_USDT-5m.csv.bin"
    target.write_bytes(b"old")
    orphan = dead_writers_temp(target)
    assert orphan.read_bytes() == b"new" and target.read_bytes() == b"old"
    ours = tmp_path / f".other.csv.bin.{os.getpid()}.tmp"  # a live writer's (here: this process) is its own
    ours.write_bytes(b"being written")
    unrelated = tmp_path / ".notes.tmp"  # not a name of ours
    unrelated.write_bytes(b"x")
    assert remove_orphaned_temp_files(tmp_path) == 1
    assert not orphan.exists() and ours.exists() and unrelated.exists() and target.read_bytes() == b"old"
    assert remove_orphaned_temp_files(tmp_path) == 0
