"""The bench's rules read the engine's result fields as documented, and a saved run re-reports as is."""

from __future__ import annotations

import numpy as np
import pytest

from bench.quality import RULES, CaseResult, agreement_report
from bench.quality_metrics import Grid

RULE = {rule.name: rule for rule in RULES}


def _arm(valley: float | None, steepest: float | None, minimum: float | None, max_lr: float) -> dict:
    return {
        "optimizer": {"name": "adam", "params": {}},
        "suggestions": {"valley": valley, "steepest": steepest, "minimum": minimum, "slide": 1.0},
        "recommended_lr": valley, "recommended_rule": "valley",
        "lr_bounds": {"base_lr": max_lr / 4, "max_lr": max_lr},
    }


@pytest.fixture
def results() -> list[dict]:
    return [_arm(1e-3, 1e-2, 1e-1, 1.0), _arm(1e-2, 1e-5, None, 0.4)]


def test_single_seed_rules_read_their_fields(results: list[dict]) -> None:
    assert RULE["valley"].pick(results, 1) == 1e-2
    assert RULE["minimum"].pick(results, 1) is None
    assert RULE["keras_default"].pick(results, 0) == pytest.approx(1e-3)
    assert RULE["one_cycle"].pick(results, 0) == 1.0 and RULE["one_cycle"].schedule == "one_cycle"
    assert RULE["clr_bounds"].start(results[1]) == pytest.approx(0.1)
    assert RULE["one_cycle@max/4"].pick(results, 1) == pytest.approx(0.1)
    assert RULE["one_cycle@min"].pick(results, 0) == pytest.approx(1e-2)  # 10 x 1e-3 < 1.0 / 4
    assert RULE["one_cycle@min"].pick([_arm(1e-2, None, None, 0.2)], 0) == pytest.approx(0.05)  # 0.2 / 4 < 10 x 1e-2
    assert RULE["valley[val]"].evaluate_on == "validation" and RULE["valley"].evaluate_on == "train"


def test_median3_outvotes_one_rule_and_copes_with_a_missing_one(results: list[dict]) -> None:
    assert RULE["median3"].pick(results, 0) == pytest.approx(1e-2)
    assert RULE["median3"].pick(results, 1) == pytest.approx(10**-3.5)  # geometric mean of the two left


def test_pooled_rules_give_every_seed_the_median_over_seeds(results: list[dict]) -> None:
    pooled = [RULE["recommended@seeds"].pick(results, i) for i in range(2)]
    assert pooled == pytest.approx([10**-2.5, 10**-2.5])
    assert RULE["median3@seeds"].pick(results, 0) == pytest.approx(10 ** ((-2 - 3.5) / 2))


def test_saved_case_round_trips_and_reports() -> None:
    grid = Grid(np.array([1e-3, 1e-2, 1e-1]), np.array([[1.0, 0.2, 0.5], [1.0, 0.4, 0.5]]))
    names = [rule.name for rule in RULES]
    case = CaseResult(
        "t/adam", 2.3, {"constant": grid, "one_cycle": grid},
        rule_lrs={name: [1e-2, 1e-1] for name in names} | {"retired_rule": [1.0, 1.0]},
        rule_losses={name: [0.3, 0.5] for name in names} | {"retired_rule": [1.0, 1.0]},
        agreement=[1.0, 2.0],
    )
    again = CaseResult.from_json(case.to_json())
    assert set(again.summaries()) == set(names)  # a rule no longer defined is left out
    assert again.summaries()["valley"].regret == pytest.approx(0.1)
    assert agreement_report([again])["seeds_scored"] == 2
