"""The analyzer report's heatmaps are the analyzer's grid: every cell's training objective as the
analyzer evaluated it, the chosen cell outlined; and the equity curve's thinning keeps its extremes."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest

from trading_bot.backtest.analyzer import AnalysisOptions, Grid, SeriesJob, _evaluate, analyze_series, load_history
from trading_bot.domain.params import default_config
from trading_bot.domain.timeframes import timeframe_ms
from trading_bot.marketdata.candle_csv import append_candles, cache_file_name
from trading_bot.marketdata.synthetic import synthetic_candles
from trading_bot.reports.analyzer_report import chosen_cell, render_analyzer_report
from trading_bot.reports.charts import MAX_CURVE_POINTS, cell_label, thin
from trading_bot.signals.scoring import signal_sides

OPTIONS = AnalysisOptions(grid=Grid((0.005, 0.01, 0.02), (1.0, 2.0)), min_trades=30)  # thresholds: 9 quantiles


@pytest.fixture(scope="module")
def analyzed(tmp_path_factory):
    """One series analyzed once for the module's tests: (job, result)."""
    symbol, timeframe = "BTC/USDT:USDT", "5m"
    path = tmp_path_factory.mktemp("candles") / cache_file_name(symbol, timeframe)
    append_candles(path, synthetic_candles(symbol, timeframe_ms(timeframe), 1_700_000_000_000, 3000, None, 5))
    job = SeriesJob(symbol, timeframe, str(path), default_config().params_for(symbol, timeframe).weights)
    return job, analyze_series(job, OPTIONS)


def test_the_surface_is_every_cells_training_objective_and_the_choice_is_its_best(analyzed):
    job, result = analyzed
    assert result.surface is not None and result.chosen is not None
    assert result.surface.shape == (len(result.thresholds), len(OPTIONS.grid.sl), len(OPTIONS.grid.rr))
    # Independently, cell by cell, on the training candles (the first 70 %), as the analyzer scores them.
    from trading_bot.backtest.reference import series_scores

    candles = load_history(job.path)
    scores = series_scores(candles, default_config().params_for(job.symbol, job.timeframe))
    train_end = int(candles.shape[0] * OPTIONS.train_fraction)
    for t, threshold in enumerate(result.thresholds):
        sides = signal_sides(scores, threshold).astype(np.int64)
        for i, sl in enumerate(OPTIONS.grid.sl):
            for j, rr in enumerate(OPTIONS.grid.rr):
                m = _evaluate(candles, sides, 0, train_end, sl, rr, OPTIONS, timeframe_ms(job.timeframe), OPTIONS.min_trades)
                expected = math.nan if m is None else m.sharpe
                assert np.isnan(result.surface[t, i, j]) if m is None else result.surface[t, i, j] == expected
    assert np.isnan(result.surface).any() and np.isfinite(result.surface).any()  # both kinds of cell drawn below
    t, i, j = chosen_cell(result, OPTIONS)
    assert result.surface[t, i, j] == np.nanmax(result.surface) == result.train["sharpe"]
    assert "surface" not in result.as_json()  # the analyzer's JSON (and the config) unchanged


def test_the_heatmaps_show_the_surface_and_outline_the_choice(analyzed):
    _, result = analyzed
    page = render_analyzer_report([result], OPTIONS)
    assert page.count("<svg") == 1 and len(re.findall(r"<text[^>]*>threshold ", page)) == len(result.thresholds)
    labels = dict(re.findall(r'<text id="cell-(\d+-\d+-\d+)"[^>]*>([^<]*)</text>', page))
    expected = {f"{t}-{i}-{j}": cell_label(float(v)) for (t, i, j), v in np.ndenumerate(result.surface) if np.isfinite(v)}
    assert labels == expected and expected
    assert re.findall(r'<g id="chosen-(\d+)-(\d+)-(\d+)">', page) == [tuple(str(k) for k in chosen_cell(result, OPTIONS))]
    train_test = page.split('<table class="train-test">')[1].split("</table>")[0]
    assert f"<tr><td>trades</td><td>{result.train['trades']}</td><td>{result.test['trades']}</td></tr>" in train_test


def test_thinning_keeps_the_ends_the_lows_and_the_highs():
    curve = 10_000 + np.cumsum(np.random.default_rng(1).normal(0, 5, 100_001))
    keep = thin(curve)
    assert len(keep) <= MAX_CURVE_POINTS + 2 and np.all(np.diff(keep) > 0)
    assert {0, len(curve) - 1, int(np.argmin(curve)), int(np.argmax(curve))} <= set(keep.tolist())
    assert thin(curve[:500]).tolist() == list(range(500))  # a short curve is drawn whole
