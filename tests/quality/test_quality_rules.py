"""The bench's rules read the engine's result fields as documented, and a saved run re-reports as is."""

from __future__ import annotations

import numpy as np
import pytest

from bench.quality import RULES, SWEEPS, CaseResult, acceptance, agreement_report, right_arm, step_cost
from bench.quality_metrics import Grid
from bench.quality_tasks import ADAM, SGD_MOMENTUM, QualityTask, TaskData

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
    assert RULE["valley[val]"].sweep == "validation" and RULE["valley"].sweep == "train"
    assert {rule.sweep for rule in RULES} <= set(SWEEPS)


def test_confirm_rules_read_the_arms_own_winner(results: list[dict]) -> None:
    results[0]["confirm"] = [{"lr": 1e-3, "val_loss": 0.5, "winner": False}, {"lr": 3e-3, "val_loss": 0.4, "winner": True}]
    results[1]["confirm"] = [{"lr": 1e-2, "val_loss": None, "winner": False}]  # nothing could be scored
    assert RULE["confirm"].pick(results, 0) == 3e-3 and RULE["confirm"].sweep == "confirm"
    assert RULE["confirm"].pick(results, 1) is None


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


def _job(confirm_steps: list[list[int]]) -> dict:
    """A result whose arm i ran confirm candidates of confirm_steps[i] steps."""
    return {"arms": [{"confirm": [{"steps": n} for n in steps]} for steps in confirm_steps]}


def test_step_cost_counts_the_planned_range_test_and_the_confirm_steps_run() -> None:
    data = TaskData(np.zeros((640, 1)), np.zeros(640), np.zeros((10, 1)), np.zeros(10))
    task = QualityTask("t", {}, "mean_squared_error", data, (ADAM, SGD_MOMENTUM), epochs=10, batch_size=64)
    assert task.budget_steps == 100
    plain = step_cost(task, {}, [_job([[], []])])
    assert plain == {"range_test_steps": 400, "confirm_steps": 0.0, "nominal_multiple": 1.0, "multiple": 1.0}
    ran = [_job([[200, 200, 200], [200, 50]]), _job([[200, 200, 200], [200, 200, 200]])]  # a diverged candidate, one missing
    cost = step_cost(task, SWEEPS["confirm"](task), ran)
    assert cost["nominal_multiple"] == 4.0 and cost["multiple"] == pytest.approx((400 + (850 + 1200) / 2) / 400, abs=1e-3)
    assert step_cost(task, SWEEPS["confirm@3xbudget"](task), ran)["nominal_multiple"] == 2.5  # 3 x 100 steps per arm


def test_acceptance_names_each_bar_and_the_cases_where_recommended_is_worse_than_valley() -> None:
    grid = Grid(np.array([1e-3, 1e-2, 1e-1]), np.array([[1.0, 0.2, 0.5]]))

    def case(name: str, losses: dict[str, float]) -> CaseResult:
        return CaseResult(name, 1.2, {"constant": grid, "one_cycle": grid},
                          rule_lrs={rule: [1e-2] for rule in losses}, rule_losses={rule: [v] for rule, v in losses.items()},
                          agreement=[0.0])

    cases = [case("a/adam", {"recommended": 0.2, "valley": 0.3, "confirm": 0.2, "confirm@3xbudget": 0.2}),
             case("b/adam", {"recommended": 0.4, "valley": 0.3, "confirm": 0.3, "confirm@3xbudget": 0.2})]
    check = {"task": "a", "trains_best": {"constant": "adam"}, "grid_best": {"adam": 0.2, "sgd": 0.4},
             "picks": {"confirm": ["adam"] * 9 + ["sgd"], "confirm@3xbudget": ["sgd"] * 10},
             "normalized_regret": {"confirm": [0.0] * 9 + [0.5], "confirm@3xbudget": [0.5] * 10}}
    single = {"task": "b", "trains_best": {"constant": "adam"}, "grid_best": {"adam": 0.2},
              "picks": {"confirm": ["adam"], "confirm@3xbudget": ["adam"]},
              "normalized_regret": {"confirm": [0.1], "confirm@3xbudget": [0.0]}}
    assert right_arm(check, "confirm") == (9, 10)
    costs = {"a": {"confirm": {"nominal_multiple": 4.0}, "confirm@3xbudget": {"nominal_multiple": 10.0}}}
    confirm, budget, jobs, versus_valley = acceptance({c.case: c.summaries() for c in cases}, [check, single], costs)
    assert "mean norm. regret 0.050 (<= 0.03: MISSED)" in confirm and "worst 0.100 (<= 0.15: met)" in confirm
    assert "a 9 of 10 (met)" in confirm and "4.00x" in confirm and "(<= 4: met)" in confirm
    assert "a 0 of 10 (MISSED)" in budget and "(<= 4: MISSED)" in budget and " b " not in confirm  # one arm: no check
    assert "confirm 0.075 / 0.100" in jobs and "confirm@3xbudget 0.250 / 0.500" in jobs
    assert "a/adam -0.100" in versus_valley and "b/adam +0.100" in versus_valley and versus_valley.endswith("MISSED")
