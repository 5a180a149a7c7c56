"""The funding-rate cache: one CSV per symbol beside its candles, `<candles>/<SYMBOL>_funding.csv`
(`BTC/USDT:USDT` → `BTC_USDT_USDT_funding.csv`), header `funding_time_ms,rate`, ascending, one row
per funding moment, times as the exchange sent them (a few ms after the minute).

Unlike the candle files the whole file is rewritten on every merge, atomically (temp file, fsync,
rename): it is small (three rows a day), a merge may fill in rows anywhere, and a reader must never
see half of it. Reading forgives what a hand edit or an older writer may leave (a torn last line,
junk rows, duplicates, disorder): such rows are dropped or fixed, and counted.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable
from pathlib import Path

from trading_bot.domain.funding import FundingSchedule, floor_to_minute
from trading_bot.marketdata.candle_csv import ReadReport, cache_stem
from trading_bot.persistence.atomic_files import atomic_write_bytes, whole_lines

HEADER = "funding_time_ms,rate"


MAX_ABS_RATE = 1.0  # Binance caps rates at a few percent; a rate of 100 % is a corrupt row


log = logging.getLogger(__name__)


FundingRecord = tuple[int, float]  # (funding time in ms as the exchange sent it, rate)


def funding_file_name(symbol: str) -> str:
    return f"{cache_stem(symbol)}_funding.csv"


def funding_path(candles_dir: Path, symbol: str) -> Path:
    return candles_dir / funding_file_name(symbol)


def _parse(line: bytes) -> FundingRecord | None:
    parts = line.split(b",")
    if len(parts) != 2:
        return None
    try:
        time_ms, rate = int(parts[0]), float(parts[1])
    except ValueError:
        return None
    if time_ms < 0 or not math.isfinite(rate) or abs(rate) >= MAX_ABS_RATE:
        return None
    return time_ms, rate


def _clean(records: Iterable[FundingRecord]) -> list[FundingRecord]:
    """Ascending by funding moment, one record per moment (the minute): the last one given wins."""
    by_minute: dict[int, FundingRecord] = {}
    for record in records:
        by_minute[floor_to_minute(record[0])] = record
    return [by_minute[m] for m in sorted(by_minute)]


def read_funding_rates(path: Path) -> tuple[list[FundingRecord], ReadReport]:
    """Every good record, ascending, without duplicates. A missing file gives none."""
    report = ReadReport()
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return [], report
    lines, report.torn_tail = whole_lines(data)
    parsed: list[FundingRecord] = []
    for line in lines:
        if not line.strip() or line.startswith(b"funding_time_ms"):
            continue
        record = _parse(line)
        if record is None:
            report.dropped += 1
        else:
            parsed.append(record)
    records = _clean(parsed)
    report.dropped += len(parsed) - len(records)
    if report.dropped or report.torn_tail:
        log.warning("%s: dropped %d bad row(s)%s", path, report.dropped,
                    ", cut a torn last line" if report.torn_tail else "")
    return records, report


def format_funding_rows(records: Iterable[FundingRecord]) -> bytes:
    return "".join(f"{time_ms},{rate!r}\n" for time_ms, rate in records).encode()


def merge_funding_rates(path: Path, records: Iterable[FundingRecord]) -> int:
    """Merge records into the file (a new record of a moment already cached replaces it) and
    rewrite it atomically if anything changed. Returns how many moments are new."""
    cached, report = read_funding_rates(path)
    merged = _clean([*cached, *records])
    added = len(merged) - len(cached)
    if merged != cached or report.dropped or report.torn_tail:
        atomic_write_bytes(path, (HEADER + "\n").encode() + format_funding_rows(merged))
    return added


def load_funding_schedule(candles_dir: Path, symbol: str) -> FundingSchedule:
    """The symbol's schedule from its cache file (the default grid alone when there is none)."""
    records, _ = read_funding_rates(funding_path(candles_dir, symbol))
    return FundingSchedule.from_records(symbol, records)


def load_funding_schedules(candles_dir: Path, symbols: Iterable[str]) -> dict[str, FundingSchedule]:
    return {symbol: load_funding_schedule(candles_dir, symbol) for symbol in symbols}
