"""Strategy parameters and the strategy config document: parse and validate (pure, bytes in). Reading,
writing and watching the file is persistence/strategy_config_file.py.

Format (config/strategy_config.json):
    {"version": 1,
     "defaults": {"weights": {...}, "threshold": 0.3, "sl_pct": 0.015, "rr_ratio": 2.0},
     "bots": {"BTC/USDT:USDT": {"5m": {"threshold": 0.4, ...}}}}
A bot's parameters are the defaults overlaid with its own entry. Every key is checked when the
document is parsed (an unknown one, e.g. a typo, is an error with a "did you mean"); the values are
parsed lazily: only the running bots' entries are validated and turned into StrategyParams. default_config() is the
embedded defaults; a broken document raises StrategyConfigError saying where and why in one line.
"""

from __future__ import annotations

import difflib
import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from trading_bot.domain.ranges import out_of_range
from trading_bot.domain.timeframes import TIMEFRAME_MS

COMPONENTS = ("rsi", "ema", "macd", "bollinger", "volume")


CONFIG_VERSION = 1


DEFAULT_WEIGHTS: dict[str, float] = {"rsi": 0.25, "ema": 0.25, "macd": 0.2, "bollinger": 0.15, "volume": 0.15}


DEFAULT_PARAMS_RAW: dict[str, Any] = {
    "weights": DEFAULT_WEIGHTS,
    "threshold": 0.15,
    "sl_pct": 0.015,
    "rr_ratio": 2.0,
}


TOP_LEVEL_KEYS = ("version", "defaults", "bots")
PARAM_KEYS = ("weights", "threshold", "sl_pct", "rr_ratio")
# What the analyzer writes beside a bot's parameters (read by people, not by the bot).
BOT_ENTRY_KEYS = (*PARAM_KEYS, "metrics", "provenance")


class StrategyConfigError(ValueError):
    """The strategy config cannot be used; the message says where and why in one line."""


def _check_keys(where: str, given: Iterable[str], known: tuple[str, ...], what: str = "key") -> None:
    """An unknown key is an error (a typo must not be silently ignored), with the nearest known one."""
    for key in given:
        if key not in known:
            near = difflib.get_close_matches(str(key), known, n=1, cutoff=0.6) or [
                k for k in known if len(str(key)) > 1 and k.startswith(str(key))]  # "rr" for "rr_ratio"
            hint = f"did you mean {near[0]!r}?" if near else f"expected one of {', '.join(known)}"
            raise StrategyConfigError(f"{where}: unknown {what} {str(key)[:40]!r} ({hint})")


@dataclass(frozen=True)
class StrategyParams:
    weights: tuple[float, ...]  # in COMPONENTS order
    threshold: float
    sl_pct: float
    rr_ratio: float

    def weight_map(self) -> dict[str, float]:
        return dict(zip(COMPONENTS, self.weights))

    def as_json(self) -> dict[str, Any]:
        return {"weights": self.weight_map(), "threshold": self.threshold, "sl_pct": self.sl_pct, "rr_ratio": self.rr_ratio}


