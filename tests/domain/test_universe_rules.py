"""The symbol universe's pure rules (domain/universe.py): parsing, the market filter, ranking, what a
new choice changes, and when it is made again."""

from __future__ import annotations

import pytest

from trading_bot.domain.intents import OrderIntent
from trading_bot.domain.trades import BotBook, PendingEntry
from trading_bot.domain.universe import (
    DAY_MS,
    HOUR_MS,
    REFRESH_DELAY_MS,
    UniverseChange,
    UniverseRule,
    busy_symbols,
    choose,
    eligible_symbols,
    parse_universe,
    plan_change,
    start_symbols,
)

MIDNIGHT = 1_767_225_600_000  # 2026-01-01 00:00 UTC


def market(quote="USDT", settle="USDT", swap=True, linear=True, active=True):
    return {"quote": quote, "settle": settle, "swap": swap, "linear": linear, "active": active}


@pytest.mark.parametrize(("raw", "rule"), [("top:20", UniverseRule(20)), (" TOP:3 ", UniverseRule(3)), ("all", UniverseRule()),
                                           ("ALL", UniverseRule()), ("BTC/USDT:USDT", None), ("topaz/USDT:USDT", None)])
def test_parse(raw, rule):
    assert parse_universe(raw) == rule


@pytest.mark.parametrize("raw", ["top:", "top:0", "top:abc", "top:-1", "top:2.5", "top", "top:20,BTC/USDT:USDT"])
def test_a_bad_top_says_what_it_takes(raw):
    with pytest.raises(ValueError, match=r"top:N takes a whole number of symbols, at least 1 \(e.g. top:20\), got "):
        parse_universe(raw)


def test_only_active_linear_usdt_perpetuals_are_eligible():
    markets = {
        "SOL/USDT:USDT": market(), "BTC/USDT:USDT": market(), "ETH/USDT:USDT": market(active=None),  # unknown: counts
        "XRP/USDT:USDT": market(active=False),  # settling, delisted
        "BTC/USDC:USDC": market(quote="USDC", settle="USDC"),
        "BTC/USDT:USDT-261225": market(swap=False),  # a quarterly future
        "BTC/USD:BTC": market(quote="USD", settle="BTC", linear=False),  # inverse
        "BTC/USDT": market(swap=False, linear=None),  # spot
    }
    assert eligible_symbols(markets) == ["BTC/USDT:USDT", "ETH/USDT:USDT", "SOL/USDT:USDT"]


def test_top_n_ranks_by_volume_ties_and_missing_volumes_keep_the_given_order():
    eligible = ["A", "B", "C", "D", "E"]
    volumes = {"A": 5.0, "B": 9.0, "C": 5.0, "D": None, "E": float("nan"), "Z": 99.0}
    assert choose(UniverseRule(3), eligible, volumes) == ("B", "A", "C")
    assert choose(UniverseRule(10), eligible, volumes) == ("B", "A", "C", "D", "E"), "fewer eligible than N: all of them"
    assert choose(UniverseRule(2), eligible) == ("A", "B"), "no volumes (the synthetic listing): its order"
    assert choose(UniverseRule(), eligible, volumes) == tuple(eligible), "all ignores volumes"


def test_a_symbol_leaving_the_choice_is_kept_while_busy():
    change = plan_change(running=["A", "B", "C"], chosen=["C", "D", "A"], busy={"B", "C"})
    assert change == UniverseChange(added=("D",), removed=(), kept=("B",))
    assert plan_change(["A", "B"], ["A", "B"], {"A"}) == UniverseChange() and not UniverseChange(kept=("B",))
    gone = plan_change(["A", "B", "C"], ["A"], set())
    assert gone.removed == ("B", "C") and gone.line(UniverseRule(1), 1, "refresh") == (
        "universe top:1 (refresh): added 0, removed 2 (B, C), kept 0 because open; 1 symbol")
    many = UniverseChange(added=tuple("ABCDEFG"), kept=("X",))
    assert many.line(UniverseRule(), 9) == ("universe all: added 7 (A, B, C, D, E, …), removed 0, "
                                            "kept 1 because open (X); 9 symbols")


def test_busy_symbols_and_the_start():
    held = BotBook("A", "1h")
    held.pending = PendingEntry(1, 0, 0.5)
    intent = OrderIntent("tb-1", "stop", "C", "5m", -1, 1.0, 10.0, 0)
    assert busy_symbols([held, BotBook("B", "1h")], [intent]) == {"A", "C"}
    assert start_symbols(["D", "A"], {"C", "A"}) == ("D", "A", "C")


@pytest.mark.parametrize(("rule", "now", "expected"), [
    (UniverseRule(5), MIDNIGHT, MIDNIGHT + REFRESH_DELAY_MS),
    (UniverseRule(5), MIDNIGHT + REFRESH_DELAY_MS, MIDNIGHT + DAY_MS + REFRESH_DELAY_MS),  # the one done now: tomorrow's next
    (UniverseRule(5), MIDNIGHT - 1, MIDNIGHT + REFRESH_DELAY_MS),
    (UniverseRule(5), MIDNIGHT + 13 * HOUR_MS, MIDNIGHT + DAY_MS + REFRESH_DELAY_MS),
    (UniverseRule(), MIDNIGHT + 13 * HOUR_MS + 1, MIDNIGHT + 13 * HOUR_MS + REFRESH_DELAY_MS),  # all: hourly
    (UniverseRule(), MIDNIGHT + 13 * HOUR_MS + REFRESH_DELAY_MS, MIDNIGHT + 14 * HOUR_MS + REFRESH_DELAY_MS),
])
def test_refresh_moments(rule, now, expected):
    assert rule.next_refresh_ms(now) == expected
