"""The portfolio backtest is the replay: all bots on one wallet under one cap, in the daemon's order of
events within an instant (domain/instant.py)."""

from __future__ import annotations

import numpy as np

from conftest import make_settings, write_synthetic_cache
from fakes.replay import FAST_EXITS, portfolio_result
from trading_bot.backtest.portfolio import PortfolioSeries, backtest_portfolio, portfolio_metrics
from trading_bot.backtest.reference import backtest_series
from trading_bot.domain.candles import TS
from trading_bot.domain.params import default_config
from trading_bot.domain.sizing import RiskLimits
from trading_bot.domain.trades import Costs
from trading_bot.engine.candle_source import replay_start_ms
from trading_bot.engine.daemon import Daemon
from trading_bot.marketdata.synthetic import synthetic_candles
from trading_bot.persistence.state_store import StateStore, read_journal
from trading_bot.persistence.strategy_config_file import write_config

SYMBOLS = ("BTC/USDT:USDT", "ETH/USDT:USDT")
TIMEFRAMES = ("1m", "3m", "5m")


def portfolio_of(settings, history, start_ms):
    return portfolio_result(settings, {key: history[key] for key in settings.bot_keys}, start_ms)


async def test_replay_of_six_bots_under_a_cap_of_two_is_the_portfolio_backtest(tmp_path):
    """2 symbols × 3 timeframes, MAX_OPEN_POSITIONS=2: the cap binds often, and bots of different
    timeframes close together (a 5m close is also a 1m and a 3m close). The replay's journal is the
    portfolio backtest's trade list, sizes included. Before the shared order, a bot evaluated first at
    an instant saw the slot of a position another bot was closing at that instant as taken."""
    settings = make_settings(tmp_path, symbols=SYMBOLS, timeframes=TIMEFRAMES, history_candles=5000,
                             max_open_positions=2)
    write_config(settings.strategy_config, FAST_EXITS)
    end_ms = 1_767_225_600_000  # fixed (the same data every run); every series closes its last candle together
    history = {(s, tf): write_synthetic_cache(settings.candles_dir, s, tf, 1500 if tf == "1m" else 700,
                                              seed=22, end_ms=end_ms)
               for s in SYMBOLS for tf in TIMEFRAMES}
    expected = portfolio_of(settings, history, replay_start_ms(history))
    assert len(expected.trades) >= 30 and len({(t.symbol, t.timeframe) for t in expected.trades}) == 6
    assert expected.skipped_entries > 0, "the cap must bind in this run"

    daemon = Daemon(settings, replay=True, install_signals=False)
    await daemon.run()
    journal = read_journal(StateStore(settings.state_dir(replay=True)).trades_path)
    assert journal == [t.to_json() for t in expected.trades]
    assert daemon.parts.broker.wallet.balance == expected.wallet.balance


async def test_replay_under_every_account_rule_is_the_portfolio_backtest(tmp_path):
    """The daily loss limit (over three UTC days), the cooldown and the max drawdown all refuse signals
    in this run, and the replay still makes the portfolio backtest's trades, sizes included."""
    settings = make_settings(tmp_path, symbols=SYMBOLS, timeframes=("5m", "15m"), history_candles=1000,
                             max_open_positions=3, daily_loss_limit=0.008, cooldown_stopouts=1, cooldown_candles=3,
                             max_drawdown=0.015, max_order_notional=4000.0)
    write_config(settings.strategy_config, FAST_EXITS)
    end_ms = 1_767_225_600_000 + 7 * 3_600_000  # 07:00 UTC: the series span three UTC days
    history = {(s, tf): write_synthetic_cache(settings.candles_dir, s, tf, 900 if tf == "5m" else 300,
                                              seed=23, end_ms=end_ms)
               for s in SYMBOLS for tf in ("5m", "15m")}
    expected = portfolio_of(settings, history, replay_start_ms(history))
    assert set(expected.refused) == {"daily_loss_limit", "cooldown", "max_drawdown"}, expected.refused
    assert expected.final_state.state == "halted" and len(expected.trades) >= 15
    assert max(t.qty * t.entry_price for t in expected.trades) <= 4000.0 * (1 + 1e-12)

    daemon = Daemon(settings, replay=True, install_signals=False)
    await daemon.run()
    journal = read_journal(StateStore(settings.state_dir(replay=True)).trades_path)
    assert journal == [t.to_json() for t in expected.trades]
    broker = daemon.parts.broker
    assert broker.wallet.balance == expected.wallet.balance
    assert broker.trading_state() == expected.final_state


def test_one_bot_portfolio_is_the_per_bot_backtest():
    params = default_config().params_for("BTC/USDT:USDT", "1m")
    candles = synthetic_candles("BTC/USDT:USDT", 60_000, 0, 5000, None, 5)
    costs, limits = Costs(0.0004, 0.0002), RiskLimits(0.01, 5.0, 1)
    start = 300
    per_bot = backtest_series("BTC/USDT:USDT", "1m", candles, params, costs, limits, 1000.0, start_index=start)
    portfolio = backtest_portfolio([PortfolioSeries("BTC/USDT:USDT", "1m", candles, params)], costs, limits, 1000.0,
                                   int(candles[start - 1, TS]) + 60_000)
    assert len(per_bot.trades) >= 10
    assert portfolio.trades == per_bot.trades and portfolio.wallet.balance == per_bot.final_balance
    assert portfolio.skipped_entries == 0  # one bot never meets the cap: its own position stops it first


