"""The quality bench's regret arithmetic, on hand-made grids: what docs/quality.md's numbers mean."""

from __future__ import annotations

import math

import numpy as np
import pytest

from bench.quality_metrics import (
    Grid,
    format_table,
    log_grid,
    log_median,
    log_range,
    mean_over_cases,
    means_table,
    spearman,
    summarize,
    wins,
    worst_over_cases,
)


@pytest.fixture
def grid() -> Grid:
    # Two seeds; the seed-mean curve is lowest at 1e-2 (0.2), although seed 1 alone is lowest at 1e-1.
    lrs = log_grid(-4, 0, 1.0)
    losses = np.array([[1.0, 0.5, 0.1, 0.6, 2.0],
                       [1.0, 0.5, 0.3, 0.25, 2.0]])
    return Grid(lrs, losses)


def test_log_grid_is_inclusive_and_evenly_spaced_in_decades() -> None:
    lrs = log_grid(-4, 0, 0.5)
    assert len(lrs) == 9
    assert lrs[0] == pytest.approx(1e-4) and lrs[-1] == pytest.approx(1.0)
    assert np.allclose(np.diff(np.log10(lrs)), 0.5)


def test_best_is_the_argmin_of_the_seed_mean_not_of_any_one_seed(grid: Grid) -> None:
    assert grid.best_lr == pytest.approx(1e-2)
    assert grid.best_loss == pytest.approx(0.2)
    assert grid.step_decades == pytest.approx(1.0)


def test_steps_from_best_are_signed_and_fractional(grid: Grid) -> None:
    assert grid.steps_from_best(1e-1) == pytest.approx(1.0)
    assert grid.steps_from_best(1e-4) == pytest.approx(-2.0)
    assert grid.steps_from_best(10**-1.5) == pytest.approx(0.5)


def test_grid_rejects_mismatched_shapes() -> None:
    with pytest.raises(ValueError):
        Grid(log_grid(-2, 0, 1.0), np.zeros((2, 4)))


def test_summarize_regret_normalization_distance_and_spread(grid: Grid) -> None:
    # Seed 0 picked 1e-2 and reached 0.1; seed 1 picked 1e-1 and reached 0.5. Baseline (prior) is 2.2.
    s = summarize([1e-2, 1e-1], [0.1, 0.5], grid, baseline=2.2)
    assert s.regret == pytest.approx(0.1)  # mean(0.1, 0.5) - 0.2
    assert s.regret_std == pytest.approx(0.2)
    assert s.normalized == pytest.approx(0.1 / 2.0)
    assert s.steps == pytest.approx(0.5) and s.abs_steps == pytest.approx(0.5)
    assert s.lr_spread == pytest.approx(1.0)
    assert (s.answered, s.seeds) == (2, 2)


def test_a_seed_without_an_answer_costs_its_loss_but_no_distance(grid: Grid) -> None:
    s = summarize([None, 1e-2], [2.2, 0.2], grid, baseline=2.2)
    assert s.regret == pytest.approx(1.0)
    assert s.normalized == pytest.approx(0.5)
    assert s.steps == 0 and s.lr_spread == 0
    assert s.answered == 1


def test_a_rule_that_never_answers_has_nan_distance(grid: Grid) -> None:
    s = summarize([None], [2.2], grid, baseline=2.2)
    assert s.normalized == pytest.approx(1.0)
    assert math.isnan(s.steps) and math.isnan(s.lr_spread)


def test_log_median_and_range_ignore_missing_values() -> None:
    assert log_median([1e-3, None, 1e-1, 1e-2]) == pytest.approx(1e-2)
    assert log_median([1e-3, 1e-1]) == pytest.approx(1e-2)
    assert log_median([None]) is None
    assert log_range([1e-3, None, 1e-1]) == pytest.approx(2.0)
    assert log_range([]) is None


def test_means_and_wins_across_cases(grid: Grid) -> None:
    good = summarize([1e-2, 1e-2], [0.2, 0.2], grid, baseline=2.2)
    bad = summarize([1.0, 1.0], [2.0, 2.0], grid, baseline=2.2)
    cases = {"a": {"x": good, "y": bad}, "b": {"x": bad, "y": bad}}
    assert mean_over_cases(cases, "normalized") == {"x": pytest.approx(0.45), "y": pytest.approx(0.9)}
    assert wins(cases, ["x", "y"]) == {"x": 2, "y": 1}  # a tie counts for both
    assert worst_over_cases(cases, "normalized") == {"x": pytest.approx(0.9), "y": pytest.approx(0.9)}
    assert "| x | 0.450 | 0.900 | 0.900 | 1.000 | 0.000 |" in means_table(cases, ["x", "y"])
    table = format_table(cases, ["x", "y", "absent"])
    assert table.count("\n") == 1 + 4 and "| a | x | 0.000 ± 0.000 | 0.000 | +0.0 | 0.00 | 2/2 |" in table


def test_spearman_on_ranks() -> None:
    assert spearman([1, 2, 3, 4], [10, 20, 30, 1000]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert math.isnan(spearman([1, 2], [1, 2]))
    assert math.isnan(spearman([1, 1, 1], [1, 2, 3]))
