"""The confirm search as pure functions (`lrrt.confirm`): which LR each slot of an arm trains, given the
range test's result and the held-out losses of the earlier rounds, and what the result says about the
winner's bracket. A made-up loss landscape (`valley`) stands in for training: milliseconds."""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from typing import Any

import pytest

from lrrt import confirm
from lrrt.result_model import RunOutcome
from lrrt.spec import JobSpec

RANGE = {"start_lr": 1e-5, "end_lr": 10.0}


def valley(best: float) -> Callable[[float], float]:
    """A held-out loss that grows with the distance (decades) from `best`."""
    return lambda lr: 0.1 + abs(math.log10(lr / best))


def search(arm: dict[str, Any], count: int, loss: Callable[[float], float | None], **bounds: float) -> list[float | None]:
    """Every slot's LR, round by round, each round's candidates 'trained' with `loss` before the next."""
    losses: dict[int, float | None] = {}
    while True:
        lrs = confirm.planned_lrs(arm, count, **{**RANGE, **bounds}, losses=losses)
        new = {s: None if lr is None else loss(lr) for s, lr in enumerate(lrs) if s not in losses}
        if not new:
            return lrs
        losses |= new


def arm(recommended: float | None = 0.01, **rules: float) -> dict[str, Any]:
    return {"recommended_lr": recommended, "suggestions": rules}


def test_the_first_round_tries_both_sides_of_the_recommendation() -> None:
    assert confirm.planned_lrs(arm(0.01), 5, **RANGE, losses={}) == pytest.approx([0.01, 0.01 / 3, 0.03])
    # a rule's pick on a side (0.5 to 2 brackets away) replaces the bracket there; one too close does not
    picked = confirm.planned_lrs(arm(0.01, valley=0.002, steepest=0.012), 5, **RANGE, losses={})
    assert picked == pytest.approx([0.01, 0.002, 0.03])


@pytest.mark.parametrize("best", [1.0, 0.3, 1e-4])
def test_a_winner_at_an_edge_moves_the_bracket_until_worse_candidates_enclose_it(best: float) -> None:
    lrs = search(arm(0.01), 8, valley(best))
    tried = sorted(lr for lr in lrs if lr is not None)
    winner = min(tried, key=valley(best))
    assert abs(math.log10(winner / best)) <= math.log10(3) / 2 + 1e-9  # within half a bracket of the optimum
    assert tried[0] < winner < tried[-1]  # enclosed
    assert lrs[-1] is None  # and the search stopped there: the remaining slots are skipped


def test_an_interior_winner_of_the_first_round_ends_the_search() -> None:
    assert search(arm(0.01), 5, valley(0.012)) == pytest.approx([0.01, 0.01 / 3, 0.03, None, None], nan_ok=True)


def test_a_coarse_enclosure_from_a_rules_pick_is_refined_between_the_winner_and_its_far_neighbour() -> None:
    lrs = search(arm(0.01, steepest=0.08), 5, valley(0.012))
    assert lrs[:3] == pytest.approx([0.01, 0.01 / 3, 0.08])
    assert lrs[3] == pytest.approx(math.sqrt(0.01 * 0.08))  # the gap 0.01..0.08 is wider than a bracket
    assert lrs[4] is None  # enclosed at a bracket's resolution now


def test_the_budget_caps_the_search_and_the_range_bounds_it() -> None:
    assert len([lr for lr in search(arm(0.01), 3, valley(10.0)) if lr is not None]) == 3
    lrs = search(arm(0.01), 8, valley(10.0), end_lr=0.1)  # the optimum lies beyond end_lr
    top = max(lr for lr in lrs if lr is not None)
    assert top <= 0.1 and math.log10(0.1 / top) < confirm.MIN_SEPARATION_DECADES and lrs[-1] is None


def test_candidates_that_all_blow_up_send_the_search_lower() -> None:
    lrs = search(arm(0.01), 5, lambda lr: None if lr > 1e-3 else 0.5)
    assert lrs[3] == pytest.approx(0.01 / 9) and lrs[4] == pytest.approx(0.01 / 27)


def test_no_arm_without_a_recommendation_and_no_lr_twice() -> None:
    assert confirm.planned_lrs(arm(None), 4, **RANGE, losses={}) == [None] * 4
    rng = random.Random(0)
    for _ in range(200):  # any landscape, any rules: never two candidates closer than the separation
        rules = {name: 10 ** rng.uniform(-4, 0) for name in ("valley", "steepest", "minimum") if rng.random() < 0.5}
        lrs = [lr for lr in search(arm(10 ** rng.uniform(-4, 0), **rules), 8, lambda lr: rng.random()) if lr]
        gaps = [abs(math.log10(a / b)) for i, a in enumerate(lrs) for b in lrs[:i]]
        assert min(gaps) >= confirm.MIN_SEPARATION_DECADES - 1e-12
        assert all(RANGE["start_lr"] <= lr <= RANGE["end_lr"] for lr in lrs)


