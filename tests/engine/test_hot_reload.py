"""The running daemon reloads the strategy config on mtime change; a broken file keeps the old one."""

from __future__ import annotations

import json
import logging
import os
import signal

from conftest import make_settings, write_synthetic_cache
from trading_bot.engine.daemon import Daemon
from trading_bot.persistence.strategy_config_file import write_config

SYMBOL, TF = "BTC/USDT:USDT", "1m"


def settings_for(tmp_path):
    settings = make_settings(tmp_path, symbols=(SYMBOL,), timeframes=(TF,), history_candles=2000)
    write_synthetic_cache(settings.candles_dir, SYMBOL, TF, 1200)
    write_config(settings.strategy_config, {"version": 1, "defaults": {"threshold": 0.15}})
    return settings


def bump_mtime(path, seconds):
    st = os.stat(path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + int(seconds * 1e9)))


async def test_new_config_takes_effect_within_one_heartbeat(tmp_path, caplog):
    settings = settings_for(tmp_path)
    daemon = Daemon(settings, replay=True, install_signals=False)
    seen: list[tuple[int, float]] = []
    rejected_status: dict = {}
    original_tick = daemon.tick

    async def tick() -> None:
        await original_tick()
        n = daemon.figures.number
        seen.append((n, daemon.parts.strategies[(SYMBOL, TF)].params.threshold))
        if n == 100:
            write_config(settings.strategy_config, {"version": 1, "defaults": {"threshold": 0.9}})
            bump_mtime(settings.strategy_config, 1)
        if n == 200:
            settings.strategy_config.write_text('{"version": 1, "defaults": {"threshold": 0.')  # torn write
            bump_mtime(settings.strategy_config, 2)
        if n == 300:
            settings.strategy_config.write_text(json.dumps({"version": 1, "defaults": {"sl_pct": float("nan")}}))
            bump_mtime(settings.strategy_config, 3)
        if n == 350:
            rejected_status.update(daemon.parts.report.status()["config"])
        if n == 400:
            write_config(settings.strategy_config, {"version": 1, "defaults": {"threshold": 0.5}})
            bump_mtime(settings.strategy_config, 4)
        if n == 450:
            daemon.stop_event.set()

    daemon.tick = tick  # type: ignore[method-assign]
    await daemon.run()
    thresholds = dict(seen)
    assert thresholds[100] == 0.15  # written during tick 100 …
    assert thresholds[101] == 0.9  # … in force from the next heartbeat
    assert thresholds[250] == 0.9 and thresholds[350] == 0.9  # broken files kept the previous config
    assert thresholds[401] == 0.5
    assert daemon.config.watch.reloads == 2
    assert caplog.text.count("strategy config rejected, keeping the previous one") == 2
    assert "not valid JSON" in caplog.text and "NaN is not a valid number" in caplog.text
    assert rejected_status["reloads"] == 1 and "NaN" in rejected_status["last_error"]
    status = daemon.parts.report.status()["config"]
    assert status["reloads"] == 2 and status["last_error"] is None  # cleared by the good file


async def test_sighup_forces_a_reload(tmp_path, caplog):
    caplog.set_level(logging.INFO)
    settings = settings_for(tmp_path)
    daemon = Daemon(settings, replay=True, cycles=3)
    original_tick = daemon.tick

    async def tick() -> None:
        if daemon.figures.number == 1:
            os.kill(os.getpid(), signal.SIGHUP)
        await original_tick()

    daemon.tick = tick  # type: ignore[method-assign]
    await daemon.run()
    assert "SIGHUP received" in caplog.text
    assert daemon.config.watch.reloads == 1


async def test_broken_config_at_startup_is_an_error(tmp_path):
    import pytest

    from trading_bot.domain.params import StrategyConfigError

    settings = settings_for(tmp_path)
    settings.strategy_config.write_text("{")
    with pytest.raises(StrategyConfigError, match="not valid JSON"):
        await Daemon(settings, replay=True, install_signals=False).run()


