"""`trading-bot fetch`: long candle history into the CSV cache, against the loopback fake exchange."""

from __future__ import annotations

import asyncio
import contextlib
import io
import subprocess
import sys

import numpy as np
import pytest

from conftest import subprocess_env
from fakes.fake_binance import FakeBinance
from trading_bot.domain.candles import TS
from trading_bot.domain.formatting import format_ms, parse_time_ms
from trading_bot.domain.timeframes import last_closed_open_ms
from trading_bot.exchange.budget import WeightBudget
from trading_bot.exchange.client import ExchangeClient
from trading_bot.exchange.history_download import (
    FetchUsageError,
    align_up,
    fetch_history,
    render_summary,
)
from trading_bot.exchange.klines import klines_weight
from trading_bot.marketdata.candle_csv import append_candles, cache_file_name, read_candles
from trading_bot.ops.progress import Progress

NOW = 1_767_225_600_000 + 30 * 60_000 + 5_000  # 2026-01-01 00:30:05 UTC
TF = 300_000  # 5m
LAST_CLOSED = last_closed_open_ms(NOW, TF)  # 00:25 closed at 00:30; 00:30 is forming
BTC, ETH = "BTC/USDT:USDT", "ETH/USDT:USDT"


@pytest.fixture
def market_start_ms() -> int:
    return NOW


def served(fake: FakeBinance, symbol_id: str, first: int, last: int, timeframe: str = "5m") -> np.ndarray:
    """What the fake serves for [first, last], at the precision it prints on the wire."""
    rows = fake.candles(symbol_id, timeframe, first, last)
    return np.array([[r[0], *(float(f"{v:.8f}") for v in r[1:5]), float(f"{r[5]:.3f}")] for r in rows])


def klines(fake: FakeBinance) -> list:
    return [r for r in fake.requests if r.path == "/fapi/v1/klines"]


def assert_contiguous(candles: np.ndarray, tf: int = TF) -> None:
    assert (np.diff(candles[:, TS]) == tf).all(), "timestamps are contiguous, ascending, without duplicates"


async def test_fetch_writes_contiguous_closed_candles_equal_to_what_the_exchange_serves(tmp_path, market, pool):
    _, fake = market
    since = LAST_CLOSED - 2499 * TF  # 2500 candles: three pages, the last one holding the forming candle
    report = await fetch_history(pool, tmp_path, [BTC, ETH], ["5m", "1h"], since, stream=io.StringIO())
    assert report.ok and [r.added for r in report.series] == [2500, 207, 2500, 207]
    for symbol in (BTC, ETH):
        cached, read = read_candles(tmp_path / cache_file_name(symbol, "5m"))
        assert read.dropped == 0 and not read.torn_tail
        assert cached.shape == (2500, 6) and int(cached[0, TS]) == since
        assert int(cached[-1, TS]) == LAST_CLOSED  # closed only: the 00:30 candle was still forming
        assert_contiguous(cached)
        np.testing.assert_array_equal(cached, served(fake, symbol.replace("/USDT:USDT", "USDT"), since, LAST_CLOSED))
        hourly, _ = read_candles(tmp_path / cache_file_name(symbol, "1h"))
        assert int(hourly[-1, TS]) == last_closed_open_ms(NOW, 3_600_000) and hourly.shape[0] == 207
        assert_contiguous(hourly, 3_600_000)
    pages = klines(fake)
    # Each page asks for no more than is left: the exchange charges by the limit asked.
    assert sorted((r.params["symbol"], r.params["interval"], int(r.params["limit"]), r.weight) for r in pages) == sorted(
        (s, i, n, klines_weight(n)) for s in ("BTCUSDT", "ETHUSDT") for i, n in
        (("5m", 1000), ("5m", 1000), ("5m", 500), ("1h", 207)))
    assert klines_weight(207) == 2 < klines_weight(1000)
    summary = render_summary(report)
    assert "BTC/USDT:USDT 5m: +2,500 candles; cached 2025-12-23 08:10 → 2026-01-01 00:25 UTC" in summary
    funding = len(fake.funding_rates("BTCUSDT", since - 1, NOW)) + len(fake.funding_rates("ETHUSDT", since - 1, NOW))
    assert funding == 2 * 26  # the 8-hourly funding of those 8.7 days, fetched alongside
    assert summary.endswith(f"total: 5,414 candles added over 4 series, 52 funding rates over 2 symbols, "
                            f"{len(fake.requests)} requests")