def test_a_later_slot_is_known_only_once_every_earlier_round_has_ended() -> None:
    assert len(confirm.planned_lrs(arm(0.01), 5, **RANGE, losses={0: 0.5, 1: 0.6})) == 3
    assert len(confirm.planned_lrs(arm(0.01), 5, **RANGE, losses={0: 0.5, 1: 0.6, 2: 0.4})) == 4
    assert [confirm.round_of(s) for s in range(6)] == [0, 0, 0, 1, 2, 3]


def _spec(candidates: int = 5, **sweep: Any) -> JobSpec:
    return JobSpec.model_validate({"model": {"class_name": "Sequential", "config": {"layers": []}},
                                   "dataset": {"uri": "builtin:digits", "validation_split": 0.2},
                                   "optimizers": [{"name": "adam"}],
                                   "sweep": {**RANGE, **sweep, "confirm": {"candidates": candidates}}})


def _rows(*lrs_losses: tuple[float, float]) -> list[dict[str, Any]]:
    return confirm.entries([RunOutcome(lr=lr, val_loss=loss, steps=1, stop_reason="completed") for lr, loss in lrs_losses],
                           list(range(len(lrs_losses))))


def test_the_bracket_says_whether_the_winner_is_enclosed_and_else_what_to_change() -> None:
    spec, plain = _spec(candidates=3), arm(0.01)
    enclosed = confirm.bracket(_rows((0.01, 0.5), (0.003, 0.6), (0.03, 0.7)), spec, plain)
    assert enclosed is not None and enclosed["enclosed"] and enclosed["edge"] is None and enclosed["advice"] is None
    high = confirm.bracket(_rows((0.01, 0.5), (0.003, 0.6), (0.03, 0.4)), spec, plain)
    assert high is not None and high["edge"] == "high" and "raise sweep.confirm.candidates" in high["advice"]
    at_range = confirm.bracket(_rows((1.0, 0.5), (3.0, 0.6), (10.0, 0.4)), spec, plain)
    assert at_range is not None and at_range["edge"] == "high" and "raise end_lr" in at_range["advice"]
    low = confirm.bracket(_rows((1e-5, 0.3), (3e-5, 0.6)), spec, plain)
    assert low is not None and low["edge"] == "low" and "lower start_lr" in low["advice"]
    assert confirm.bracket(_rows(), spec, plain) is None
    running = confirm.bracket(_rows((0.01, 0.5), (0.003, 0.6), (0.03, 0.4)), _spec(candidates=5), plain)  # a round to come
    assert running is not None and "next confirm round" in running["advice"] and running["rounds"] == 3


def test_the_search_stops_a_bracket_below_the_range_tests_minimum() -> None:
    """Upward, no candidate lies above the range test's lowest-loss LR / 3 (`confirm.ceiling`): a short
    fit there scores well and a long training diverges (docs/quality.md). The recommendation itself is
    always trained; without a minimum the swept range is the bound."""
    near_divergence = arm(0.1) | {"min_loss_lr": 2.4, "lrs": [1e-5, 2.4, 10.0]}
    lrs = [lr for lr in search(near_divergence, 5, valley(3.0)) if lr is not None]
    assert max(lrs) == pytest.approx(0.8) and lrs[0] == pytest.approx(0.1)
    assert confirm.ceiling(arm(0.1) | {"min_loss_lr": 0.2, "lrs": [1e-5, 10.0]}, 10.0) == pytest.approx(0.1)  # >= the pick
    assert confirm.ceiling(arm(0.1) | {"min_loss_lr": None, "lrs": [1e-5, 10.0]}, 10.0) == 10.0
    assert confirm.ceiling(arm(0.1) | {"min_loss_lr": 9.0, "lrs": [1e-5, 9.5]}, 10.0) == 10.0  # still falling at the end
    rows = _rows((0.1, 0.9), (0.3, 0.5), (0.8, 0.2))
    capped = confirm.bracket(rows, _spec(candidates=5), near_divergence)
    assert capped is not None and capped["edge"] == "high" and "ceiling" in capped["advice"]
    assert "sweep.confirm.steps" in capped["advice"]


def test_the_default_confirm_costs_at_most_three_more_sweeps() -> None:
    for candidates in range(1, 9):
        conf = _spec(candidates).sweep.confirm
        assert conf is not None and conf.budget(200) <= 200
        assert candidates * conf.budget(200) <= 3 * 200 + candidates  # ceil: a step per candidate at most
    default = JobSpec.model_validate({**_spec().model_dump(exclude_none=True), "sweep": {"confirm": True}}).sweep.confirm
    assert default is not None and (default.candidates, default.budget(200)) == (5, 120)
