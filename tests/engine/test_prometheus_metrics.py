"""METRICS_PORT: the Prometheus endpoint of a paper daemon on the synthetic market, and its absence."""

from __future__ import annotations

import asyncio
import json
import re
import socket
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from conftest import free_port, make_settings, subprocess_env
from fakes.clocks import JAN_1_2026_MS, SharedClock
from trading_bot.engine.daemon import Daemon
from trading_bot.marketdata.sources import SyntheticSource
from trading_bot.persistence.state_store import StateStore
from trading_bot.persistence.strategy_config_file import write_config

KEYS = [("BTC/USDT:USDT", "1m"), ("BTC/USDT:USDT", "5m"), ("ETH/USDT:USDT", "1m"), ("ETH/USDT:USDT", "5m")]


ROOT = Path(__file__).resolve().parents[2]
# Absent from a paper run on the synthetic market (no exchange client, no account, no websocket feed).
LIVE_ONLY = {"trading_bot_entry_latency_seconds", "trading_bot_exchange_requests_total", "trading_bot_exchange_errors_total",
             "trading_bot_exchange_request_duration_seconds_bucket", "trading_bot_exchange_weight_used",
             "trading_bot_exchange_weight_limit", "trading_bot_reconciliation_problems",
             "trading_bot_candle_feed_connections", "trading_bot_user_stream_state"}

def metrics_daemon(tmp_path, port: int, cycles: int | None = None) -> Daemon:
    settings = make_settings(tmp_path, symbols=("BTC/USDT:USDT", "ETH/USDT:USDT"), timeframes=("1m", "5m"),
                             metrics_port=port)
    write_config(settings.strategy_config, {"version": 1, "defaults": {"sl_pct": 0.004, "rr_ratio": 1.5}})  # trades soon
    return Daemon(settings, cycles=cycles, clock=SharedClock(JAN_1_2026_MS, wake_every_ms=60_000),
                  source=SyntheticSource(settings.synthetic_seed), install_signals=False)


