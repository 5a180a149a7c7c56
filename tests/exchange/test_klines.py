"""kline_pages: the one walk over kline pages (the daemon's ExchangeSource and `trading-bot fetch`)."""

from __future__ import annotations

from typing import Any

from trading_bot.exchange.klines import kline_pages, klines_weight

TF = 60_000


class ScriptedClient:
    """Answers fetch_ohlcv from a fixed set of candle open times, as the fake exchange does: the
    candles of the `limit` slots from `since` (none for a stretch without history). Records every request."""

    def __init__(self, opens: list[int]) -> None:
        self.opens = opens
        self.requests: list[tuple[int, int, int]] = []  # (since, limit, weight)

    async def call(self, method: str, symbol: str, timeframe: str, *, since: int, limit: int, weight: int) -> Any:
        assert method == "fetch_ohlcv"
        self.requests.append((since, limit, weight))
        return [[ts, 1.0, 1.0, 1.0, 1.0, 1.0] for ts in self.opens if since <= ts < since + limit * TF]


async def walk(client: ScriptedClient, start: int, end: int, **kwargs: Any) -> list[int]:
    opens = []
    async for page in kline_pages(client, "BTC/USDT:USDT", "1m", TF, start, end, **kwargs):  # type: ignore[arg-type]  # a stand-in for ExchangeClient
        opens += [int(row[0]) for row in page.rows]
    return opens


async def test_pages_ask_for_what_is_left_and_are_weighed_by_it():
    client = ScriptedClient([i * TF for i in range(2500)])
    opens = await walk(client, 0, 2499 * TF)
    assert opens == [i * TF for i in range(2500)]
    assert client.requests == [(0, 1000, 5), (1000 * TF, 1000, 5), (2000 * TF, 500, klines_weight(500))]


async def test_a_short_page_ends_the_walk():
    client = ScriptedClient([i * TF for i in range(1200)])  # the exchange has nothing after 1199
    assert len(await walk(client, 0, 4999 * TF)) == 1200
    assert [since for since, _, _ in client.requests] == [0, 1000 * TF]


async def test_an_empty_page_ends_the_walk_unless_past_gaps():
    history = [i * TF for i in range(1500, 1600)]  # nothing before 1500
    stopping = ScriptedClient(history)
    assert await walk(stopping, 0, 1599 * TF) == [] and len(stopping.requests) == 1
    going_on = ScriptedClient(history)
    assert await walk(going_on, 0, 1599 * TF, past_gaps=True) == history
    assert [since for since, _, _ in going_on.requests] == [0, 1000 * TF]  # moved on by the whole empty page


async def test_past_gaps_always_moves_forward():
    client = ScriptedClient([0])
    client.call = _always(client, [[0, 1.0, 1.0, 1.0, 1.0, 1.0]])  # type: ignore[method-assign]  # one old candle, whatever is asked
    await walk(client, 5 * TF, 7 * TF, past_gaps=True)
    assert [since for since, _, _ in client.requests] == [5 * TF, 6 * TF, 7 * TF]


def _always(client: ScriptedClient, rows: list[list[float]]) -> Any:
    async def call(method: str, symbol: str, timeframe: str, *, since: int, limit: int, weight: int) -> Any:
        client.requests.append((since, limit, weight))
        return rows

    return call