async def test_reruns_add_nothing_then_exactly_the_candles_that_closed_since(tmp_path, market, pool):
    clock, fake = market
    since = LAST_CLOSED - 2999 * TF
    path = tmp_path / cache_file_name(BTC, "5m")
    first = await fetch_history(pool, tmp_path, [BTC], ["5m"], since, stream=io.StringIO())
    assert first.series[0].added == 3000
    before, requests_before = path.read_bytes(), len(klines(fake))

    second = await fetch_history(pool, tmp_path, [BTC], ["5m"], since, stream=io.StringIO())
    assert second.series[0].added == 0 and "(up to date)" in render_summary(second)
    assert path.read_bytes() == before and len(klines(fake)) == requests_before  # not even a request

    clock.advance(7 * TF + 30_000)  # seven more candles close
    third = await fetch_history(pool, tmp_path, [BTC], ["5m"], since, stream=io.StringIO())
    assert third.series[0].added == 7
    cached, _ = read_candles(path)
    assert cached.shape[0] == 3007 and int(cached[-1, TS]) == LAST_CLOSED + 7 * TF
    assert_contiguous(cached)
    assert path.read_bytes().startswith(before)  # appended, nothing rewritten
    np.testing.assert_array_equal(cached[-7:], served(fake, "BTCUSDT", LAST_CLOSED + TF, LAST_CLOSED + 7 * TF))
    [top_up] = klines(fake)[requests_before:]
    assert int(top_up.params["startTime"]) == LAST_CLOSED + TF
    assert top_up.params["limit"] == "7" and top_up.weight == 1  # a top-up costs 1, not a whole page's 5


@pytest.mark.parametrize("fault", ["500_html", "reset"])
async def test_an_interrupted_fetch_keeps_its_pages_and_a_rerun_completes(tmp_path, market, pool, fault):
    clock, fake = market
    since = LAST_CLOSED - 4499 * TF  # five pages
    call = pool.call

    async def fail_after_two_pages(method, *args, **kwargs):
        if method == "fetch_ohlcv" and len(klines(fake)) == 2:
            fake.inject(fault, "/fapi/v1/klines", times=100)  # the exchange is down for good
        return await call(method, *args, **kwargs)

    pool.call = fail_after_two_pages  # type: ignore[method-assign]  # a test wraps the client's method
    out = io.StringIO()
    broken = await fetch_history(pool, tmp_path, [BTC], ["5m"], since, stream=out)
    assert not broken.ok and broken.series[0].added == 2000
    assert broken.incomplete() == "1 candle series incomplete"  # the CLI's last line (funding came through)
    assert "incomplete" in render_summary(broken) and "incomplete" in out.getvalue()
    assert "fetch_ohlcv failed" in out.getvalue()  # the retry warnings come through the progress display
    path = tmp_path / cache_file_name(BTC, "5m")
    kept, _ = read_candles(path)
    assert kept.shape[0] == 2000 and int(kept[0, TS]) == since
    assert_contiguous(kept)

    assert all(r.status != 200 for r in klines(fake)[2:])  # nothing more reached us

    back = await FakeBinance(now_ms=clock).start()  # the exchange is back (same market, same clock)
    second_pool = ExchangeClient("binanceusdm", back.url)
    try:
        resumed = await fetch_history(second_pool, tmp_path, [BTC], ["5m"], since, stream=io.StringIO())
    finally:
        await second_pool.close()
        await back.stop()
    assert resumed.ok and resumed.series[0].added == 2500
    assert int(klines(back)[0].params["startTime"]) == since + 2000 * TF
    cached, _ = read_candles(path)
    assert cached.shape[0] == 4500 and int(cached[-1, TS]) == LAST_CLOSED
    assert_contiguous(cached)
    np.testing.assert_array_equal(cached, served(fake, "BTCUSDT", since, LAST_CLOSED))


