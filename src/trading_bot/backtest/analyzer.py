"""The analyzer: a train/test grid search of stop-loss % × risk:reward × score threshold per bot.

Caching, as the design guide describes and further: per series the features are computed once, the
score series once, the entry sides once per threshold; every (sl, rr) pair reuses them, and the exit
simulation is the compiled kernel (backtest/kernel.py), checked trade for trade against the rules
the paper broker runs. Parameters are chosen on the training segment only; the test segment (the
later part of history) is only reported. Series run in parallel processes; results do not depend on
the number of workers.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Executor, ProcessPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np

from trading_bot import __version__
from trading_bot.backtest.metrics import Metrics, compute_metrics
from trading_bot.domain.candles import COLUMNS, HIGH, LOW, OPEN, TS
from trading_bot.domain.params import CONFIG_VERSION, StrategyConfig
from trading_bot.domain.timeframes import timeframe_ms
from trading_bot.marketdata.candle_csv import ReadReport, cache_file_name, clean_candles
from trading_bot.signals.features import DEFAULT_FEATURE_PARAMS, compute_features
from trading_bot.signals.scoring import score_components, signal_sides, weighted_score

DEFAULT_SL = tuple(round(0.005 * i, 4) for i in range(1, 7))  # 0.5 % … 3.0 %


DEFAULT_RR = (1.0, 1.5, 2.0, 2.5, 3.0)


THRESHOLD_QUANTILES = (0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95, 0.975, 0.99)


OBJECTIVES = ("sharpe", "sortino", "total_return", "profit_factor", "expectancy")


@dataclass(frozen=True)
class Grid:
    sl: tuple[float, ...] = DEFAULT_SL
    rr: tuple[float, ...] = DEFAULT_RR
    thresholds: tuple[float, ...] | None = None  # None: quantiles of |score| on the training data

    @property
    def size(self) -> int:
        return len(self.sl) * len(self.rr) * (len(self.thresholds) if self.thresholds else len(THRESHOLD_QUANTILES))


@dataclass(frozen=True)
class AnalysisOptions:
    grid: Grid = Grid()
    train_fraction: float = 0.7
    folds: int = 1
    objective: str = "sharpe"
    min_trades: int = 30
    fee_rate: float = 0.0004
    slippage: float = 0.0002
    risk_per_trade: float = 0.01
    leverage: float = 5.0
    max_open_positions: int = 10
    initial_balance: float = 10_000.0
    max_order_notional: float = 0.0


@dataclass
class SeriesJob:
    symbol: str
    timeframe: str
    path: str
    weights: tuple[float, ...]


@dataclass(frozen=True)
class TestSegment:
    """The last fold's test candles and their scores (computed over the whole history, so the earlier
    candles warm the indicators): what the portfolio check trades, handed back by the worker that
    already computed them (no second read of the file, no second feature pass)."""

    __test__ = False  # not a pytest class

    start: int  # index of the first test candle in the whole history
    candles: np.ndarray
    scores: np.ndarray

    @property
    def from_ts(self) -> int:
        return int(self.candles[0, TS])


@dataclass
class SeriesResult:
    symbol: str
    timeframe: str
    candles: int
    first_ts: int | None
    last_ts: int | None
    chosen: dict[str, float] | None = None
    train: dict[str, Any] | None = None
    test: dict[str, Any] | None = None
    folds: list[dict[str, Any]] = field(default_factory=list)
    thresholds: list[float] = field(default_factory=list)
    combinations: int = 0
    seconds: float = 0.0
    error: str | None = None
    test_segment: TestSegment | None = field(default=None, repr=False, compare=False)  # arrays: not in the JSON
    # The last fold's training objective of every cell, [threshold, sl, rr] in the grid's order (NaN:
    # fewer than min_trades trades, so it could not be chosen): what the analyzer report draws.
    surface: np.ndarray | None = field(default=None, repr=False, compare=False)  # not in the JSON either

    def as_json(self) -> dict[str, Any]:
        plain = asdict(replace(self, test_segment=None, surface=None))
        del plain["test_segment"], plain["surface"]
        return plain


def parse_range(text: str, name: str) -> tuple[float, ...]:
    """'0.005:0.03:0.005' (start:stop:step, inclusive) or '1,1.5,2'."""
    try:
        if ":" in text:
            start, stop, step = (float(x) for x in text.split(":"))
            if step <= 0 or stop < start:
                raise ValueError
            count = math.floor((stop - start) / step + 1e-9) + 1
            values = tuple(round(start + i * step, 10) for i in range(count))
        else:
            values = tuple(float(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise ValueError(f"{name}: expected start:stop:step or a comma-separated list, got {text!r}") from None
    if not values or any(not math.isfinite(v) or v <= 0 for v in values):
        raise ValueError(f"{name}: values must be positive numbers, got {text!r}")
    return values


def load_history(path: str) -> np.ndarray:
    """The whole CSV cache of a series (pandas' C parser: 100,000 rows in ~40 ms)."""
    import pandas as pd

    frame = pd.read_csv(path, dtype="float64", on_bad_lines="skip", engine="c")
    expected = ["timestamp", "open", "high", "low", "close", "volume"]
    if list(frame.columns) != expected:
        raise ValueError(f"{path}: expected columns {','.join(expected)}")
    return clean_candles(frame.to_numpy(dtype=np.float64), ReadReport())


def objective_value(metrics: Metrics, objective: str) -> float:
    """The objective as a comparable number (an unbounded value ranks above or below every finite one)."""
    value = getattr(metrics, objective)
    return value if math.isfinite(value) else (1e300 if value > 0 else -1e300)


def _evaluate(candles: np.ndarray, sides: np.ndarray, start: int, end: int, sl: float, rr: float,
              options: AnalysisOptions, tf_ms: int, min_trades: int = 0) -> Metrics | None:
    """Metrics of one combination on [start, end); None when it made fewer than min_trades trades
    (not worth the metrics: it cannot be chosen)."""
    from trading_bot.backtest.kernel import simulate

    trades = simulate(candles[:, OPEN], candles[:, HIGH], candles[:, LOW], sides, start, end, sl, rr, options.fee_rate,
                      options.slippage, options.risk_per_trade, options.leverage, options.max_open_positions,
                      options.initial_balance, options.max_order_notional)
    if trades.pnl.shape[0] < min_trades:
        return None
    period_ms = float(candles[end - 1, TS] - candles[start, TS] + tf_ms) if end > start else 0.0
    return compute_metrics(trades.pnl, options.initial_balance, period_ms, trades.candles_in_position, end - start)


def _choose(candles: np.ndarray, sides_by_threshold: dict[float, np.ndarray], start: int, end: int,
            options: AnalysisOptions, tf_ms: int
            ) -> tuple[tuple[float, float, float] | None, Metrics | None, int, np.ndarray]:
    """Best (threshold, sl, rr) on [start, end) by the objective, with at least min_trades trades.
    Ties: higher total return, then the smaller sl, rr and threshold (deterministic). Also every
    cell's objective (NaN below min_trades), [threshold, sl, rr]: one store per backtest."""
    best_key: tuple[float, ...] | None = None
    best: tuple[tuple[float, float, float], Metrics] | None = None
    combos = 0
    surface = np.full((len(sides_by_threshold), len(options.grid.sl), len(options.grid.rr)), np.nan)
    for t, (threshold, sides) in enumerate(sides_by_threshold.items()):
        for (i, sl), (j, rr) in itertools.product(enumerate(options.grid.sl), enumerate(options.grid.rr)):
            combos += 1
            metrics = _evaluate(candles, sides, start, end, sl, rr, options, tf_ms, options.min_trades)
            if metrics is None:
                continue
            surface[t, i, j] = getattr(metrics, options.objective)
            key = (-objective_value(metrics, options.objective), -metrics.total_return, sl, rr, threshold)
            if best_key is None or key < best_key:
                best_key, best = key, ((threshold, sl, rr), metrics)
    if best is None:
        return None, None, combos, surface
    return best[0], best[1], combos, surface


def analyze_series(job: SeriesJob, options: AnalysisOptions) -> SeriesResult:
    started = time.perf_counter()
    try:
        candles = load_history(job.path)
    except (OSError, ValueError) as exc:
        return SeriesResult(job.symbol, job.timeframe, 0, None, None, error=str(exc))
    n = candles.shape[0]
    result = SeriesResult(job.symbol, job.timeframe, n, int(candles[0, TS]) if n else None,
                          int(candles[-1, TS]) if n else None)
    too_short = f"only {n} candles: not enough history to analyze"
    if n == 0:
        result.error = too_short
        return result
    scores = weighted_score(score_components(compute_features(candles)), job.weights)  # once per series
    test_start = last_test_start(n, options)
    # Copies: a view would keep the whole history alive in the parent (serial runs) for the check.
    result.test_segment = TestSegment(test_start, candles[test_start:].copy(), scores[test_start:].copy())
    if n < DEFAULT_FEATURE_PARAMS.warmup + 2 * max(options.min_trades, 10):
        result.error = too_short  # still traded in the portfolio check, with its current parameters
        return result
    tf_ms = timeframe_ms(job.timeframe)
    boundaries = _segments(n, options)
    first_train_end = boundaries[0][0]
    if options.grid.thresholds:
        thresholds = tuple(options.grid.thresholds)
    else:  # from the first training segment only: the test data never shapes the grid
        train_scores = np.abs(scores[:first_train_end])
        train_scores = train_scores[np.isfinite(train_scores)]
        if train_scores.size == 0:
            result.error = "no score on the training data"
            return result
        thresholds = tuple(float(q) for q in np.quantile(train_scores, THRESHOLD_QUANTILES))
    result.thresholds = list(thresholds)
    # Once per threshold, already in the kernel's integer type (no conversion per combination).
    sides_by_threshold = {t: signal_sides(scores, t).astype(np.int64) for t in thresholds}
    for train_end, test_end in boundaries:
        choice, train_metrics, combos, result.surface = _choose(candles, sides_by_threshold, 0, train_end, options, tf_ms)
        result.combinations += combos
        fold: dict[str, Any] = {"train_candles": train_end, "test_candles": test_end - train_end,
                                "test_from_ts": int(candles[train_end, TS])}
        if choice is not None and train_metrics is not None:
            threshold, sl, rr = choice
            test_metrics = _evaluate(candles, sides_by_threshold[threshold], train_end, test_end, sl, rr, options, tf_ms)
            assert test_metrics is not None
            fold.update(chosen={"threshold": threshold, "sl_pct": sl, "rr_ratio": rr}, train=train_metrics.as_json(),
                        test=test_metrics.as_json())
        result.folds.append(fold)
    last = result.folds[-1]
    if "chosen" in last:
        result.chosen, result.train, result.test = last["chosen"], last["train"], last["test"]
    else:
        result.error = f"no combination made {options.min_trades} trades on the training data"
    result.seconds = time.perf_counter() - started
    return result


def _segments(n: int, options: AnalysisOptions) -> list[tuple[int, int]]:
    """(train end, test end) per fold. One fold: the first train_fraction of the candles, then the
    rest. K folds (anchored walk-forward): history in K+1 blocks; fold j trains on blocks 0..j-1
    and tests on block j."""
    if options.folds <= 1:
        split = int(n * options.train_fraction)
        return [(split, n)]
    block = n // (options.folds + 1)
    return [(block * j, n if j == options.folds else block * (j + 1)) for j in range(1, options.folds + 1)]


def last_test_start(n: int, options: AnalysisOptions) -> int:
    """Index of the first candle of the last fold's test segment (the one the config's choice is
    reported on): where the portfolio check (backtest/portfolio_check.py) starts trading."""
    return _segments(n, options)[-1][0]


def warm_kernel() -> None:
    """Compile (or load the cached compilation of) the kernel once, before forking workers."""
    from trading_bot.backtest.kernel import simulate

    tiny = np.ones((4, COLUMNS))
    simulate(tiny[:, OPEN], tiny[:, HIGH], tiny[:, LOW], np.zeros(4, dtype=np.int8), 0, 4, 0.01, 2.0, 0.0, 0.0, 0.01, 1.0, 1, 1.0)


def make_executor(workers: int) -> Executor | None:
    """Worker processes forked after the heavy imports and the kernel are loaded: they share those
    pages with the parent instead of importing pandas and numba once more each."""
    if workers <= 1:
        return None
    import pandas  # noqa: F401  (used by load_history in the workers)

    warm_kernel()
    return ProcessPoolExecutor(max_workers=workers, mp_context=get_context("fork"))


def run_jobs(jobs: list[SeriesJob], options: AnalysisOptions, executor: Executor | None,
             on_done: Callable[[SeriesResult], None] = lambda r: None) -> list[SeriesResult]:
    if executor is None:
        results = []
        for job in jobs:
            results.append(analyze_series(job, options))
            on_done(results[-1])
    else:
        futures = [executor.submit(analyze_series, job, options) for job in jobs]
        results = []
        for future in futures:
            results.append(future.result())
            on_done(results[-1])
    return sorted(results, key=lambda r: (r.symbol, r.timeframe))


def jobs_for(keys: Iterable[tuple[str, str]], candles_dir: Path, config: StrategyConfig) -> list[SeriesJob]:
    return [SeriesJob(symbol, tf, str(candles_dir / cache_file_name(symbol, tf)), config.params_for(symbol, tf).weights)
            for symbol, tf in keys]


def updated_document(document: dict[str, Any], results: list[SeriesResult], options: AnalysisOptions,
                     config: StrategyConfig) -> dict[str, Any]:
    """The config document with every analyzed bot's new entry; other bots' entries kept as they were."""
    doc = json.loads(json.dumps(document))  # a deep copy
    doc.setdefault("version", CONFIG_VERSION)
    bots = doc.setdefault("bots", {})
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    for r in results:
        if r.chosen is None:
            continue
        params = config.params_for(r.symbol, r.timeframe)
        bots.setdefault(r.symbol, {})[r.timeframe] = {
            "weights": params.weight_map(),
            "threshold": r.chosen["threshold"],
            "sl_pct": r.chosen["sl_pct"],
            "rr_ratio": r.chosen["rr_ratio"],
            "metrics": {"train": r.train, "test": r.test, "folds": len(r.folds)},
            "provenance": {
                "data_from_ts": r.first_ts, "data_to_ts": r.last_ts, "candles": r.candles,
                "train_fraction": options.train_fraction, "folds": options.folds, "objective": options.objective,
                "min_trades": options.min_trades,
                "grid": {"sl": list(options.grid.sl), "rr": list(options.grid.rr), "thresholds": r.thresholds},
                "analyzer_version": __version__, "analyzed_at": now,
            },
        }
    return doc


def cpu_workers() -> int:
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1))

