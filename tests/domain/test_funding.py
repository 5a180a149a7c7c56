"""FundingSchedule: recorded funding moments inside the history, the 8-hour default grid outside it."""

from __future__ import annotations

import pytest

from trading_bot.domain.funding import (
    DEFAULT_FUNDING_RATE,
    FUNDING_INTERVAL_MS,
    FundingEvent,
    FundingSchedule,
    default_funding_times,
    floor_to_minute,
    funding_payment,
)
from trading_bot.domain.trades import LONG, SHORT

DAY = 86_400_000
H = 3_600_000
JAN_1 = 1_767_225_600_000  # 2026-01-01 00:00 UTC
BTC = "BTC/USDT:USDT"


def test_the_default_grid_is_00_08_16_utc_and_the_range_is_open_below_closed_above():
    assert default_funding_times(JAN_1, JAN_1 + DAY) == [JAN_1 + 8 * H, JAN_1 + 16 * H, JAN_1 + DAY]
    assert default_funding_times(JAN_1 - 1, JAN_1) == [JAN_1]
    assert default_funding_times(JAN_1 + 1, JAN_1 + 8 * H - 1) == []
    assert FUNDING_INTERVAL_MS == 8 * H


def test_without_history_every_event_is_the_default():
    schedule = FundingSchedule.from_records(BTC, [])
    assert not schedule.has_history
    assert schedule.events_between(JAN_1 - 1, JAN_1 + 16 * H) == [
        FundingEvent(JAN_1, DEFAULT_FUNDING_RATE, False), FundingEvent(JAN_1 + 8 * H, DEFAULT_FUNDING_RATE, False),
        FundingEvent(JAN_1 + 16 * H, DEFAULT_FUNDING_RATE, False)]
    assert schedule.label == "default rate 0.0100% per 8 h (no funding history cached)"
    assert DEFAULT_FUNDING_RATE == 0.0001


def test_inside_the_history_exactly_the_recorded_moments_floored_to_the_minute():
    # A day of 4-hour funding (some symbols), stamped a few ms late as Binance stamps it.
    records = [(JAN_1 + k * 4 * H + ms, rate) for k, (ms, rate) in
               enumerate([(7, 0.0002), (11, -0.0003), (0, 0.00005), (18, 0.0001), (3, 0.0004), (9, -0.00001)])]
    schedule = FundingSchedule.from_records(BTC, reversed(records))  # any order
    assert schedule.times == tuple(JAN_1 + k * 4 * H for k in range(6))
    events = schedule.events_between(JAN_1 + 4 * H, JAN_1 + 16 * H)  # after 04:00 (excluded), up to 16:00 (included)
    assert events == [FundingEvent(JAN_1 + 8 * H, 0.00005, True), FundingEvent(JAN_1 + 12 * H, 0.0001, True),
                      FundingEvent(JAN_1 + 16 * H, 0.0004, True)]
    assert schedule.label == ("funding history: 6 rates, 2026-01-01 00:00 → 2026-01-01 20:00 UTC; "
                              "default rate 0.0100% per 8 h outside it")


def test_outside_the_history_the_default_grid_fills_in_on_both_sides():
    schedule = FundingSchedule.from_records(BTC, [(JAN_1 + 8 * H + 5, 0.0003), (JAN_1 + 12 * H + 2, -0.0002)])
    events = schedule.events_between(JAN_1 - 8 * H - 1, JAN_1 + 2 * DAY)
    assert [(e.time_ms - JAN_1) // H for e in events] == [-8, 0, 8, 12, 16, 24, 32, 40, 48]
    assert [e.from_history for e in events] == [False, False, True, True, False, False, False, False, False]
    assert [e.rate for e in events if e.from_history] == [0.0003, -0.0002]
    assert {e.rate for e in events if not e.from_history} == {DEFAULT_FUNDING_RATE}
    # A default moment that falls on a recorded one is not counted twice.
    assert schedule.events_between(JAN_1 + 7 * H, JAN_1 + 9 * H) == [FundingEvent(JAN_1 + 8 * H, 0.0003, True)]
    assert schedule.events_between(JAN_1 + 16 * H, JAN_1 + 16 * H) == []


def test_two_records_of_one_minute_are_one_moment_the_later_wins():
    schedule = FundingSchedule.from_records(BTC, [(JAN_1 + 3, 0.0001), (JAN_1 + 59_999, 0.0002)])
    assert schedule.times == (JAN_1,) and schedule.rates == (0.0002,)
    assert floor_to_minute(JAN_1 + 59_999) == JAN_1 and floor_to_minute(JAN_1 + 60_000) == JAN_1 + 60_000


def test_a_rate_that_is_not_a_number_is_refused():
    with pytest.raises(ValueError, match="not a number"):
        FundingSchedule.from_records(BTC, [(JAN_1, float("nan"))])
    with pytest.raises(ValueError, match="ascending"):
        FundingSchedule(BTC, (JAN_1 + 8 * H, JAN_1), (0.0001, 0.0001))


def test_a_long_pays_and_a_short_receives_when_the_rate_is_positive():
    assert funding_payment(LONG, 0.5, 60_000.0, 0.0001) == pytest.approx(-3.0)
    assert funding_payment(SHORT, 0.5, 60_000.0, 0.0001) == pytest.approx(3.0)
    assert funding_payment(LONG, 2.0, 3_000.0, -0.0002) == pytest.approx(1.2)
    assert funding_payment(SHORT, 2.0, 3_000.0, -0.0002) == pytest.approx(-1.2)


def test_next_after_is_where_events_between_starts_on_any_schedule():
    import random

    from trading_bot.domain.funding import FUNDING_INTERVAL_MS as I8

    rng = random.Random(1)
    base = JAN_1 // I8 * I8
    for _ in range(200):
        records, t = [], base + rng.randint(-3, 3) * I8 + rng.randint(0, 59_000)
        for _ in range(rng.randint(0, 8)):  # gaps, 4-hour and 1-hour stretches, ms-late stamps
            records.append((t, rng.uniform(-1e-3, 1e-3)))
            t += rng.choice([I8, I8 // 2, I8 // 8, 3 * I8])
        schedule = FundingSchedule.from_records("X", records)
        for _ in range(40):
            after = base + rng.randint(-6 * I8, 12 * I8) + rng.choice([0, 1, -1, rng.randint(0, I8)])
            assert schedule.next_after(after) == schedule.events_between(after, after + 40 * I8)[0]
