"""The bench's copy of the candidate order issue 24 replaced (`bench.quality_confirm`): it must stay the
order the product had, or the comparison in docs/quality.md compares against something else."""

from __future__ import annotations

import math

import pytest

from bench.quality_confirm import at_edge, old_order_lrs, paired_difference


def test_the_old_order_goes_below_the_recommendation_first() -> None:
    """The slots in order: the recommendation, 3x and 9x below, 3x above, the rules' own picks, wider
    brackets; inside the swept range and apart from each other."""
    arm = {"recommended_lr": 1e-2, "suggestions": {"valley": 1.05e-2, "steepest": 2e-3, "minimum": 0.2}}
    lrs = old_order_lrs(arm, 8, start_lr=1e-5, end_lr=1.0)
    assert lrs[:4] == pytest.approx([1e-2, 1e-2 / 3, 1e-2 / 9, 3e-2])
    assert lrs[4:6] == pytest.approx([2e-3, 0.2])  # valley is too close to the recommendation to train again
    assert lrs[6:] == pytest.approx([1e-2 / 27, 9e-2])
    assert old_order_lrs(arm, 3, start_lr=5e-3, end_lr=1.0) == pytest.approx([1e-2, 3e-2, 0.2])  # none below 5e-3
    assert old_order_lrs({"recommended_lr": None}, 3, start_lr=1e-5, end_lr=1.0) == []


def test_a_winner_is_at_an_edge_when_it_is_the_lowest_or_highest_candidate() -> None:
    rows = [{"winner": False}, {"winner": True}, {"winner": False}]
    assert at_edge(rows) is False and at_edge(rows[1:]) is True and at_edge(rows[:1]) is None


def test_the_paired_difference_removes_what_the_seed_does_to_both_rules() -> None:
    """Seeds that move both rules' losses together leave the paired difference exact, with no error."""
    mean, error = paired_difference([1.0, 2.0, 3.0], [0.9, 1.9, 2.9], scale=0.5)
    assert mean == pytest.approx(0.2) and error == pytest.approx(0.0, abs=1e-12)
    mean, error = paired_difference([1.0, 1.2], [1.1, 1.1], scale=1.0)
    assert mean == pytest.approx(0.0) and error == pytest.approx(0.1)
    assert math.isnan(paired_difference([1.0], [0.5], scale=1.0)[1])
