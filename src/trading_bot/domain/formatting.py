"""How prices and times are written for people (log lines, `trading-bot status`, the commands'
summaries): prices with six significant digits, or cents from 1000 up; times in UTC to the minute."""

from __future__ import annotations

from datetime import UTC, datetime


def format_price(value: float) -> str:
    return f"{value:.6g}" if abs(value) < 1000 else f"{value:.2f}"


def format_ms(ms: int) -> str:
    """A moment in ms since the epoch, UTC, to the minute (the caller says "UTC" where it matters)."""
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M")
