"""Holm adjustment and Wilson intervals against values worked by hand."""

import numpy as np
import pytest

from radfuse.evaluate import delong, intervals


def test_holm_against_a_worked_example():
    # p sorted: 0.005 (x4 = 0.020), 0.010 (x3 = 0.030), 0.030 (x2 = 0.060), 0.040 (x1 = 0.040 -> max so far 0.060)
    adjusted = delong.holm([0.01, 0.04, 0.03, 0.005])
    assert adjusted == pytest.approx([0.03, 0.06, 0.06, 0.02])


def test_holm_caps_at_one_and_skips_undefined_p():
    adjusted = delong.holm([0.6, np.nan, 0.2])  # m = 2: 0.2 x 2 = 0.4; 0.6 x 1 = 0.6
    assert adjusted[0] == pytest.approx(0.6) and np.isnan(adjusted[1]) and adjusted[2] == pytest.approx(0.4)
    assert delong.holm([0.5, 0.7]) == pytest.approx([1.0, 1.0])


def test_wilson_interval_by_hand():
    # 8 / 10: centre (0.8 + z^2/20) / (1 + z^2/10) = 0.71674, half-width 0.22658 -> 0.4902-0.9433 (Newcombe 1998)
    low, high = intervals.wilson(8, 10)
    assert (low, high) == pytest.approx((0.4902, 0.9433), abs=1e-4)
    assert intervals.wilson(0, 20)[0] == 0.0 and intervals.wilson(0, 20)[1] == pytest.approx(0.1611, abs=1e-4)
    assert intervals.wilson(0, 0) == (None, None)


def test_small_n_has_no_interval_text():
    assert intervals.format_estimate(0.0, (0.0, 0.0), n=3) == "0.000 (n < 10: no CI)"
    assert intervals.format_estimate(0.8, (0.4902, 0.9433), n=10) == "0.800 (0.490-0.943)"