async def scrape(port: int) -> str:
    async with aiohttp.ClientSession() as session, session.get(f"http://127.0.0.1:{port}/metrics") as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain; version=")
        return await response.text()


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample by (name, sorted labels); parsing it proves the text is valid exposition format."""
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


async def test_a_scrape_shows_the_heartbeats_figures(tmp_path):
    port = free_port()
    daemon = metrics_daemon(tmp_path, port)
    await daemon.start()
    await daemon.start_metrics()
    try:
        broker = daemon.parts.broker
        for _ in range(120):  # until a trade closed and a position is open (about 40 simulated minutes)
            await daemon.tick()
            daemon.parts.clock.advance(60_000)
            if broker.wallet.trades and broker.open_positions():
                break
        assert broker.wallet.trades and broker.open_positions()
        text = await scrape(port)
        status = json.loads(StateStore(daemon.state_dir).status_path.read_text())
    finally:
        await daemon.shutdown()
    got = samples(text)
    assert got["trading_bot_equity_usdt", ()] == pytest.approx(status["equity"], rel=1e-12)
    assert got["trading_bot_balance_usdt", ()] == status["balance"]
    assert got["trading_bot_unrealised_pnl_usdt", ()] == pytest.approx(status["unrealised_pnl"], rel=1e-12)
    assert got["trading_bot_realised_pnl_usdt", ()] == pytest.approx(status["realised_pnl"])
    assert got["trading_bot_fees_paid_usdt", ()] == status["fees_paid"]
    assert got["trading_bot_funding_usdt", ()] == status["funding"]
    assert status["unrealised_pnl"] != 0 and status["trades"] > 0  # the figures compared below are not all zeros
    assert got["trading_bot_heartbeat_duration_seconds_count", ()] == status["heartbeat"] == daemon.figures.number
    assert 0 < got["trading_bot_heartbeat_duration_seconds_sum", ()] < 3
    assert got["trading_bot_bots", ()] == 4
    for symbol in ("BTC/USDT:USDT", "ETH/USDT:USDT"):
        assert ("trading_bot_open_positions", (("symbol", symbol),)) in got
    assert sum(v for (name, _), v in got.items() if name == "trading_bot_open_positions") == status["open_positions"]
    wins = got["trading_bot_trades_closed_total", (("outcome", "win"),)]
    assert wins + got["trading_bot_trades_closed_total", (("outcome", "loss"),)] == status["trades"]
    assert wins == status["wins"]
    assert {labels: v for (name, labels), v in got.items() if name == "trading_bot_trading_state"} == {
        (("state", "active"),): 1.0, (("state", "reducing"),): 0.0, (("state", "halted"),): 0.0}
    assert got["trading_bot_cache_hit_ratio", (("cache", "features"),)] == pytest.approx(
        status["cache"]["feature_hit_rate"], abs=1e-4)
    # each series' last closed candle, at most one timeframe old (the clock moved on after the last tick)
    for symbol, timeframe in KEYS:
        age = got["trading_bot_candle_age_seconds", (("symbol", symbol), ("timeframe", timeframe))]
        assert 0 <= age <= {"1m": 60, "5m": 300}[timeframe]
    assert got["trading_bot_order_intents", ()] == 0
    assert not any(name.startswith("trading_bot_entry_latency") for name, _ in got)  # paper: no order latency
    assert not any(name == "trading_bot_exchange_requests_total" for name, _ in got)  # no client on the synthetic market
    check = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, check.stdout + check.stderr  # promtool: Debian's prometheus (scripts/ensure-system-tools.sh)
    assert got["trading_bot_unprotected_positions", ()] == 0  # paper: the rules hold every stop and target
    for symbol, timeframe in KEYS:
        assert got["trading_bot_candle_overdue_seconds", (("symbol", symbol), ("timeframe", timeframe))] == 0
    # every series the shipped alerts and dashboard ask for is in the scrape (live-only ones: below)
    names = {name for name, _ in got}
    for path in (ROOT / "scripts" / "prometheus-alerts.yml", ROOT / "scripts" / "grafana-dashboard.json"):
        for name in set(re.findall(r"trading_bot_[a-z_]+", path.read_text())) - LIVE_ONLY:
            assert name in names, f"{path.name} asks for {name}, which the daemon does not export"


def test_the_shipped_alert_rules_pass_promtool():
    check = subprocess.run(["promtool", "check", "rules", str(ROOT / "scripts" / "prometheus-alerts.yml")],
                           capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "SUCCESS: 8 rules found" in check.stdout


async def test_entry_latency_when_there_are_some(tmp_path):
    from trading_bot.engine.metrics import Metrics
    from trading_bot.execution.latency import LatencyStats

    daemon = metrics_daemon(tmp_path, 0)
    await daemon.start()
    try:
        latency = LatencyStats()
        for ms in (10.0, 20.0, 30.0):
            latency.add(ms)
        daemon.parts.broker.latency = latency  # live's figures, on the paper broker
        metrics = Metrics("127.0.0.1", 0)
        metrics.refresh(daemon.parts.report)
        got = samples(metrics.exposition().decode())
    finally:
        await daemon.shutdown()
    assert got["trading_bot_entry_latency_seconds", (("quantile", "0.5"),)] == pytest.approx(0.02)
    assert got["trading_bot_entry_latency_seconds", (("quantile", "0.99"),)] == pytest.approx(0.0298)
    assert got["trading_bot_entry_latency_orders", ()] == 3


async def test_run_serves_after_ready_and_stops_serving_at_shutdown(tmp_path):
    port = free_port()
    daemon = metrics_daemon(tmp_path, port, cycles=10_000)
    scraped: list[str] = []

    async def scrape_then_stop() -> None:
        while not scraped:
            try:
                scraped.append(await scrape(port))
            except aiohttp.ClientConnectionError:
                await asyncio.sleep(0.01)  # not ready yet
        daemon.request_stop()

    scraper = asyncio.create_task(scrape_then_stop())
    await asyncio.wait_for(daemon.run(), 10)
    await scraper
    assert samples(scraped[0])["trading_bot_bots", ()] == 4
    with pytest.raises(aiohttp.ClientConnectionError):
        await scrape(port)


async def test_a_taken_port_is_logged_and_the_daemon_trades_without_metrics(tmp_path, caplog):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        daemon = metrics_daemon(tmp_path, taken.getsockname()[1], cycles=2)
        await daemon.run()
    assert daemon.figures.number == 2
    assert daemon.parts.report.metrics is None
    assert "METRICS_PORT: cannot listen on 127.0.0.1" in caplog.text


def test_without_metrics_port_the_daemon_never_loads_prometheus_client(tmp_path):
    code = ("import sys; from trading_bot.cli.main import main; rc = main(['run', '--cycles', '2']); "
            "print(rc, 'prometheus_client' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60,
                         env=subprocess_env(tmp_path, HEARTBEAT_SECONDS="0.05", TRADING_SYMBOLS="BTC/USDT:USDT",
                                            TRADING_TIMEFRAMES="1m", METRICS_PORT="0"))
    assert out.stdout.strip().splitlines()[-1] == "0 False", out.stdout + out.stderr


@pytest.mark.slow
async def test_a_real_prometheus_scrapes_the_daemon_and_loads_the_alert_rules(tmp_path):
    """Debian's prometheus server, scraping every 0.2 s, with the shipped rules: it sees the daemon up,
    reads its figures, and evaluates every rule without error (none firing for a healthy paper run)."""
    port, server_port = free_port(), free_port()
    daemon = metrics_daemon(tmp_path, port)
    await daemon.start()
    await daemon.start_metrics()
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 200ms, evaluation_interval: 200ms}\n"
        f"rule_files: [{ROOT / 'scripts' / 'prometheus-alerts.yml'}]\n"
        "scrape_configs:\n"
        f"  - {{job_name: trading-bot, static_configs: [{{targets: ['127.0.0.1:{port}']}}]}}\n")
    server_log = (tmp_path / "prometheus.log").open("wb")
    server = subprocess.Popen(["prometheus", f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                               f"--web.listen-address=127.0.0.1:{server_port}"],
                              stdout=server_log, stderr=subprocess.STDOUT)
    api = f"http://127.0.0.1:{server_port}/api/v1"
    try:
        for _ in range(3):
            await daemon.tick()
            daemon.parts.clock.advance(60_000)
        async with aiohttp.ClientSession() as session:
            async def query(expr: str) -> list:
                async with session.get(f"{api}/query", params={"query": expr}) as answer:
                    return (await answer.json())["data"]["result"]

            for _ in range(150):  # the server's start and its first scrapes: a few seconds
                await asyncio.sleep(0.1)
                try:
                    if await query('up{job="trading-bot"} == 1') and await query("trading_bot_bots"):
                        break
                except aiohttp.ClientError:
                    continue  # not listening yet
            [bots] = await query("trading_bot_bots")
            assert float(bots["value"][1]) == 4
            equity = await query("trading_bot_equity_usdt")
            assert float(equity[0]["value"][1]) == pytest.approx(daemon.parts.report.equity())
            # every query of the shipped dashboard is valid PromQL to a real server, and those a paper
            # run can answer return data (Grafana itself is not packaged for Debian: its JSON is checked here)
            dashboard = json.loads((ROOT / "scripts" / "grafana-dashboard.json").read_text())
            for panel in dashboard["panels"]:
                for target in panel["targets"]:
                    expr = target["expr"].replace("$instance", ".*")
                    async with session.get(f"{api}/query", params={"query": expr}) as answer:
                        body = await answer.json()
                    assert body["status"] == "success", (panel["title"], expr, body)
                    answerable = not set(re.findall(r"trading_bot_[a-z_]+", expr)) & LIVE_ONLY
                    # rates need two scrapes in their window; a filter (> 0) may match nothing yet
                    if answerable and "rate(" not in expr and "increase(" not in expr and ">" not in expr:
                        assert body["data"]["result"], (panel["title"], expr)
            await asyncio.sleep(0.5)  # a few rule evaluations
            async with session.get(f"{api}/rules") as answer:
                groups = (await answer.json())["data"]["groups"]
        rules = [rule for group in groups for rule in group["rules"]]
        assert len(rules) == 8 and all(rule["health"] == "ok" for rule in rules), (rules, _tail(tmp_path))
        assert not [rule["name"] for rule in rules if rule["state"] == "firing"]
    finally:
        server.terminate()
        server.wait(timeout=10)
        server_log.close()
        await daemon.shutdown()


def _tail(tmp_path: Path) -> str:
    return (tmp_path / "prometheus.log").read_text(errors="replace")[-2000:]


async def test_a_live_scrape_shows_the_exchange_the_feed_and_the_reconciliations(tmp_path, market):
    """Live against the fake exchange: requests, errors (a -1001 the retry got past), their durations,
    the weight of the minute, the reconciliation at start, the user data stream and the candle feed."""
    from fakes.live_bot import open_a_position

    clock, fake = market
    daemon, _ = await open_a_position(tmp_path, clock, fake, metrics_port=free_port())
    await daemon.start_metrics()
    try:
        client = daemon.exchange.made()
        assert client is not None
        fake.inject("-1001", "/fapi/v1/klines")  # candles come pushed: a read of our own, which the retry gets past
        await client.call("fetch_ohlcv", "BTC/USDT:USDT", "1m", limit=2)
        clock.advance(60_000)
        await daemon.tick()
        got = samples(await scrape(daemon.settings.metrics_port))
        calls = dict(client.calls)
    finally:
        await daemon.shutdown()
    requests = {dict(labels)["method"]: v for (name, labels), v in got.items() if name == "trading_bot_exchange_requests_total"}
    assert requests == calls and requests["create_order"] >= 3  # the entry, its stop and its target
    errors = {(dict(labels)["method"], dict(labels)["error"]): v
              for (name, labels), v in got.items() if name == "trading_bot_exchange_errors_total"}
    assert errors == {("fetch_ohlcv", "OperationFailed"): 1}  # ccxt's class for Binance's -1001
    assert got["trading_bot_exchange_request_duration_seconds_count", ()] == sum(calls.values())
    assert got["trading_bot_exchange_request_duration_seconds_bucket", (("le", "+Inf"),)] == sum(calls.values())
    assert 0 < got["trading_bot_exchange_request_duration_seconds_sum", ()] < 5
    assert 0 < got["trading_bot_exchange_weight_used", ()] <= 2400 == got["trading_bot_exchange_weight_limit", ()]
    assert got["trading_bot_reconciliations_total", (("result", "done"),)] >= 1
    assert got["trading_bot_reconciliations_total", (("result", "failed"),)] == 0
    assert got["trading_bot_reconciliation_problems", ()] == 0
    assert got["trading_bot_user_stream_state", (("state", "connected"),)] == 1
    assert got["trading_bot_candle_feed_connections", (("state", "live"),)] == 1
    assert got["trading_bot_unprotected_positions", ()] == 0
    assert got["trading_bot_entry_latency_orders", ()] == 1
    names = {name for name, _ in got}
    for name in LIVE_ONLY:
        assert name in names


@pytest.mark.parametrize(("bound_to", "host", "status"), [
    ("127.0.0.1", "127.0.0.1:{port}", 200), ("127.0.0.1", "localhost:{port}", 200), ("127.0.0.1", "LOCALHOST", 200),
    ("127.0.0.1", "rebound.attacker.example:{port}", 421), ("127.0.0.1", "192.168.1.20:{port}", 421),
    ("0.0.0.0", "192.168.1.20:{port}", 200), ("0.0.0.0", "bot.lan", 200)])
async def test_on_loopback_only_requests_addressed_to_loopback_are_answered(bound_to, host, status):
    """DNS rebinding: a page in the operator's browser resolving its own name to 127.0.0.1 sends its
    own Host header, and gets nothing (421). Bound wider (METRICS_HOST), any name is the operator's."""
    from trading_bot.engine.metrics import Metrics

    port = free_port()
    metrics = Metrics(bound_to, port)
    assert await metrics.start()
    try:
        async with aiohttp.ClientSession() as session, session.get(
                f"http://127.0.0.1:{port}/metrics", headers={"Host": host.format(port=port)}) as answer:
            assert answer.status == status
    finally:
        await metrics.close()


async def test_a_scrape_waits_for_the_heartbeat_in_progress_and_shows_its_figures(tmp_path):
    """The figures are built at the scrape, under the lock each heartbeat holds: never mid-tick."""
    port = free_port()
    daemon = metrics_daemon(tmp_path, port)
    await daemon.start()
    await daemon.start_metrics()
    try:
        async with daemon._trading:  # a heartbeat in progress
            scraping = asyncio.create_task(scrape(port))
            await asyncio.sleep(0.2)
            assert not scraping.done()
            daemon.parts.broker.pause()  # changed before it lets go: the scrape shows it
        got = samples(await scraping)
    finally:
        await daemon.shutdown()
    assert got["trading_bot_trading_state", (("state", "halted"),)] == 1
    assert got["trading_bot_heartbeat_duration_seconds_count", ()] == 0  # no heartbeat published yet
