"""The status page (engine/status_page.py, METRICS_PORT): its bounded buffers, its JSON endpoints against
a paper daemon on the synthetic market, its absence without METRICS_PORT, and the page itself in a real
headless browser (Debian's chromium: scripts/ensure-system-tools.sh)."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import re
import shutil
import socket
import struct
import subprocess
import sys
import zlib
from collections import Counter
from pathlib import Path

import aiohttp
import pytest

from conftest import free_port, make_settings, subprocess_env
from fakes.clocks import JAN_1_2026_MS, SharedClock
from trading_bot.domain.trades import LONG, ClosedTrade
from trading_bot.domain.wallet import bot_id
from trading_bot.engine.daemon import Daemon
from trading_bot.engine.status_page import TRADES_KEPT, EquityCurve, TradeTape
from trading_bot.marketdata.sources import SyntheticSource
from trading_bot.persistence.state_store import StateStore, read_journal
from trading_bot.persistence.strategy_config_file import write_config

ROOT = Path(__file__).resolve().parents[2]
# A bot of an earlier run (not in the settings): its trade is in the journal before the daemon starts. Its
# exit reason has markup in it, which the page must show as text.
EARLIER = ClosedTrade("SOL/USDT:USDT", "1h", LONG, 2.0, 100.0, JAN_1_2026_MS - 7_200_000, JAN_1_2026_MS - 10_800_000,
                      101.0, JAN_1_2026_MS - 3_600_000, "<i>target</i>", 0.08, 0.08, 2.0, 1.84)


def trade(n: int, pnl: float = 1.0) -> ClosedTrade:
    return ClosedTrade("BTC/USDT:USDT", "1m", LONG, 1.0, 100.0 + n, n, n - 60_000, 101.0 + n, n + 60_000, "target",
                       0.04, 0.04, pnl + 0.08, pnl)


# --- the buffers --------------------------------------------------------------------------------------


def test_the_equity_curve_stays_bounded_keeps_the_recent_past_whole_and_the_older_coarser():
    curve = EquityCurve(max_points=100, levels=10)  # 10 rings of 10: 10 × 1023 heartbeats covered
    for t in range(5_000):
        curve.add(t, 1000.0 + t)
        assert len(curve.points) <= 100
    times = [t for t, _ in curve.points]
    assert curve.points[-1] == (4_999, 5_999.0)  # the last heartbeat
    assert times[0] < 512  # the whole run: the oldest within the coarsest ring's step of the first
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert gaps[-9:] == [1] * 9  # the newest ring: every heartbeat
    assert gaps == sorted(gaps, reverse=True) and gaps[0] == 256  # the older, the coarser: ring k keeps every 2**k-th
    curve.add(4_999, 5.0)  # a second tick at the same instant: the newer figure replaces the older
    assert curve.points[-1] == (4_999, 5.0) and len(curve.points) <= 100
    for t in range(5_000, 50_000):  # past what the rings cover: the oldest points go, the bound holds
        curve.add(t, 0.0)
    assert len(curve.points) <= 100 and curve.points[0][0] > 50_000 - 10 * 1023 - 512
    with pytest.raises(ValueError):
        EquityCurve(max_points=30, levels=20)


def test_the_trade_tape_keeps_the_last_trades_and_tallies_every_one(tmp_path):
    journal = tmp_path / "trades.jsonl"
    lines = [json.dumps(trade(n, pnl=1.0 if n % 3 else -2.0).to_json()) for n in range(1, 11)]
    journal.write_text("\n".join(lines) + '\n{"symbol": "BTC/US')  # a torn last line: skipped
    tape = TradeTape.from_journal(journal, keep=4)
    assert [r["entry_ts"] for r in tape.newest(10)] == [10, 9, 8, 7]  # newest first, the last 4 only
    assert [r["entry_ts"] for r in tape.newest(2)] == [10, 9]
    tally = tape.tallies[bot_id("BTC/USDT:USDT", "1m")]
    assert (tally.trades, tally.wins, tally.pnl) == (10, 7, pytest.approx(7 * 1.0 - 3 * 2.0))
    tape.add(trade(10))  # closed again by a resumed replay: the journal keeps one, so does the tape
    tape.add(trade(11))
    assert [r["entry_ts"] for r in tape.newest(10)] == [11, 10, 9, 8]
    assert tape.tallies[bot_id("BTC/USDT:USDT", "1m")].trades == 11
    assert TradeTape.from_journal(tmp_path / "none.jsonl").newest(5) == []


def test_the_journal_gives_the_curve_the_books_history(tmp_path):
    journal = tmp_path / "trades.jsonl"
    trades = [trade(n * 120_000, pnl=1.0 if n % 2 else -2.0) for n in range(1, 5)]
    with_funding = {**trades[1].to_json(), "funding": -0.5}
    journal.write_text("\n".join(json.dumps(r) for r in [trades[0].to_json(), with_funding, {"note": "not a trade"},
                                                         trades[2].to_json(), trades[3].to_json()]) + "\n")
    curve = EquityCurve()
    TradeTape.from_journal(journal, curve=curve, initial_balance=1000.0)
    assert curve.points == [(trades[0].entry_ts, 1000.0), (trades[0].exit_ts, 1001.0), (trades[1].exit_ts, 998.5),
                            (trades[2].exit_ts, 999.5), (trades[3].exit_ts, 997.5)]


# --- the endpoints of a running paper daemon ------------------------------------------------------------


def page_daemon(tmp_path: Path, port: int) -> Daemon:
    settings = make_settings(tmp_path, symbols=("BTC/USDT:USDT", "ETH/USDT:USDT"), timeframes=("1m", "5m"),
                             metrics_port=port)
    write_config(settings.strategy_config, {"version": 1, "defaults": {"sl_pct": 0.004, "rr_ratio": 1.5}})  # trades soon
    daemon = Daemon(settings, clock=SharedClock(JAN_1_2026_MS, wake_every_ms=60_000),
                    source=SyntheticSource(settings.synthetic_seed), install_signals=False)
    StateStore(daemon.state_dir).trades_path.parent.mkdir(parents=True, exist_ok=True)
    StateStore(daemon.state_dir).trades_path.write_text(json.dumps(EARLIER.to_json()) + "\n")
    return daemon


async def trade_until_a_close_and_an_open(daemon: Daemon) -> int:
    """Heartbeats (a simulated minute apart) until a trade closed and a position is open; how many."""
    broker = daemon.parts.broker
    for n in range(1, 121):  # about 40 simulated minutes
        await daemon.tick()
        daemon.parts.clock.advance(60_000)
        if broker.wallet.trades and broker.open_positions():
            return n
    raise AssertionError("no trade closed with a position open in 120 heartbeats")


async def get(session: aiohttp.ClientSession, url: str) -> dict:
    async with session.get(url) as answer:
        assert answer.status == 200, await answer.text()
        assert answer.headers["Cache-Control"] == "no-store"
        assert answer.content_type == "application/json"
        return await answer.json()


async def test_the_endpoints_show_the_brokers_books_and_only_answer_get(tmp_path):
    port = free_port()
    daemon = page_daemon(tmp_path, port)
    await daemon.start()
    await daemon.start_metrics()
    base = f"http://127.0.0.1:{port}"
    try:
        ticks = await trade_until_a_close_and_an_open(daemon)
        report, broker = daemon.parts.report, daemon.parts.broker
        journal = read_journal(StateStore(daemon.state_dir).trades_path)
        async with aiohttp.ClientSession() as session:
            status = await get(session, f"{base}/api/status")
            positions = (await get(session, f"{base}/api/positions"))["positions"]
            trades = await get(session, f"{base}/api/trades")
            one = await get(session, f"{base}/api/trades?limit=1")
            most = await get(session, f"{base}/api/trades?limit=100000")
            equity = await get(session, f"{base}/api/equity")
            bots = {b["bot"]: b for b in (await get(session, f"{base}/api/bots"))["bots"]}
            async with session.get(f"{base}/api/trades?limit=lots") as answer:
                assert answer.status == 400
            async with session.get(f"{base}/") as answer:
                assert answer.status == 200 and answer.content_type == "text/html"
                assert "connect-src 'self'" in answer.headers["Content-Security-Policy"]
                assert "<polyline" in await answer.text()
            for path in ("/", "/api/status", "/api/positions", "/api/trades", "/api/equity", "/api/bots"):
                for method in ("POST", "PUT", "DELETE", "PATCH", "HEAD"):
                    async with session.request(method, base + path) as answer:
                        assert answer.status == 405, (method, path)
        marks = report.marks()
        expected_equity = report.equity()
        open_positions = broker.open_positions()
    finally:
        await daemon.shutdown()

    assert status["trading_state"] == {"state": "active", "reason": ""} and status["mode"] == "paper"
    assert status["equity"] == pytest.approx(expected_equity, rel=1e-12) and status["balance"] == broker.wallet.balance
    assert status["heartbeat"] == ticks and status["heartbeat_ms"] == JAN_1_2026_MS + (ticks - 1) * 60_000
    assert status["bots"] == 4 and status["trades"] == broker.wallet.trades > 0
    assert [(p["symbol"], p["timeframe"], p["side"], p["qty"], p["entry_price"]) for p in positions] == [
        (p.symbol, p.timeframe, p.side, p.qty, p.entry_price) for p in open_positions]
    for p in positions:
        mark = marks[bot_id(p["symbol"], p["timeframe"])]
        assert p["mark"] == mark and p["unrealised_pnl"] == pytest.approx(p["side"] * p["qty"] * (mark - p["entry_price"]))
    # recent trades: the journal newest first (the earlier run's trade, seeded from it, the oldest)
    assert len(journal) == broker.wallet.trades + 1
    assert trades["trades"] == journal[::-1][:50] and most["trades"] == journal[::-1][:TRADES_KEPT]
    assert most["limit"] == TRADES_KEPT and one["trades"] == journal[-1:]
    assert trades["trades"][-1] == EARLIER.to_json()
    # the curve: the journal's history (the balance from the books' initial one after the earlier run's trade),
    # then one point per heartbeat (the first replaced the one at ready: the same instant), the last one now
    history = [[EARLIER.entry_ts, broker.wallet.initial_balance], [EARLIER.exit_ts, broker.wallet.initial_balance + 1.84]]
    assert equity["points"][:2] == history
    assert [t for t, _ in equity["points"][2:]] == [JAN_1_2026_MS + i * 60_000 for i in range(ticks)]
    assert equity["points"][-1][1] == pytest.approx(expected_equity, rel=1e-12)
    # per bot: the settings' bots, then the earlier run's; figures from the journal, positions from the books
    assert list(bots)[:4] == ["BTC/USDT:USDT|1m", "BTC/USDT:USDT|5m", "ETH/USDT:USDT|1m", "ETH/USDT:USDT|5m"]
    assert bots["SOL/USDT:USDT|1h"] == {"bot": "SOL/USDT:USDT|1h", "symbol": "SOL/USDT:USDT", "timeframe": "1h",
                                        "running": False, "trades": 1, "wins": 1, "pnl": 1.84, "funding": 0.0,
                                        "position": None}
    for key, bot in bots.items():
        mine = [r for r in journal if bot_id(r["symbol"], r["timeframe"]) == key]
        assert (bot["trades"], bot["wins"]) == (len(mine), sum(r["pnl"] > 0 for r in mine))
        assert bot["pnl"] == pytest.approx(sum(r["pnl"] for r in mine))
        held = [p for p in positions if bot_id(p["symbol"], p["timeframe"]) == key]
        assert bot["position"] == (held[0] if held else None)
    assert sum(b["trades"] for b in bots.values()) == broker.wallet.trades + 1


def test_without_metrics_port_the_status_page_is_never_loaded(tmp_path):
    code = ("import sys; from trading_bot.cli.main import main; rc = main(['run', '--cycles', '2']); "
            "print(rc, sorted(m for m in sys.modules if m.startswith('trading_bot.engine.status_page')"
            " or m == 'trading_bot.engine.metrics'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60,
                         env=subprocess_env(tmp_path, HEARTBEAT_SECONDS="0.05", TRADING_SYMBOLS="BTC/USDT:USDT",
                                            TRADING_TIMEFRAMES="1m", METRICS_PORT="0"))
    assert out.stdout.strip().splitlines()[-1] == "0 []", out.stdout + out.stderr


# --- the page in a real browser ------------------------------------------------------------------------

CHROMIUM = shutil.which("chromium")
GREEN = (0x1D, 0x7A, 0x3A)  # the banner while trading is active
BLUE = (0x1F, 0x5F, 0xBF)  # the equity curve


def png_pixels(data: bytes) -> tuple[int, int, list[tuple[int, ...]]]:
    """Width, height and RGB pixels of an 8-bit RGB or RGBA PNG (the stdlib only: zlib, struct)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, header = 8, b"", None
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    assert header is not None
    width, height, depth, colour, _, _, interlace = header
    assert depth == 8 and colour in (2, 6) and interlace == 0, header
    channels = 3 if colour == 2 else 4
    raw, stride = zlib.decompress(idat), width * channels
    rows, previous = [], bytes(stride)
    for y in range(height):
        kind, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        # undo the row filter (PNG spec, 9.2): a = left, b = up, c = up-left
        if kind == 1:
            for i in range(channels, stride):
                line[i] = (line[i] + line[i - channels]) & 255
        elif kind == 2:
            line = bytearray((x + b) & 255 for x, b in zip(line, previous))
        elif kind == 3:
            for i in range(stride):
                line[i] = (line[i] + ((line[i - channels] if i >= channels else 0) + previous[i]) // 2) & 255
        elif kind == 4:
            for i in range(stride):
                a, b = (line[i - channels], previous[i]) if i >= channels else (0, previous[i])
                c = previous[i - channels] if i >= channels else 0
                pa, pb, pc = abs(b - c), abs(a - c), abs(a + b - 2 * c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        rows.append(bytes(line))
        previous = rows[-1]
    pixels = [tuple(row[x:x + 3]) for row in rows for x in range(0, stride, channels)]
    return width, height, pixels


async def chromium(*args: str) -> str:
    """Headless chromium with no network of its own (no updates, no sync): the page, and nothing else."""
    process = await asyncio.create_subprocess_exec(
        CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--disable-default-apps", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 0, err.decode(errors="replace")[-2000:]
    return out.decode()


def table(dom: str, name: str) -> list[list[str]]:
    """The body rows of <table id=name> in a dumped DOM, each as its cells' text."""
    match = re.search(rf'<table id="{name}">(.*?)</table>', dom, re.S)
    assert match, f"no table {name}"
    body = match.group(1).split("<tbody>", 1)[1]
    return [re.findall(r"<td[^>]*>(.*?)</td>", row, re.S) for row in re.findall(r"<tr>(.*?)</tr>", body, re.S)]


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (scripts/ensure-system-tools.sh)")
async def test_the_page_in_a_headless_browser_shows_the_daemons_state(tmp_path):
    port = free_port()
    daemon = page_daemon(tmp_path, port)
    await daemon.start()
    await daemon.start_metrics()
    screenshot = tmp_path / "status-page.png"
    url = f"http://127.0.0.1:{port}/"
    try:
        await trade_until_a_close_and_an_open(daemon)
        broker = daemon.parts.broker
        equity = daemon.parts.report.equity()
        positions = broker.open_positions()
        journal = read_journal(StateStore(daemon.state_dir).trades_path)
        # the budget is virtual time: the page's fetches and its first redraw, not 5 s of waiting
        dom, _ = await asyncio.gather(
            chromium(f"--user-data-dir={tmp_path / 'profile-dom'}", "--virtual-time-budget=1000", "--dump-dom", url),
            chromium(f"--user-data-dir={tmp_path / 'profile-shot'}", "--virtual-time-budget=1000",
                     f"--screenshot={screenshot}", "--window-size=1280,900", url))
        broker.pause()  # as `trading-bot pause` does: halted until resumed
        paused = await chromium(f"--user-data-dir={tmp_path / 'profile-dom'}", "--virtual-time-budget=1000",
                                "--dump-dom", url)
    finally:
        await daemon.shutdown()

    assert '<span id="state">active</span>' in dom
    assert f"<b>{equity:.2f}</b>" in dom  # the equity figure
    rows = table(dom, "positions")
    assert [(r[0], r[1]) for r in rows] == [(f"{p.symbol} {p.timeframe}", "long" if p.side == LONG else "short")
                                            for p in positions]
    trades = table(dom, "trades")
    assert 1 < len(journal) <= 20 and len(trades) == len(journal)  # the page asks for the last 20: all of them here
    assert trades[-1][:2] == ["SOL/USDT:USDT 1h", "long"]  # the earlier run's, from the journal, the oldest
    assert trades[-1][4] == "&lt;i&gt;target&lt;/i&gt;" and "<i>" not in dom  # text, never markup
    newest = journal[-1]
    assert trades[0][0] == f"{newest['symbol']} {newest['timeframe']}" and trades[0][4] == newest["exit_reason"]
    assert [r[0] for r in table(dom, "bots")][:4] == ["BTC/USDT:USDT 1m", "BTC/USDT:USDT 5m", "ETH/USDT:USDT 1m",
                                                      "ETH/USDT:USDT 5m"]
    assert re.search(r'<polyline id="line" points="[\d., ]{20,}"', dom)  # the curve was drawn
    assert '<header id="banner" class="">' in dom
    assert '<header id="banner" class="halted">' in paused  # red (the style sheet), and why
    assert '<span id="state">halted</span><span id="reason">paused by the operator</span>' in re.sub(r">\s+<", "><", paused)

    width, height, pixels = png_pixels(screenshot.read_bytes())
    assert (width, height) == (1280, 900)
    colours = Counter(pixels)
    assert len(colours) > 100  # text, tables and the curve: not a blank or an error page
    assert colours[GREEN] > 1280 * 30  # the banner across the top, green: active
    assert sum(n for c, n in colours.items() if all(abs(a - b) <= 40 for a, b in zip(c, BLUE))) > 300  # the curve
    keep = os.environ.get("STATUS_PAGE_SCREENSHOT")  # e.g. docs/status-page.png, for people to look at
    if keep:
        shutil.copyfile(screenshot, ROOT / keep)


async def test_a_taken_port_leaves_nothing_of_the_page_behind(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        daemon = page_daemon(tmp_path, taken.getsockname()[1])
        daemon.cycles = 2
        await daemon.run()
    assert daemon.figures.number == 2
    assert daemon.parts.report.page is None and daemon.parts.recorder.on_closed is None
