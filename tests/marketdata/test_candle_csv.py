"""The CSV cache: format, bounded tail reads, and junk that must not take the bot down."""

from __future__ import annotations

import numpy as np

from trading_bot.marketdata.candle_csv import (
    HEADER,
    ReadReport,
    append_candles,
    cache_file_name,
    format_rows,
    parse_candle_lines,
    read_candles,
)
from trading_bot.marketdata.synthetic import synthetic_candles
from trading_bot.persistence.atomic_files import cut_torn_tail


def test_file_name_rule():
    assert cache_file_name("BTC/USDT:USDT", "5m") == "BTC_USDT_USDT_5m.csv"


def test_append_and_read_round_trip_exactly(tmp_path):
    path = tmp_path / "x.csv"
    candles = synthetic_candles("BTC/USDT:USDT", 60_000, 0, 300, None, 1)
    append_candles(path, candles[:100])
    append_candles(path, candles[100:])
    assert path.read_text().splitlines()[0] == HEADER
    full, report = read_candles(path)
    np.testing.assert_array_equal(full, candles)
    assert report.dropped == 0
    tail, _ = read_candles(path, limit=42)
    np.testing.assert_array_equal(tail, candles[-42:])


def test_tail_read_of_a_big_file_is_bounded(tmp_path):
    path = tmp_path / "big.csv"
    candles = synthetic_candles("BTC/USDT:USDT", 60_000, 0, 50_000, None, 1)
    append_candles(path, candles)
    tail, _ = read_candles(path, limit=1000)
    np.testing.assert_array_equal(tail, candles[-1000:])


def test_clean_lines_parse_as_the_forgiving_path_does():
    """The one-pass parse of clean lines gives the same floats as the line-by-line path (a junk
    line forces that one)."""
    lines = format_rows(synthetic_candles("ETH/USDT:USDT", 60_000, 0, 500, None, 3)).split(b"\n")[:-1]
    fast = parse_candle_lines(lines, ReadReport())
    report = ReadReport()
    slow = parse_candle_lines([*lines, b"1,2,x,4,5,6"], report)
    np.testing.assert_array_equal(fast, slow)
    assert fast.tobytes() == slow.tobytes() and report.dropped == 1


def test_junk_rows_are_dropped_and_order_restored(tmp_path):
    path = tmp_path / "j.csv"
    path.write_text(
        HEADER + "\n"
        "3000,10,11,9,10.5,100\n"
        "1000,10,11,9,10.5,100\n"
        "2000,10,11,9,10.5,100\n"
        "2000,10,12,9,11,200\n"  # duplicate timestamp: the later row wins
        "4000,nan,11,9,10,1\n"
        "5000,10,9,11,10,1\n"  # high below low
        "6000,-1,11,9,10,1\n"
        "7000,10,11,9\n"
        "hello,world\n"
        "8000,10,11,9,10.5,"  # torn last line (no newline)
    )
    candles, report = read_candles(path)
    assert candles[:, 0].tolist() == [1000, 2000, 3000]
    assert candles[1, 4] == 11.0
    assert report.torn_tail and report.dropped == 6


def test_torn_tail_is_cut_before_appending(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text(HEADER + "\n1000,10,11,9,10.5,100\n2000,10,11")
    assert cut_torn_tail(path) == len("2000,10,11")
    assert path.read_text().endswith("100\n")
    append_candles(path, np.array([[3000, 1, 2, 0.5, 1.5, 9]], dtype=float))
    candles, report = read_candles(path)
    assert candles[:, 0].tolist() == [1000, 3000] and report.dropped == 0


def test_missing_file_is_empty(tmp_path):
    candles, _ = read_candles(tmp_path / "none.csv", limit=10)
    assert candles.shape == (0, 6)
