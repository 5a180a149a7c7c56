"""How prices are written for people (log lines, `trading-bot status`): six significant digits,
or cents from 1000 up."""

from __future__ import annotations


def format_price(value: float) -> str:
    return f"{value:.6g}" if abs(value) < 1000 else f"{value:.2f}"
