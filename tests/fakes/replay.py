"""A replay and the backtest it must equal: the settings of a one-series replay with tight stops
(many trades in a short replay) and the trades the reference backtest makes over the same candles."""

from __future__ import annotations

from conftest import make_settings
from trading_bot.backtest.portfolio import PortfolioSeries, backtest_portfolio
from trading_bot.backtest.reference import backtest_series
from trading_bot.engine.candle_source import REPLAY_WARMUP_CANDLES, open_funding, replay_start_ms
from trading_bot.persistence.strategy_config_file import load_config, write_config

SYMBOL, TF = "BTC/USDT:USDT", "1m"
FAST_EXITS = {"version": 1, "defaults": {"sl_pct": 0.004, "rr_ratio": 1.5}}


def replay_settings(tmp_path, **changes):
    # FUNDING=off: the per-bot reference backtest has no funding (the portfolio backtest, which has,
    # is compared with the replay in tests/backtest/test_portfolio.py).
    changes = {"funding": "off", **changes}
    settings = make_settings(tmp_path, symbols=(SYMBOL,), timeframes=(TF,), history_candles=5000, **changes)
    write_config(settings.strategy_config, FAST_EXITS)  # tight stops: many trades in a short replay
    return settings


def expected_trades(settings, candles):
    params = load_config(settings.strategy_config).params_for(SYMBOL, TF)
    start = REPLAY_WARMUP_CANDLES + 1  # the first candle the replay delivers after its warm-up
    result = backtest_series(SYMBOL, TF, candles, params, settings.costs, settings.risk_limits,
                             settings.initial_balance, start_index=start)
    return [t.to_json() for t in result.trades]


def portfolio_result(settings, history, start_ms=None):
    """The portfolio backtest over `history` ({(symbol, timeframe): candles}) with the
    settings' costs, limits, account rules and funding: its trades are what the replay must journal."""
    config = load_config(settings.strategy_config)
    series = [PortfolioSeries(s, tf, candles, config.params_for(s, tf)) for (s, tf), candles in history.items()]
    funding = open_funding(settings, sorted({s for s, _ in history}))
    start = replay_start_ms(history) if start_ms is None else start_ms
    return backtest_portfolio(series, settings.costs, settings.risk_limits, settings.initial_balance, start,
                              settings.protections, funding)
