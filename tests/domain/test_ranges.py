"""out_of_range: the one bounds rule behind settings (LEVERAGE ...) and strategy parameters (sl_pct ...)."""

from __future__ import annotations

from trading_bot.domain.ranges import out_of_range


def test_both_ends_belong_to_a_closed_range():
    assert out_of_range(1.0, 1.0, 125.0) is None
    assert out_of_range(125.0, 1.0, 125.0) is None
    assert out_of_range(0.5, 1.0, 125.0) == "must be in [1, 125]"
    assert out_of_range(125.5, 1.0, 125.0) == "must be in [1, 125]"


def test_a_low_open_range_leaves_its_low_end_out():
    assert out_of_range(0.0, 0.0, 0.5, low_open=True) == "must be in (0, 0.5]"
    assert out_of_range(1e-9, 0.0, 0.5, low_open=True) is None
    assert out_of_range(0.5, 0.0, 0.5, low_open=True) is None


def test_bounds_are_written_compactly():
    assert out_of_range(-1, 100, 100_000) == "must be in [100, 100000]"
    assert out_of_range(2e12, 0.0, 1e12, low_open=True) == "must be in (0, 1e+12]"
