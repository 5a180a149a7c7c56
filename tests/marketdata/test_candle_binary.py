"""The binary copy beside a candle CSV: read instead of the CSV only while it matches, and then the
same candles bit for bit; anything else reads the CSV (never other data)."""

from __future__ import annotations

import numpy as np
import pytest

from trading_bot.marketdata.candle_binary import (
    binary_path,
    decode,
    read_newest,
    renew_copy,
    write_copy,
)
from trading_bot.marketdata.candle_csv import append_candles, format_rows, read_candles
from trading_bot.marketdata.synthetic import synthetic_candles

CANDLES = synthetic_candles("BTC/USDT:USDT", 60_000, 0, 400, None, 4)


def csv_with(tmp_path, rows: int):
    path = tmp_path / "BTC_USDT_USDT_1m.csv"
    append_candles(path, CANDLES[:rows])
    return path


def assert_reads_as_the_csv(path, limit: int, *, through_copy: bool) -> None:
    read = read_newest(path, limit)
    expected, _ = read_candles(path, limit)
    assert read.candles.tobytes() == expected.tobytes()
    assert (read.behind is not None) == through_copy


def test_a_copy_is_read_with_the_lines_appended_since(tmp_path):
    path = csv_with(tmp_path, 300)
    first = read_newest(path, 100)
    assert first.behind is None and first.snapshot is not None  # no copy yet: the CSV, cleanly
    write_copy(path, first.snapshot)
    assert_reads_as_the_csv(path, 100, through_copy=True)
    append_candles(path, CANDLES[300:310])
    assert read_newest(path, 100).behind == 10
    assert_reads_as_the_csv(path, 100, through_copy=True)
    assert_reads_as_the_csv(path, 60, through_copy=True)  # a smaller limit: the copy's newest
    assert_reads_as_the_csv(path, 150, through_copy=False)  # a larger one: the CSV


def test_a_copy_of_a_whole_short_file_serves_any_limit(tmp_path):
    path = csv_with(tmp_path, 50)
    assert renew_copy(path, 100)
    append_candles(path, CANDLES[50:60])
    assert_reads_as_the_csv(path, 1000, through_copy=True)
    assert_reads_as_the_csv(path, 20, through_copy=True)


def test_renewing_writes_only_when_behind_and_leaves_no_temp_file(tmp_path):
    path = csv_with(tmp_path, 200)
    assert renew_copy(path, 100)
    stamp = binary_path(path).stat().st_mtime_ns
    assert renew_copy(path, 100) and binary_path(path).stat().st_mtime_ns == stamp
    append_candles(path, CANDLES[200:201])
    assert renew_copy(path, 100) and read_newest(path, 100).behind == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name, binary_path(path).name]


def junk(path, line: bytes) -> None:
    with open(path, "ab") as handle:
        handle.write(line)


CHANGES = {
    "torn last line": lambda path: junk(path, b"360000000,1.0,1.1"),
    "junk line": lambda path: junk(path, b"oops\n"),
    "a candle out of order": lambda path: junk(path, format_rows(CANDLES[150:151])),
    "a duplicate candle": lambda path: junk(path, format_rows(CANDLES[199:200])),
    "cut shorter": lambda path: path.write_bytes(path.read_bytes()[:-200]),
    "rewritten, same size": lambda path: path.write_bytes(path.read_bytes().replace(b"1,", b"2,")),
    "replaced by another series": lambda path: (path.unlink(), append_candles(path, CANDLES[::2])),
    "copy cut short": lambda path: binary_path(path).write_bytes(binary_path(path).read_bytes()[:-8]),
    "copy with a flipped byte": lambda path: binary_path(path).write_bytes(
        (lambda b: b[:500] + bytes([b[500] ^ 1]) + b[501:])(binary_path(path).read_bytes())),
}


@pytest.mark.parametrize("change", list(CHANGES))
def test_a_copy_that_does_not_match_the_csv_is_not_used(tmp_path, change):
    path = csv_with(tmp_path, 200)
    assert renew_copy(path, 100)
    CHANGES[change](path)
    assert_reads_as_the_csv(path, 100, through_copy=False)


def test_no_copy_is_made_of_a_read_that_needed_cleaning(tmp_path):
    path = csv_with(tmp_path, 200)
    junk(path, b"oops\n")
    assert not renew_copy(path, 100) and not binary_path(path).exists()


def test_random_appends_and_damage_never_give_other_candles(tmp_path):
    rng = np.random.default_rng(11)
    path = csv_with(tmp_path, 120)
    at = 120
    for step in range(60):
        action = rng.integers(5)
        if action <= 1 and at < CANDLES.shape[0]:
            count = int(rng.integers(1, 8))
            append_candles(path, CANDLES[at : at + count])  # cuts a torn line first, as the daemon does
            at += count
        elif action == 2:
            renew_copy(path, 100)
        elif action == 3 and rng.random() < 0.3:
            junk(path, b"1,2,3" if rng.random() < 0.5 else format_rows(CANDLES[at - 50 : at - 49]))
        read = read_newest(path, 100)
        assert read.candles.tobytes() == read_candles(path, 100)[0].tobytes(), step


def test_decode_refuses_what_is_not_a_copy():
    assert decode(b"") is None and decode(b"x" * 100) is None
