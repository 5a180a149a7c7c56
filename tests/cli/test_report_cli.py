"""`trading-bot report` and `backtest --report`: one offline HTML file whose figures are the journal's
(or the backtest's) trades; hostile text escaped; bad input one line and exit 2."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import numpy as np
import pytest

from conftest import cli_settings_env, make_settings, subprocess_env, write_synthetic_cache
from trading_bot.cli.main import main
from trading_bot.domain.trades import LONG, SHORT, ClosedTrade
from trading_bot.persistence.state_store import TRADES_FILE

T0 = 1_700_000_000_000  # 2023-11-14 22:13 UTC
HOUR = 3_600_000
BOTS = (("BTC/USDT:USDT", "5m"), ("ETH/USDT:USDT", "1h"))


def _trades(count: int, bots=BOTS, seed: int = 3) -> list[ClosedTrade]:
    """Closed trades, one every 5 hours (several UTC days), wins and losses, fees and funding."""
    rng = np.random.default_rng(seed)
    trades = []
    for k in range(count):
        symbol, timeframe = bots[k % len(bots)]
        exit_ts = T0 + 5 * HOUR * (k + 1)
        pnl = round(float(rng.normal(3.0, 25.0)), 4)
        trades.append(ClosedTrade(symbol, timeframe, LONG if k % 3 else SHORT, 0.5, 100.0 + k, exit_ts - 2 * HOUR,
                                  exit_ts - 3 * HOUR, 101.0 + k, exit_ts, "target" if pnl > 0 else "stop", 0.02, 0.03,
                                  pnl + 0.05, pnl, round(float(rng.normal(0.0, 0.2)), 4)))
    return trades


def _journal(tmp_path, trades, extra_lines=(), mode="paper"):
    path = tmp_path / "data" / "state" / mode / TRADES_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps(t.to_json()) for t in trades] + list(extra_lines)
    path.write_text("".join(line + "\n" for line in lines))
    return path


def _fact(page: str, key: str) -> str:
    match = re.search(rf'<tr id="{key}"><th>[^<]*</th><td>([^<]*)</td></tr>', page)
    assert match, key
    return match.group(1)


def _offline(page: str) -> None:
    """One file: nothing fetched when it is opened, no script."""
    lowered = page.lower()
    for external in ('src="http', "src='http", '<link', 'href="http', "href='http", "@import", "url(http", "<script"):
        assert external not in lowered, external
    assert re.findall(r'(?:src|href)="(?!#|data:)', lowered) == []  # every reference is inside the page


def _run(tmp_path, *args):
    return main(["--env-file", str(tmp_path / "none.env"), *args])


def test_the_report_is_one_offline_file_with_the_journals_figures(tmp_path, monkeypatch, capsys):
    cli_settings_env(monkeypatch, tmp_path, ("BTC/USDT:USDT",), "5m", INITIAL_BALANCE="2000")
    trades = _trades(40)
    _journal(tmp_path, trades, extra_lines=['{"symbol": "BTC/USDT:USDT"}', "{garbled"])  # not trades: left out, counted
    assert _run(tmp_path, "report") == 0
    out = tmp_path / "data" / "reports" / "paper.html"  # the default place
    assert f"wrote {out}" in capsys.readouterr().err
    assert [p.name for p in out.parent.iterdir()] == ["paper.html"]  # the temp file renamed away
    page = out.read_text()
    _offline(page)
    for anchor in ("summary", "equity", "by-bot", "by-day", "trades"):
        assert f'<section id="{anchor}">' in page
    assert page.count("<svg") == 3 and "1 journal record(s) were not trades" in page
    assert "1 unreadable journal line(s) are left out (bad line 42)." in page

    # Independently of the report's code: the equity curve of the journal from INITIAL_BALANCE (no positions.json).
    net = np.array([t.pnl + t.funding for t in trades])
    equity = 2000.0 + np.concatenate(([0.0], np.cumsum(net)))
    peak = np.maximum.accumulate(equity)
    assert _fact(page, "summary-trades") == "40"
    assert _fact(page, "summary-pnl") == f"{net.sum():+,.2f}"
    assert _fact(page, "summary-fees") == f"{0.05 * 40:,.2f}"
    assert _fact(page, "summary-funding") == f"{sum(t.funding for t in trades):+,.2f}"
    assert _fact(page, "summary-win-rate") == f"{100 * np.mean(net > 0):.2f} %"
    assert _fact(page, "summary-max-drawdown") == f"{100 * np.max((peak - equity) / peak):.2f} %"
    assert _fact(page, "summary-final-equity") == f"{equity[-1]:,.2f}"
    gains, losses = net[net > 0].sum(), -net[net < 0].sum()
    assert _fact(page, "summary-profit-factor") == f"{gains / losses:.2f}"
    trade_rows = page.split('<table class="trades">')[1].split("</table>")[0].count("<tr>") - 1  # less the head
    assert trade_rows == 40
    by_bot = page.split('<table class="by-bot">')[1].split("</table>")[0]
    for symbol, timeframe in BOTS:
        mine = [t.pnl + t.funding for t in trades if t.symbol == symbol]
        assert f"<td>{symbol} {timeframe}</td><td>20</td>" in by_bot and f"{sum(mine):+,.2f}" in by_bot


def test_since_counts_later_trades_from_the_balance_earlier_ones_left(tmp_path, monkeypatch):
    cli_settings_env(monkeypatch, tmp_path, ("BTC/USDT:USDT",), "5m")
    trades = _trades(30)
    _journal(tmp_path, trades, mode="live")
    since = trades[10].exit_ts
    out = tmp_path / "live.html"
    assert _run(tmp_path, "report", "--mode", "live", "--since", str(since), "--out", str(out)) == 0
    page = out.read_text()
    before = sum(t.pnl + t.funding for t in trades[:10])
    later = sum(t.pnl + t.funding for t in trades[10:])
    assert _fact(page, "summary-trades") == "20" and _fact(page, "summary-pnl") == f"{later:+,.2f}"
    assert f"starting balance {10_000 + before:,.2f}" in page
    assert _fact(page, "summary-final-equity") == f"{10_000 + before + later:,.2f}"


def test_a_hostile_symbol_is_escaped_in_the_tables_and_the_charts(tmp_path, monkeypatch):
    cli_settings_env(monkeypatch, tmp_path, ("BTC/USDT:USDT",), "5m")
    hostile = "<script>alert('x')</script>&\"$^{"  # and a TeX-looking "$": text to matplotlib, not maths
    _journal(tmp_path, _trades(6, bots=((hostile, "5m"), ("BTC/USDT:USDT", "1m"))))
    out = tmp_path / "r.html"
    assert _run(tmp_path, "report", "--out", str(out)) == 0
    page = out.read_text()
    _offline(page)
    assert "alert(" in page and "<script" not in page.lower()
    assert page.count("&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;&amp;&quot;$^{ 5m") == 4  # trade list, bot table
    assert re.search(r"<text[^>]*>&lt;script&gt;alert\(", page)  # the bar chart's label, escaped by matplotlib


@pytest.mark.slow
def test_a_garbled_journal_is_one_line_from_the_command_however_long(tmp_path):
    """The reader would warn of every unreadable line; the command tells them in its one line."""
    _journal(tmp_path, [], extra_lines=["not json"] * 50 + ["[1, 2]"])
    result = subprocess.run([sys.executable, "-m", "trading_bot", "report"], cwd=tmp_path, capture_output=True,
                            text=True, timeout=60, env=subprocess_env(tmp_path))
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert "(empty, and 51 unreadable line(s)): nothing to report" in result.stderr


@pytest.mark.parametrize(("setup", "args", "message"), [
    ("none", [], "(missing): nothing to report"),
    ("empty", [], "(empty): nothing to report"),
    ("garbage", [], "(none of its 3 records, and 2 unreadable line(s)): nothing to report"),
    ("trades", ["--since", "yesterday"], "--since: expected YYYY-MM-DD"),
    ("trades", ["--since", "2099-01-01"], "no trade in "),
    ("trades", ["--out", "."], "--out .: is a folder"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, monkeypatch, capsys, setup, args, message):
    cli_settings_env(monkeypatch, tmp_path, ("BTC/USDT:USDT",), "5m")
    if setup == "empty":
        _journal(tmp_path, [])
    elif setup == "garbage":  # a list and "not json" are skipped by the reader; the rest are not trades
        good = _trades(1)[0].to_json()
        _journal(tmp_path, [], extra_lines=["[1, 2]", "not json", '{"pnl": "x"}', json.dumps({**good, "qty": "1"}),
                                            json.dumps({**good, "pnl": float("nan")})])
    elif setup == "trades":
        _journal(tmp_path, _trades(3))
    monkeypatch.chdir(tmp_path)
    assert _run(tmp_path, "report", *args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("trading-bot: error: ") and message in err[0], err


def test_backtest_report_is_the_backtests_trades(tmp_path, monkeypatch, capsys):
    cli_settings_env(monkeypatch, tmp_path, ("BTC/USDT:USDT",), "1m")
    write_synthetic_cache(make_settings(tmp_path).candles_dir, "BTC/USDT:USDT", "1m", 1200, seed=4,
                          end_ms=1_700_000_100_000)
    out = tmp_path / "reports" / "bt.html"
    assert _run(tmp_path, "backtest", "--json", "--report", str(out)) == 0
    result = json.loads(capsys.readouterr().out)["portfolio"]  # stdout stays JSON: "wrote" goes to stderr
    page = out.read_text()
    _offline(page)
    assert _fact(page, "summary-trades") == str(result["trades"]) and result["trades"] > 0
    assert _fact(page, "summary-final-equity") == f"{result['final_equity']:,.2f}"
    assert _fact(page, "summary-max-drawdown") == f"{100 * result['max_drawdown']:.2f} %"


def test_backtest_with_an_unwritable_report_stops_before_the_run(tmp_path, monkeypatch, capsys):
    cli_settings_env(monkeypatch, tmp_path, ("BTC/USDT:USDT",), "1m")
    (tmp_path / "file").write_text("")
    assert _run(tmp_path, "backtest", "--report", str(tmp_path / "file" / "r.html")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--report" in err[0] and "cannot write in" in err[0]


def test_the_daemon_never_loads_matplotlib(tmp_path):
    code = ("import sys; from trading_bot.cli.main import main; rc = main(['run', '--cycles', '2']); "
            "print(rc, sorted(m for m in sys.modules if m.split('.')[0] == 'matplotlib' or m == 'trading_bot.reports'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60,
                         env=subprocess_env(tmp_path, HEARTBEAT_SECONDS="0.05", TRADING_SYMBOLS="BTC/USDT:USDT",
                                            TRADING_TIMEFRAMES="1m"))
    assert out.stdout.strip().splitlines()[-1] == "0 []", out.stdout + out.stderr


def test_analyze_report_has_a_section_per_bot_and_leaves_the_config_as_without_it(tmp_path, monkeypatch, capsys):
    symbols = ("BTC/USDT:USDT", "ETH/USDT:USDT")
    cli_settings_env(monkeypatch, tmp_path, symbols, "5m")
    settings = make_settings(tmp_path)
    for seed, symbol in enumerate(symbols):
        write_synthetic_cache(settings.candles_dir, symbol, "5m", 1200, seed=seed, end_ms=1_700_000_100_000)
    grid = ["--sl", "0.005,0.01", "--rr", "1,2", "--min-trades", "5", "--workers", "1"]
    documents = []
    for name, extra in (("plain", []), ("reported", ["--report", str(tmp_path / "analysis.html")])):
        monkeypatch.setenv("STRATEGY_CONFIG", str(tmp_path / name / "strategy_config.json"))
        assert _run(tmp_path, "analyze", *grid, "--json", *extra) == 0
        results = json.loads(capsys.readouterr().out)["results"]
        document = json.loads((tmp_path / name / "strategy_config.json").read_text())
        for bot in document["bots"].values():
            for entry in bot.values():
                entry["provenance"].pop("analyzed_at")
        documents.append(document)
    assert documents[0] == documents[1] and len(documents[0]["bots"]) == 2
    page = (tmp_path / "analysis.html").read_text()
    _offline(page)
    assert page.count("<svg") == 2  # one figure of heatmaps per bot
    for k, r in enumerate(results):
        bot = page.split(f'<section id="bot-{k}">')[1].split("</section>")[0]
        assert f"<h2>{r['symbol']} 5m</h2>" in bot and '<text id="cell-' in bot
        assert len(re.findall(r"<text[^>]*>threshold ", bot)) == len(r["thresholds"]) == 9
        c = r["chosen"]
        t, i, j = r["thresholds"].index(c["threshold"]), [0.005, 0.01].index(c["sl_pct"]), [1.0, 2.0].index(c["rr_ratio"])
        assert re.findall(r'<g id="chosen-(\d+-\d+-\d+)">', bot) == [f"{t}-{i}-{j}"]


def test_a_page_without_trades_says_so_and_draws_nothing():
    """What `backtest --report` writes for a backtest that made no trade (`report` refuses instead)."""
    from trading_bot.reports.journal_report import ReportSource, render_trade_report

    page = render_trade_report([], 1000.0, ReportSource("Backtest report", "no <trades>"))
    _offline(page)
    assert "No closed trades." in page and "<svg" not in page and "no &lt;trades&gt;" in page
