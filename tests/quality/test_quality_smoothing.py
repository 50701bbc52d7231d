"""The bench's lag-free candidate smoothers do what their names say."""

from __future__ import annotations

import math

import numpy as np
import pytest

from bench.quality_smoothing import two_sided, two_sided_log
from lrrt.suggestions import smooth


def test_two_sided_smoothing_has_no_lag_where_the_ema_lags_fifty_steps() -> None:
    ramp = np.linspace(0.0, 10.0, 400)
    two, ema = two_sided(ramp, 0.98), smooth(ramp, 0.98)
    middle = slice(150, 250)
    step = ramp[1] - ramp[0]
    assert np.abs(two[middle] - ramp[middle]).max() < 0.5 * step  # a symmetric kernel on a line: no lag
    assert ((ramp[middle] - ema[middle]) / step).min() > 40  # ~beta / (1 - beta) = 49 steps behind
    assert two_sided(np.full(3, 2.0), 0.98).tolist() == pytest.approx([2.0, 2.0, 2.0])  # normalized at the edges
    assert np.isnan(two_sided(np.array([1.0, 2.0, math.nan, 4.0]), 0.5)[2:]).all()


def test_the_log_variant_is_not_dragged_up_by_a_blow_up() -> None:
    curve = np.concatenate([np.full(150, 1.0), [1e6] * 3])
    assert two_sided(curve, 0.98)[100] > 100.0  # the arithmetic mean carries 1e6 fifty steps back
    assert two_sided_log(curve, 0.98)[100] < 1.5
