"""How prices and times are written for people (log lines, `trading-bot status`, the commands'
summaries): prices with six significant digits, or cents from 1000 up; times in UTC to the minute; and
the times the commands take (`fetch --since`, `report --since`)."""

from __future__ import annotations

from datetime import UTC, datetime


def format_price(value: float) -> str:
    return f"{value:.6g}" if abs(value) < 1000 else f"{value:.2f}"


def format_ms(ms: int) -> str:
    """A moment in ms since the epoch, UTC, to the minute (the caller says "UTC" where it matters)."""
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M")


def parse_time_ms(raw: str) -> int:
    """`2024-01-01` (UTC midnight), an ISO datetime (UTC unless it carries an offset) or ms since
    the epoch."""
    text = raw.strip()
    if text.isdigit():
        return int(text)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"expected YYYY-MM-DD, an ISO datetime or ms since the epoch, got {raw!r}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)
