"""Bounds on a number, written the way every error message names them: [low, high] includes both
ends, (low, high] leaves the low end out. Settings and strategy parameters check with the same rule."""

from __future__ import annotations


def out_of_range(value: float, low: float, high: float, *, low_open: bool = False) -> str | None:
    """None when low ≤ value ≤ high (low < value with low_open), else "must be in [low, high]".
    NaN compares false both ways, so callers reject it before asking."""
    too_low = value <= low if low_open else value < low
    if too_low or value > high:
        return f"must be in {'(' if low_open else '['}{low:g}, {high:g}]"
    return None
