"""WeightedScoringStrategy: a score in [-Σ|w|, Σ|w|] from five components, each in [-1, 1].

Positive components argue for a long, negative for a short:
  rsi        (50 - RSI) / 20          oversold → +1, overbought → -1 (mean reversion)
  ema        (EMA9 - EMA21) / ATR     fast above slow → +1 (trend)
  macd       2 × histogram / ATR      rising momentum → +1
  bollinger  -(close - middle) / half-band-width   at the lower band → +1 (mean reversion)
  volume     candle direction × clip(volume z / 2, 0, 1)   a high-volume up candle → +1
The functions are pure and vectorized over whole feature arrays, so the daemon (one new row) and
the analyzer (all of history) call the same code.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np

from trading_bot.domain.params import StrategyConfig, StrategyParams

Features = Mapping[str, np.ndarray]


def _clip(values: np.ndarray) -> np.ndarray:
    return np.clip(values, -1.0, 1.0)


def score_components(features: Features, rows: slice = slice(None)) -> np.ndarray:
    """(len(rows), 5) array of components in COMPONENTS order; NaN during the warm-up. Features of
    several series, (S, n) arrays, give (S, len(rows), 5), each series' rows equal to its own."""
    f = {name: features[name][..., rows] for name in ("close", "rsi", "ema_fast", "ema_slow", "macd_hist",
                                                 "bb_upper", "bb_middle", "atr", "volume_z", "candle_dir")}
    with np.errstate(divide="ignore", invalid="ignore"):
        atr = np.where(f["atr"] > 0, f["atr"], np.nan)
        half_band = f["bb_upper"] - f["bb_middle"]
        bollinger = np.where(half_band > 0, -(f["close"] - f["bb_middle"]) / half_band, 0.0)
        bollinger[np.isnan(half_band)] = np.nan
        columns = (
            (50.0 - f["rsi"]) / 20.0,
            (f["ema_fast"] - f["ema_slow"]) / atr,
            2.0 * f["macd_hist"] / atr,
            bollinger,
            f["candle_dir"] * np.clip(f["volume_z"] / 2.0, 0.0, 1.0),
        )
    return _clip(np.stack(columns, axis=-1))


def weighted_score(components: np.ndarray, weights: tuple[float, ...]) -> np.ndarray:
    """Σ weight × component per row (NaN while any component is still warming up)."""
    return components @ np.asarray(weights, dtype=np.float64)


def signal_sides(scores: np.ndarray, threshold: float) -> np.ndarray:
    """+1 long where score ≥ threshold, -1 short where score ≤ -threshold, else 0 (NaN → 0)."""
    sides = np.zeros(scores.shape[0], dtype=np.int8)
    sides[scores >= threshold] = 1
    sides[scores <= -threshold] = -1
    return sides


class WeightedScoringStrategy:
    """One per (symbol, timeframe). Parameters are resolved lazily from the current config, so a
    hot reload only swaps the config and the next evaluation sees the new values."""

    def __init__(self, symbol: str, timeframe: str, config: Callable[[], StrategyConfig]) -> None:
        self.symbol = symbol
        self.timeframe = timeframe
        self._config = config
        self._params: StrategyParams | None = None
        self._params_from: StrategyConfig | None = None

    @property
    def params(self) -> StrategyParams:
        config = self._config()
        if self._params is None or self._params_from is not config:
            self._params = config.params_for(self.symbol, self.timeframe)
            self._params_from = config
        return self._params

    def scores(self, features: Features, rows: slice = slice(None)) -> np.ndarray:
        return self.weigh(score_components(features, rows))

    def weigh(self, components: np.ndarray) -> np.ndarray:
        """The scores of one series' (rows, 5) components."""
        return weighted_score(components, self.params.weights)