async def test_reload_survives_an_analyzer_rewriting_the_file_repeatedly(tmp_path, caplog):
    import threading

    settings = settings_for(tmp_path)
    stop = threading.Event()
    writes = [0]

    def analyzer_like_writer() -> None:
        while not stop.is_set():
            writes[0] += 1
            write_config(settings.strategy_config, {"version": 1, "defaults": {"threshold": 0.1 + (writes[0] % 7) / 100}})

    daemon = Daemon(settings, replay=True, install_signals=False)
    thread = threading.Thread(target=analyzer_like_writer)
    thread.start()
    try:
        await daemon.run()
    finally:
        stop.set()
        thread.join()
    assert writes[0] > 20 and daemon.config.watch.reloads > 5
    assert "rejected" not in caplog.text  # atomic replace: the daemon never sees a half-written file


async def test_the_analyzer_writes_and_the_running_daemon_trades_with_it(tmp_path):
    from trading_bot.backtest.analyzer import AnalysisOptions, Grid, jobs_for, run_jobs, updated_document

    settings = settings_for(tmp_path)
    daemon = Daemon(settings, replay=True, install_signals=False)
    seen: dict[int, float] = {}
    chosen: dict[str, float] = {}
    original_tick = daemon.tick

    async def tick() -> None:
        await original_tick()
        seen[daemon.figures.number] = daemon.parts.strategies[(SYMBOL, TF)].params.threshold
        if daemon.figures.number == 50:
            options = AnalysisOptions(grid=Grid(sl=(0.004,), rr=(1.5,), thresholds=(0.12,)), min_trades=1)
            config = daemon.config.watch.config
            results = run_jobs(jobs_for([(SYMBOL, TF)], settings.candles_dir, config), options, None)
            write_config(settings.strategy_config, updated_document(config.document, results, options, config))
            chosen.update(results[0].chosen or {})
            bump_mtime(settings.strategy_config, 5)
        if daemon.figures.number == 60:
            daemon.stop_event.set()

    daemon.tick = tick  # type: ignore[method-assign]
    await daemon.run()
    assert chosen == {"threshold": 0.12, "sl_pct": 0.004, "rr_ratio": 1.5}
    assert seen[50] == 0.15 and seen[51] == 0.12  # in force from the next heartbeat
    assert daemon.parts.strategies[(SYMBOL, TF)].params.sl_pct == 0.004


async def test_a_typo_is_refused_at_startup_and_on_reload_the_previous_config_is_kept(tmp_path, caplog):
    import pytest

    from trading_bot.domain.params import StrategyConfigError

    settings = settings_for(tmp_path)
    write_config(settings.strategy_config, {"version": 1, "bots": {SYMBOL: {TF: {"treshold": 0.3}}}})
    with pytest.raises(StrategyConfigError, match=r"unknown key 'treshold' \(did you mean 'threshold'\?\)"):
        await Daemon(settings, replay=True, install_signals=False).run()

    write_config(settings.strategy_config, {"version": 1, "defaults": {"threshold": 0.15}})
    daemon = Daemon(settings, replay=True, install_signals=False)
    seen: dict[int, float] = {}
    original_tick = daemon.tick

    async def tick() -> None:
        await original_tick()
        n = daemon.figures.number
        seen[n] = daemon.parts.strategies[(SYMBOL, TF)].params.threshold
        if n == 10:
            write_config(settings.strategy_config, {"version": 1, "bots": {SYMBOL: {TF: {"treshold": 0.9}}}})
            bump_mtime(settings.strategy_config, 1)
        if n == 20:
            write_config(settings.strategy_config, {"version": 1, "strategies": {}, "defaults": {"threshold": 0.9}})
            bump_mtime(settings.strategy_config, 2)
        if n == 30:
            daemon.stop_event.set()

    daemon.tick = tick  # type: ignore[method-assign]  # observe each heartbeat
    await daemon.run()
    assert seen[15] == seen[25] == seen[30] == 0.15  # the typos never replaced the config in force
    assert daemon.config.watch.reloads == 0
    assert caplog.text.count("strategy config rejected, keeping the previous one") == 2
    assert "did you mean 'threshold'?" in caplog.text and "unknown key 'strategies'" in caplog.text


async def test_an_override_for_an_untraded_symbol_is_a_warning_at_startup(tmp_path, caplog):
    settings = settings_for(tmp_path)
    write_config(settings.strategy_config, {"version": 1, "bots": {"DOGE/USDT:USDT": {"1m": {"threshold": 0.2}}}})
    await Daemon(settings, replay=True, install_signals=False, cycles=2).run()
    assert "strategy config: bots.DOGE/USDT:USDT: DOGE/USDT:USDT is not traded" in caplog.text