def _finite(where: str, name: str, value: Any, low: float, high: float, *, low_open: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise StrategyConfigError(f"{where}.{name}: expected a number, got {json.dumps(value)[:40]}")
    number = float(value)
    if not math.isfinite(number):
        raise StrategyConfigError(f"{where}.{name}: must be finite, got {number}")
    problem = out_of_range(number, low, high, low_open=low_open)
    if problem:
        raise StrategyConfigError(f"{where}.{name}: {problem}, got {number:g}")
    return number


def _merge_params(where: str, base: Mapping[str, Any], override: Any) -> dict[str, Any]:
    if not isinstance(override, Mapping):
        raise StrategyConfigError(f"{where}: expected an object, got {type(override).__name__}")
    merged = dict(base)
    for key, value in override.items():
        if key == "weights":
            if not isinstance(value, Mapping):
                raise StrategyConfigError(f"{where}.weights: expected an object of component weights")
            _check_keys(f"{where}.weights", sorted(value), COMPONENTS, "component")
            merged["weights"] = {**merged.get("weights", {}), **value}
        else:
            merged[key] = value  # keys were checked at parse time; metrics/provenance ride along unread
    return merged


def parse_params(where: str, raw: Mapping[str, Any]) -> StrategyParams:
    weights_raw = raw.get("weights", {})
    weights = tuple(_finite(f"{where}.weights", c, weights_raw.get(c, 0.0), -10.0, 10.0) for c in COMPONENTS)
    if not any(weights):
        raise StrategyConfigError(f"{where}.weights: at least one weight must be non-zero")
    return StrategyParams(
        weights=weights,
        threshold=_finite(where, "threshold", raw.get("threshold"), 0.0, 50.0, low_open=True),
        sl_pct=_finite(where, "sl_pct", raw.get("sl_pct"), 0.0, 0.5, low_open=True),
        rr_ratio=_finite(where, "rr_ratio", raw.get("rr_ratio"), 0.0, 50.0, low_open=True),
    )


@dataclass
class StrategyConfig:
    """A parsed document; per-bot params are built on first request and memoised."""

    document: dict[str, Any]
    source: str = "embedded defaults"
    _defaults: dict[str, Any] = field(default_factory=dict)
    _params: dict[tuple[str, str], StrategyParams] = field(default_factory=dict)

    def __post_init__(self) -> None:
        doc = self.document
        version = doc.get("version", CONFIG_VERSION)
        if version != CONFIG_VERSION:
            raise StrategyConfigError(f"version: expected {CONFIG_VERSION}, got {json.dumps(version)[:20]}")
        _check_keys("top level", doc, TOP_LEVEL_KEYS)
        defaults = doc.get("defaults", {})
        if isinstance(defaults, Mapping):
            _check_keys("defaults", defaults, PARAM_KEYS)
        self._defaults = _merge_params("defaults", DEFAULT_PARAMS_RAW, defaults)
        bots = doc.get("bots", {})
        if not isinstance(bots, Mapping):
            raise StrategyConfigError("bots: expected an object keyed by symbol")
        for symbol, per_tf in bots.items():
            if not isinstance(per_tf, Mapping):
                raise StrategyConfigError(f"bots.{symbol}: expected an object keyed by timeframe")
            _check_keys(f"bots.{symbol}", per_tf, tuple(TIMEFRAME_MS), "timeframe")
            for timeframe, entry in per_tf.items():
                if not isinstance(entry, Mapping):
                    raise StrategyConfigError(f"bots.{symbol}.{timeframe}: expected an object, got {type(entry).__name__}")
                _check_keys(f"bots.{symbol}.{timeframe}", entry, BOT_ENTRY_KEYS)

    def params_for(self, symbol: str, timeframe: str) -> StrategyParams:
        key = (symbol, timeframe)
        cached = self._params.get(key)
        if cached is None:
            entry = self.document.get("bots", {}).get(symbol, {}).get(timeframe, {})
            where = f"bots.{symbol}.{timeframe}"
            cached = parse_params(where, _merge_params(where, self._defaults, entry))
            self._params[key] = cached
        return cached

    def named_keys(self, timeframes: Iterable[str]) -> list[tuple[str, str]]:
        """Every symbol the document has an entry for, on these timeframes: the bots it may configure
        when the symbols are chosen at run time (TRADING_SYMBOLS=top:N or all)."""
        return [(symbol, timeframe) for symbol in self.document.get("bots", {}) for timeframe in timeframes]

    def unused_overrides(self, bot_keys: Iterable[tuple[str, str]]) -> list[str]:
        """Warnings (not errors): entries for bots that are not running, e.g. a symbol not traded."""
        running = set(bot_keys)
        symbols = {symbol for symbol, _ in running}
        warnings = []
        for symbol, per_tf in self.document.get("bots", {}).items():
            if symbol not in symbols:
                warnings.append(f"bots.{symbol}: {symbol} is not traded (TRADING_SYMBOLS): its overrides are unused")
                continue
            unused = [tf for tf in per_tf if (symbol, tf) not in running]
            if unused:
                warnings.append(f"bots.{symbol}: timeframe(s) {', '.join(unused)} not traded (TRADING_TIMEFRAMES): "
                                "their overrides are unused")
        return warnings

    def validate_for(self, bot_keys: Iterable[tuple[str, str]]) -> None:
        """Parse every running bot's entry now, so a reload is all-or-nothing."""
        parse_params("defaults", self._defaults)
        for symbol, timeframe in bot_keys:
            self.params_for(symbol, timeframe)


def default_config() -> StrategyConfig:
    return StrategyConfig({"version": CONFIG_VERSION, "defaults": DEFAULT_PARAMS_RAW, "bots": {}})


def _reject_constant(token: str) -> float:
    raise StrategyConfigError(f"{token} is not a valid number in JSON")


def parse_config_bytes(data: bytes, source: str) -> StrategyConfig:
    try:
        document = json.loads(data.decode("utf-8"), parse_constant=_reject_constant)
    except StrategyConfigError as exc:
        raise StrategyConfigError(f"{source}: {exc}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise StrategyConfigError(f"{source}: not valid JSON ({exc})") from None
    if not isinstance(document, dict):
        raise StrategyConfigError(f"{source}: expected a JSON object at the top level")
    try:
        return StrategyConfig(document, source=source)
    except StrategyConfigError as exc:
        raise StrategyConfigError(f"{source}: {exc}") from None

