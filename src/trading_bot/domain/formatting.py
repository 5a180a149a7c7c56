"""How prices and times are written for people (log lines, `trading-bot status`, the fetch summary):
prices in six significant digits, or cents from 1000 up; times as UTC minutes."""

from __future__ import annotations

from datetime import UTC, datetime


def format_price(value: float) -> str:
    return f"{value:.6g}" if abs(value) < 1000 else f"{value:.2f}"


def format_ms(ms: int) -> str:
    """ms since the epoch as `YYYY-MM-DD HH:MM` (UTC)."""
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M")