async def test_a_stretch_without_data_is_skipped_not_looped_on(tmp_path, market, pool):
    _, fake = market
    origin = LAST_CLOSED - 5000 * TF  # the fake's history starts here
    since = origin - 2500 * TF  # two whole empty pages, then a half one
    report = await fetch_history(pool, tmp_path, [BTC], ["5m"], since, stream=io.StringIO())
    [series] = report.series
    assert report.ok and series.empty_pages == 2 and series.added == 5001
    cached, _ = read_candles(tmp_path / cache_file_name(BTC, "5m"))
    assert int(cached[0, TS]) == origin and int(cached[-1, TS]) == LAST_CLOSED
    assert_contiguous(cached)
    assert len(klines(fake)) == 2 + 6
    assert "no candles for 2 page(s)" in render_summary(report)


async def test_history_before_the_cache_start_is_reported_not_prepended(tmp_path, market, pool):
    _, fake = market
    path = tmp_path / cache_file_name(BTC, "5m")
    start = LAST_CLOSED - 99 * TF
    rows = served(fake, "BTCUSDT", start, start + 49 * TF)  # the cache holds 50 candles, ending 50 ago
    append_candles(path, rows)
    report = await fetch_history(pool, tmp_path, [BTC], ["5m"], LAST_CLOSED - 999 * TF, stream=io.StringIO())
    assert report.series[0].added == 50  # only after the cache's end
    cached, _ = read_candles(path)
    assert int(cached[0, TS]) == start and cached.shape[0] == 100
    assert_contiguous(cached)
    assert f"history before {format_ms(start)} not fetched: the cache starts there and is append-only" \
        in render_summary(report)


async def test_a_since_after_the_cache_end_still_continues_from_the_cache_end(tmp_path, market, pool):
    _, fake = market
    path = tmp_path / cache_file_name(BTC, "5m")
    append_candles(path, served(fake, "BTCUSDT", LAST_CLOSED - 99 * TF, LAST_CLOSED - 50 * TF))
    report = await fetch_history(pool, tmp_path, [BTC], ["5m"], LAST_CLOSED - 10 * TF, stream=io.StringIO())
    assert report.series[0].added == 50 and "not fetched" not in render_summary(report)
    cached, _ = read_candles(path)
    assert cached.shape[0] == 100 and int(cached[-1, TS]) == LAST_CLOSED
    assert_contiguous(cached)  # no hole between the old end and --since


async def test_the_request_weight_stays_within_the_budget(tmp_path, market, pool):
    _, fake = market
    pool.budget = WeightBudget(limit_per_minute=16, headroom=1.0)  # 3 pages of weight 5 ...
    pool.budget.window_s = 0.5  # ... per half second, so this fetch has to wait for the budget
    admitted: list[tuple[float, int]] = []  # when the budget let each request go, by the budget's own clock
    take = pool.budget.take

    @contextlib.asynccontextmanager
    async def recording_take(weight: int = 1):
        async with take(weight):
            admitted.append((pool.budget.clock(), weight))
            yield

    pool.budget.take = recording_take
    report = await fetch_history(pool, tmp_path, [BTC, ETH], ["5m"], LAST_CLOSED - 3499 * TF, stream=io.StringIO())
    assert report.ok and [r.added for r in report.series] == [3500, 3500]
    assert pool.budget.waited_s > 0
    assert sum(r.weight for r in fake.requests) == 2 + 8 * klines_weight(1000)  # we declare what the exchange charges
    assert sum(w for _, w in admitted) == sum(r.weight for r in fake.requests)  # every request went through it
    # Judged by admission times, not by the fake's arrival times: on a loaded machine a request can
    # reach the fake well after the budget let it go, which says nothing about the budget.
    for i, (start, _) in enumerate(admitted):
        in_window = sum(w for t, w in admitted[i:] if t < start + pool.budget.window_s)
        assert in_window <= pool.budget.capacity


async def test_unknown_symbols_and_bad_ranges_are_usage_errors(tmp_path, pool):
    with pytest.raises(FetchUsageError, match="DOGE/USDT:USDT not listed"):
        await fetch_history(pool, tmp_path, ["DOGE/USDT:USDT"], ["5m"], NOW - 86_400_000, stream=io.StringIO())
    with pytest.raises(FetchUsageError, match="in the future"):
        await fetch_history(pool, tmp_path, [BTC], ["5m"], NOW + 86_400_000, stream=io.StringIO())
    with pytest.raises(FetchUsageError, match="must be before"):
        await fetch_history(pool, tmp_path, [BTC], ["5m"], NOW, NOW - 1, stream=io.StringIO())
    assert not list(tmp_path.iterdir())


