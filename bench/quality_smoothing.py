"""Candidate lag-free smoothers for the suggestion rules, measured against the engine's EMA.

The sweep is over when the rules run, so a two-sided smoother is allowed there (the engine's in-loop
divergence stop must stay causal). bench/quality.py runs valley, steepest and minimum on these curves
as the `[2s]` rules; docs/quality.md has the result (the EMA won, so the engine does not use them).
"""

from __future__ import annotations

import numpy as np


def two_sided(losses: np.ndarray, beta: float) -> np.ndarray:
    """Lag-free smoothing with the EMA's width: the mean of the finite prefix weighted by k**|i - j|.

    k = beta / (2 - beta) makes the weights sum to 1 / (1 - beta), as the EMA's do, so both average
    the same effective number of points; the EMA's all lie behind (it lags beta / (1 - beta) steps),
    these lie on both sides. Normalized at the edges, O(n) by one forward and one backward
    recursion; NaN from the first NaN loss on, like the engine's `smooth`.
    """
    values = np.asarray(losses, dtype=np.float64)
    out = np.full(values.shape, np.nan)
    bad = np.flatnonzero(~np.isfinite(values))
    end = int(bad[0]) if len(bad) else len(values)
    if end:
        x, k = values[:end], beta / (2.0 - beta)
        out[:end] = (_both_ways(x, k) - x) / (_both_ways(np.ones(end), k) - 1.0)
    return out


def two_sided_log(losses: np.ndarray, beta: float) -> np.ndarray:
    """`two_sided` on log(loss), back in loss units: a geometric mean, so the last raw losses of a blow-up
    (1e6 on an MSE task) do not drag the whole curve up as they do an arithmetic mean. Positive losses."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.exp(two_sided(np.log(np.asarray(losses, dtype=np.float64)), beta))


def _both_ways(x: np.ndarray, k: float) -> np.ndarray:
    """sum_{j<=i} k**(i-j) x[j] + sum_{j>=i} k**(j-i) x[j] (x[i] counted twice)."""
    forward, backward = np.empty_like(x), np.empty_like(x)
    acc = 0.0
    for i, value in enumerate(x):
        acc = k * acc + value
        forward[i] = acc
    acc = 0.0
    for i in range(len(x) - 1, -1, -1):
        acc = k * acc + x[i]
        backward[i] = acc
    return forward + backward
