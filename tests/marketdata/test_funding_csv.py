"""The funding-rate cache: file name, round trip, merge without duplicates, junk and a torn tail."""

from __future__ import annotations

import os

import pytest

from trading_bot.domain.funding import DEFAULT_FUNDING_RATE
from trading_bot.marketdata.candle_csv import cache_file_name
from trading_bot.marketdata.funding_csv import (
    HEADER,
    funding_file_name,
    funding_path,
    load_funding_schedule,
    merge_funding_rates,
    read_funding_rates,
)

JAN_1 = 1_767_225_600_000  # 2026-01-01 00:00 UTC
H8 = 8 * 3_600_000
BTC = "BTC/USDT:USDT"


def rates(count: int, start: int = JAN_1) -> list[tuple[int, float]]:
    return [(start + k * H8 + k % 13, 0.0001 + (k % 7 - 3) * 1.7e-5) for k in range(count)]


def test_the_file_sits_beside_the_symbols_candles():
    assert funding_file_name(BTC) == "BTC_USDT_USDT_funding.csv"
    assert cache_file_name(BTC, "5m").removesuffix("_5m.csv") == funding_file_name(BTC).removesuffix("_funding.csv")


def test_round_trip_is_exact_and_the_schedule_reads_it(tmp_path):
    path = funding_path(tmp_path, BTC)
    written = rates(50)
    assert merge_funding_rates(path, written) == 50
    assert path.read_text().splitlines()[0] == HEADER
    assert path.read_text().splitlines()[2] == f"{JAN_1 + H8 + 1},{written[1][1]!r}"
    back, report = read_funding_rates(path)
    assert back == written and report.dropped == 0 and not report.torn_tail
    schedule = load_funding_schedule(tmp_path, BTC)
    assert schedule.times == tuple(JAN_1 + k * H8 for k in range(50)) and list(schedule.rates) == [r for _, r in written]
    assert [os.path.basename(p) for p in os.listdir(tmp_path)] == ["BTC_USDT_USDT_funding.csv"]  # no temp file left


def test_no_file_means_the_default_schedule(tmp_path):
    assert read_funding_rates(funding_path(tmp_path, BTC))[0] == []
    schedule = load_funding_schedule(tmp_path, BTC)
    assert not schedule.has_history and schedule.events_between(JAN_1 - 1, JAN_1)[0].rate == DEFAULT_FUNDING_RATE


def test_merging_overlapping_and_older_records_keeps_one_row_per_moment(tmp_path):
    path = funding_path(tmp_path, BTC)
    everything = rates(30, JAN_1 - 10 * H8)
    merge_funding_rates(path, everything[10:20])
    assert merge_funding_rates(path, everything[15:30]) == 10  # 5 already there
    assert merge_funding_rates(path, everything[:12]) == 10  # older ones fill in ahead
    assert read_funding_rates(path)[0] == everything
    before = path.stat()
    assert merge_funding_rates(path, everything[5:8]) == 0
    assert path.stat().st_ino == before.st_ino  # nothing new: not rewritten
    # The exchange's later answer for a moment replaces the cached one, even stamped a ms apart.
    assert merge_funding_rates(path, [(everything[3][0] + 1, -0.0005)]) == 0
    records = read_funding_rates(path)[0]
    assert len(records) == 30 and records[3] == (everything[3][0] + 1, -0.0005)


def test_junk_rows_a_torn_tail_and_disorder_are_dropped_or_fixed(tmp_path):
    path = funding_path(tmp_path, BTC)
    path.write_text(
        HEADER + "\n"
        f"{JAN_1 + H8 + 3},0.0002\n"
        f"{JAN_1 + 7},0.0001\n"
        f"{JAN_1 + 11},0.0003\n"  # the same moment again: the later row wins
        f"{JAN_1 + 2 * H8},nan\n"
        f"{JAN_1 + 2 * H8},1.5\n"  # 150 %: not a funding rate
        "-5,0.0001\n"
        f"{JAN_1},0.1,7\n"
        "hello,world\n"
        "\n"
        f"{JAN_1 + 3 * H8},0.00"  # torn last line (no newline)
    )
    records, report = read_funding_rates(path)
    assert records == [(JAN_1 + 11, 0.0003), (JAN_1 + H8 + 3, 0.0002)]
    assert report.torn_tail and report.dropped == 6
    merge_funding_rates(path, [(JAN_1 + 2 * H8 + 4, 0.0004)])  # a merge leaves a clean file
    assert path.read_text() == f"{HEADER}\n{JAN_1 + 11},0.0003\n{JAN_1 + H8 + 3},0.0002\n{JAN_1 + 2 * H8 + 4},0.0004\n"


def test_a_failed_write_leaves_the_old_file_whole(tmp_path, monkeypatch):
    path = funding_path(tmp_path, BTC)
    merge_funding_rates(path, rates(10))
    before = path.read_bytes()

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", disk_full)
    with pytest.raises(OSError, match="No space"):
        merge_funding_rates(path, rates(20))
    assert path.read_bytes() == before and sorted(os.listdir(tmp_path)) == [path.name]