def test_time_arguments():
    assert parse_time_ms("2024-01-01") == 1_704_067_200_000
    assert parse_time_ms("2024-01-01T02:00:00+02:00") == 1_704_067_200_000
    assert parse_time_ms("2024-01-01T00:00:00Z") == parse_time_ms("1704067200000") == 1_704_067_200_000
    for bad in ("yesterday", "2024-13-01", "-5", ""):
        with pytest.raises(ValueError, match="YYYY-MM-DD"):
            parse_time_ms(bad)
    assert align_up(NOW, TF) == LAST_CLOSED + 2 * TF and align_up(LAST_CLOSED, TF) == LAST_CLOSED


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_is_one_redrawn_line_on_a_terminal_and_plain_lines_elsewhere():
    tty = Terminal()
    bar = Progress(3000, "fetch", tty, items=2, clock=iter(range(0, 100, 1)).__next__)
    bar.advance(1000)
    bar.item_done("BTC done")
    bar.note("a retry")
    bar.advance(2000)
    bar.close()
    bar.close()
    text = tty.getvalue()
    assert "BTC done" not in text and "\ra retry\n" in text.replace("\x1b[2K", "")
    assert text.endswith("\n") and text.count("\n") == 2  # the note and the finished bar
    assert "3,000/3,000 candles  1/2 series" in text.rsplit("\r", 1)[-1]

    plain = io.StringIO()
    lines = Progress(3000, "fetch", plain, items=2)
    lines.advance(1000)
    lines.item_done("BTC/USDT:USDT 5m: +1,000 candles")
    lines.note("a retry")
    lines.close()
    assert plain.getvalue() == "BTC/USDT:USDT 5m: +1,000 candles\na retry\n"


def run_cli(tmp_path, *args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "trading_bot", "fetch", *args], cwd=tmp_path, capture_output=True,
                          text=True, timeout=60, env=subprocess_env(tmp_path, **env))


@pytest.mark.slow
async def test_cli_end_to_end(tmp_path, market):
    _, fake = market
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "trading_bot", "fetch", "--symbols", f"{BTC},{ETH}", "--timeframes", "5m,1h",
        "--since", "2025-12-29", "--until", "2026-01-01T00:00:00Z", cwd=tmp_path,
        env=subprocess_env(tmp_path, EXCHANGE_URL=fake.url), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    stdout, stderr = await asyncio.wait_for(proc.communicate(), 60)
    out, err = stdout.decode(), stderr.decode()
    assert proc.returncode == 0, err
    assert "BTC/USDT:USDT 5m: +864 candles; cached 2025-12-29 00:00 → 2025-12-31 23:55 UTC" in out
    assert "ETH/USDT:USDT 1h: +72 candles; cached 2025-12-29 00:00 → 2025-12-31 23:00 UTC" in out
    # Funding over the same range, --until included (a position held through the last candle pays it).
    assert "ETH/USDT:USDT funding: +10 rates; cached 2025-12-29 00:00 → 2026-01-01 00:00 UTC" in out
    assert out.strip().splitlines()[-1].startswith("total: 1,872 candles added over 4 series, 20 funding rates over "
                                                   "2 symbols, ")
    assert len(err.splitlines()) == 6 and "\r" not in err  # not a terminal: one plain line per series and funding
    cached, _ = read_candles(tmp_path / "data" / "candles" / "ETH_USDT_USDT_5m.csv")
    assert cached.shape[0] == 864
    assert_contiguous(cached)


@pytest.mark.slow
def test_cli_unreachable_exchange_is_one_line_and_exit_1(tmp_path):
    result = run_cli(tmp_path, "--since", "2025-12-01", EXCHANGE_URL="http://127.0.0.1:9")
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and "127.0.0.1:9 unreachable" in result.stderr
    assert not (tmp_path / "data" / "candles").exists()


@pytest.mark.slow
@pytest.mark.parametrize("args", [["--since", "last tuesday"], ["--timeframes", "7m"],
                                  ["--since", "2025-02-01", "--until", "2025-01-01"], ["--until", "soon"]])
def test_cli_bad_arguments_are_one_line_and_exit_2(tmp_path, args):
    result = run_cli(tmp_path, *args, EXCHANGE_URL="http://127.0.0.1:9")
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("trading-bot: error: --")
    assert "Traceback" not in result.stderr
