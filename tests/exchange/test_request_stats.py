"""The exchange client's request figures: bounded error kinds, Prometheus-shaped duration buckets."""

from __future__ import annotations

import asyncio

import ccxt
import pytest

from trading_bot.exchange.request_stats import DURATION_BUCKETS_S, RequestStats, error_kind


def test_error_kinds_are_ccxt_classes_or_one_of_two_names():
    assert error_kind(ccxt.InvalidOrder("binanceusdm -2019 margin is insufficient")) == "InvalidOrder"
    assert error_kind(ccxt.RequestTimeout("timed out")) == "RequestTimeout"
    assert error_kind(asyncio.CancelledError()) == "Cancelled"
    assert error_kind(KeyError("symbol")) == error_kind(ValueError("x")) == "other"  # no label per Python class


def test_durations_land_in_cumulative_buckets_with_inf_last():
    stats = RequestStats()
    for method, seconds, exc in (("fetch_balance", 0.004, None), ("create_order", 0.03, ccxt.InvalidOrder("x")),
                                 ("create_order", 0.05, None), ("fetch_positions", 60.0, ccxt.RequestTimeout("t"))):
        stats.sent(method)
        stats.answered(method, seconds, exc)
    buckets = dict(stats.cumulative_buckets())
    assert list(buckets)[-1] == "+Inf" and len(buckets) == len(DURATION_BUCKETS_S) + 1
    assert (buckets["0.005"], buckets["0.025"], buckets["0.05"], buckets["10.0"], buckets["+Inf"]) == (1, 1, 3, 3, 4)
    assert stats.duration_sum_s == pytest.approx(60.084)
    assert stats.calls == {"fetch_balance": 1, "create_order": 2, "fetch_positions": 1}
    assert stats.errors == {("create_order", "InvalidOrder"): 1, ("fetch_positions", "RequestTimeout"): 1}