def test_portfolio_metrics_come_from_the_shared_equity_curve():
    params = default_config().params_for("BTC/USDT:USDT", "1m")
    series = [PortfolioSeries(s, "1m", synthetic_candles(s, 60_000, 0, 3000, None, 5), params) for s in SYMBOLS]
    result = backtest_portfolio(series, Costs(), RiskLimits(0.01, 5.0, 1), 1000.0, 300 * 60_000)
    report = portfolio_metrics(result)
    assert result.skipped_entries > 0
    assert report.portfolio.trades == len(result.trades) == sum(m.trades for m in report.per_bot.values())
    assert report.portfolio.final_equity == result.wallet.balance
    assert 0 < report.portfolio.exposure <= 1.0  # one slot: never two positions at once


async def test_replay_over_gaps_in_the_data_is_the_portfolio_backtest(tmp_path):
    """Missing minutes in the 1m series: a signal before a gap fills at the open of the next recorded
    candle, sized by the wallet as it stands then (after the exits of that instant), in both."""
    from trading_bot.marketdata.candle_csv import append_candles, cache_file_name

    settings = make_settings(tmp_path, symbols=SYMBOLS, timeframes=("1m", "5m"), history_candles=5000,
                             max_open_positions=2)
    write_config(settings.strategy_config, FAST_EXITS)
    end_ms = 1_767_225_600_000  # fixed, so the data (and the gap this test needs) is the same every run
    history = {}
    rng = np.random.default_rng(5)
    for s in SYMBOLS:
        full = write_synthetic_cache(tmp_path / "full", s, "1m", 1500, seed=23, end_ms=end_ms)
        keep = np.ones(full.shape[0], dtype=bool)
        for start in rng.choice(np.arange(260, full.shape[0] - 10), 40, replace=False):
            keep[start:start + rng.integers(1, 7)] = False
        history[(s, "1m")] = full[keep]
        append_candles(settings.candles_dir / cache_file_name(s, "1m"), full[keep])
        history[(s, "5m")] = write_synthetic_cache(settings.candles_dir, s, "5m", 500, seed=23, end_ms=end_ms)
    expected = portfolio_of(settings, history, replay_start_ms(history))
    assert len(expected.trades) >= 20 and expected.skipped_entries > 0
    assert any(t.timeframe == "1m" and t.entry_ts > t.signal_ts + 60_000 for t in expected.trades), \
        "a signal before a gap fills after it"

    daemon = Daemon(settings, replay=True, install_signals=False)
    await daemon.run()
    journal = read_journal(StateStore(settings.state_dir(replay=True)).trades_path)
    assert journal == [t.to_json() for t in expected.trades]


async def test_replay_books_funding_like_the_portfolio_backtest_from_history_and_the_default(tmp_path):
    """BTC's rates come from its cached history (ms-late stamps, negative and positive rates), ETH has
    none and pays the default rate; 5m and 1h bots over three UTC days hold positions through funding
    moments. The replay's journal (each trade's funding apart from its PnL) and wallet are the backtest's."""
    from trading_bot.marketdata.funding_csv import funding_path, merge_funding_rates

    settings = make_settings(tmp_path, symbols=SYMBOLS, timeframes=("5m", "1h"), history_candles=5000,
                             max_open_positions=3)
    write_config(settings.strategy_config, {"version": 1, "defaults": {"sl_pct": 0.02, "rr_ratio": 2.0}})
    end_ms = 1_767_225_600_000 + 3 * 3_600_000
    history = {(s, tf): write_synthetic_cache(settings.candles_dir, s, tf, 1000 if tf == "5m" else 300,
                                              seed=31, end_ms=end_ms)
               for s in SYMBOLS for tf in ("5m", "1h")}
    first = end_ms - 12 * 86_400_000
    rates = [(first + i * 8 * 3_600_000 + i % 7, (-1) ** i * 0.0001 * (1 + i % 5)) for i in range(40)]
    merge_funding_rates(funding_path(settings.candles_dir, SYMBOLS[0]), rates)
    expected = portfolio_of(settings, history, replay_start_ms(history))
    by_symbol = {s: [t.funding for t in expected.trades if t.symbol == s and t.funding] for s in SYMBOLS}
    assert by_symbol[SYMBOLS[0]] and by_symbol[SYMBOLS[1]], "both symbols' trades carry funding"
    assert "history" in expected.funding_labels[SYMBOLS[0]]
    assert "no funding history cached" in expected.funding_labels[SYMBOLS[1]]
    assert expected.wallet.funding != 0

    daemon = Daemon(settings, replay=True, install_signals=False)
    await daemon.run()
    journal = read_journal(StateStore(settings.state_dir(replay=True)).trades_path)
    assert journal == [t.to_json() for t in expected.trades]
    wallet = daemon.parts.broker.wallet
    assert (wallet.balance, wallet.funding) == (expected.wallet.balance, expected.wallet.funding)
    status = daemon.parts.report.status()
    assert status["funding"] == expected.wallet.funding and status["fees_paid"] == expected.wallet.fees_paid
