"""Recommendation quality: which LR rule picks learning rates that actually train well?

For every task and optimizer arm (`bench/quality_tasks.py`) the bench
1. finds the ground truth: fixed-budget training at a log-spaced grid of constant LRs, and of one-cycle
   schedules whose max_lr is each grid point, scored by validation loss (`bench/quality_train.py`);
2. runs the range test (`worker.engine.sweep.run_sweep`, same model, same rows) once per seed, on the
   training loss, with `evaluate_on="validation"` and with each `sweep.confirm` setting (`SWEEPS`);
3. trains, with the same budget and seed, at the LR each rule picked, and reports each rule's regret
   against the grid's best, its distance in grid steps and its spread across seeds
   (`bench/quality_metrics.py`).

Usage (2 shared CPU cores: `--quick` ~8 min, the full run ~20 min; results in docs/quality.md)::

    nice -n 10 python -m bench.quality --quick
    nice -n 10 python -m bench.quality --tasks digits_mlp,friedman_mlp --seeds 3 --out results.json
    nice -n 10 python -m bench.quality --tasks illcond_mlp --arm-seeds 10   # the Adam-vs-SGD check on 10 seeds
    nice -n 10 python -m bench.quality --confirm --out confirm.json   # issue 24: confirm search vs old order
    nice -n 10 python -m bench.quality --confirm --rules recommended,confirm@5xsweep   # its budget check
    python -m bench.quality --report results.json   # re-print a saved run without training

Prints the ground truth, a table of means per rule, a markdown table (task/arm x rule), each sweep's
cost in steps, the best-arm check, where the confirm winners sit, the confidence-signal analysis and
issue 13's acceptance, and as its LAST line one JSON object with the mean (normalized)
regret of every rule across the cases.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before TensorFlow loads: keep the table readable

import numpy as np  # noqa: E402

from bench.quality_confirm import OLD_CANDIDATES, confirm_table, replay_old_order  # noqa: E402
from bench.quality_metrics import (  # noqa: E402
    Grid,
    RuleSummary,
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
from bench.quality_smoothing import two_sided, two_sided_log  # noqa: E402
from bench.quality_tasks import QualityTask, build_tasks  # noqa: E402

if TYPE_CHECKING:
    from bench.quality_train import GridTrainer

#: One arm's range-test result (the API's arm object) for each seed, in seed order.
ArmResults = list[dict[str, Any]]
#: A rule: from the per-seed results, the LR for training seed i (None: the rule gave no answer).
Pick = Callable[[ArmResults, int], float | None]


@dataclass(frozen=True)
class Mode:
    """How much to measure: grid range and density (log10 exponents) and the number of seeds."""

    name: str
    grid: tuple[float, float, float]  # low exponent, high exponent, step in decades
    seeds: int
    quick: bool
    tasks: frozenset[str] | None = None  # None: every task
    arm_seeds: int = 0  # seeds of the best-arm check on tasks with several arms (at least `seeds`)
    rules: frozenset[str] | None = None  # None: every rule of `RULES` (and the full report)

    def measured(self) -> tuple[Rule, ...]:
        """The rules this mode trains and scores."""
        return tuple(rule for rule in RULES if self.rules is None or rule.name in self.rules)


#: The kinds of task the issues ask for, half budgets, 2 seeds: minutes on 2 busy cores.
QUICK = Mode("quick", (-4.0, 0.0, 0.5), seeds=2, quick=True,
             tasks=frozenset({"digits_mlp", "digits_convnet", "friedman_mlp", "illcond_mlp", "cancer_wide_mlp",
                              "illcond_long"}))
#: Every task; the best-arm check on 10 seeds, as issue 13 asks (`ARM_CHECK_SWEEPS` and one fit per seed).
FULL = Mode("full", (-5.0, 0.5, 0.5), seeds=3, quick=False, arm_seeds=10)
#: Issue 24: the confirm search against the candidate order it replaced, on cases whose best constant LR
#: lies below the range test's pick and on cases where it lies above; half budgets, constant LRs only.
CONFIRM = Mode("confirm", (-3.5, 0.5, 0.5), seeds=3, quick=True,
               tasks=frozenset({"digits_mlp", "digits_convnet", "cancer_wide_mlp", "digits_convnet_sgd", "digits_bn_sgd"}),
               rules=frozenset({"recommended", "steepest", "confirm", "confirm@old"}))


# --------------------------------------------------------------------------- rules under test


@dataclass(frozen=True)
class Rule:
    """A way to turn range-test results into a training schedule.

    `pick(results, i)` returns the peak LR for training seed `i` (None: the rule gave no answer);
    `schedule` says whether it is trained at a constant LR or as one-cycle with that max_lr, and
    `start` maps a seed's result to the one-cycle starting LR (None: max_lr / 25, the grid's shape).
    `sweep` names the range test it reads (a key of `SWEEPS`): the default one on training batches,
    `sweep.evaluate_on = "validation"` (suggestions from the loss on the held-out rows, as Smith
    recommends), or one with `sweep.confirm` (short fits at candidate LRs after the range test).
    """

    name: str
    schedule: str
    pick: Pick
    start: Callable[[dict[str, Any]], float | None] | None = None
    what: str = ""
    sweep: str = "train"


def _suggestion(name: str) -> Pick:
    return lambda results, i: results[i]["suggestions"].get(name)


def _scaled(pick: Pick, factor: float) -> Pick:
    def scaled(results: ArmResults, i: int) -> float | None:
        lr = pick(results, i)
        return None if lr is None else lr * factor

    return scaled


def _smaller(*picks: Pick) -> Pick:
    """The most cautious of several picks: each one alone overshoots on a different task."""

    def smaller(results: ArmResults, i: int) -> float | None:
        lrs = [lr for lr in (pick(results, i) for pick in picks) if lr is not None]
        return min(lrs) if lrs else None

    return smaller


def _pooled(pick: Pick) -> Pick:
    """One LR for every seed: the median in log10 over the seeds' picks (what `repeats` can offer)."""
    return lambda results, i: log_median(pick(results, s) for s in range(len(results)))


def _median3(results: ArmResults, i: int) -> float | None:
    """Candidate: the middle of valley, steepest and minimum/10, so one rule's failure is outvoted."""
    suggestions = results[i]["suggestions"]
    return log_median(suggestions.get(name) for name in ("valley", "steepest", "minimum"))


def _pooled_recommendation(results: ArmResults, i: int) -> float | None:
    """What the engine returns with `repeats = seeds`: the median over seeds of each seed's recommended_lr."""
    from lrrt.suggestions import repeat_spread

    return repeat_spread(results, list(range(len(results))))["median"]["recommended"]


#: The engine's default sweep length and smoothing, which `sweep_results` runs (fastai's num_it, beta).
SWEEP_STEPS, SWEEP_SMOOTHING = 200, 0.98


def _two_sided(smoother: Callable[[np.ndarray, float], np.ndarray]) -> Pick:
    """Candidate: median3 with valley, steepest and minimum all read off a lag-free two-sided smoothing
    of the raw training loss (bench/quality_smoothing.py, the sweep's beta, the same windows)."""
    return lambda results, i: log_median(_smoothed_rules(results[i], smoother).values())


def _two_sided_max_lr(results: ArmResults, i: int) -> float | None:
    """Candidate: lr_bounds.max_lr (the LR at the lowest smoothed loss) on the two-sided log smoothing."""
    from lrrt import suggestions as s

    lrs, curve, steps = _smoothed_curve(results[i], two_sided_log)
    return s.lr_bounds(*s.fastai_window(lrs, curve, steps, SWEEP_STEPS))["max_lr"]


def _smoothed_curve(arm: dict[str, Any], smoother: Callable[[np.ndarray, float], np.ndarray]
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    losses = np.array([np.nan if v is None else v for v in arm["losses"]], dtype=np.float64)
    return np.asarray(arm["lrs"], dtype=np.float64), smoother(losses, SWEEP_SMOOTHING), np.arange(len(losses))


def _smoothed_rules(arm: dict[str, Any], smoother: Callable[[np.ndarray, float], np.ndarray]) -> dict[str, float | None]:
    from lrrt import suggestions as s

    lrs, curve, steps = _smoothed_curve(arm, smoother)
    fastai = s.fastai_window(lrs, curve, steps, SWEEP_STEPS)
    return {"valley": s.answer(s.valley, *fastai), "steepest": s.answer(s.steepest, *s.torch_window(lrs, curve, steps)),
            "minimum": s.answer(s.minimum, *fastai)}


def _keras_default(results: ArmResults, i: int) -> float:
    """The LR a user gets by not choosing: the Keras optimizer's constructor default."""
    import keras

    return float(keras.optimizers.get(results[i]["optimizer"]["name"]).learning_rate)


def _max_lr(results: ArmResults, i: int) -> float | None:
    return results[i]["lr_bounds"]["max_lr"]


def _recommended(results: ArmResults, i: int) -> float | None:
    return results[i]["recommended_lr"]


def _confirmed(results: ArmResults, i: int) -> float | None:
    """The arm's own confirm winner: the candidate LR whose fixed-LR fit reached the lowest held-out loss."""
    winner = next((c for c in results[i].get("confirm") or [] if c["winner"]), None)
    return None if winner is None else winner["lr"]


def _sweep_steps(task: QualityTask) -> int:
    """The engine's default sweep length on this task's rows."""
    from lrrt.spec import Sweep

    return Sweep(batch_size=task.batch_size).total_steps(len(task.data.x))


#: The range tests the rules read, by name: the `Sweep` fields each sets on the engine's defaults for a
#: task. "confirm" is the product's confirm mode as a user turns it on (`sweep.confirm: true`: the
#: search of up to 5 candidates, 0.6 sweeps each); the others show its trade-offs: "confirm@5x120"
#: sets 5 candidates of 120 steps, "confirm@5xsweep" 5 of the sweep's length (does the default's
#: shorter fit bias the answer?), "confirm@4" 4 candidates of the default budget (0.75 sweeps),
#: "confirm@3xbudget" and "confirm@5xbudget" give each candidate the task's whole training budget
#: (what the default's shorter fits cost), and "confirm@old" is the candidate order issue 24
#: replaced, replayed on the plain range tests.
SWEEPS: dict[str, Callable[[QualityTask], dict[str, Any]]] = {
    "train": lambda task: {},
    "validation": lambda task: {"evaluate_on": "validation"},
    "confirm": lambda task: {"confirm": True},
    "confirm@5x120": lambda task: {"confirm": {"candidates": 5, "steps": 120}},
    "confirm@3xbudget": lambda task: {"confirm": {"candidates": 3, "steps": task.budget_steps}},
    "confirm@5xbudget": lambda task: {"confirm": {"candidates": 5, "steps": task.budget_steps}},
    "confirm@5xsweep": lambda task: {"confirm": {"candidates": 5, "steps": _sweep_steps(task)}},
    "confirm@4": lambda task: {"confirm": {"candidates": 4}},
    # not run: replayed on the "train" range tests (`bench.quality_confirm.replay_old_order`); the fields give its cost
    "confirm@old": lambda task: {"confirm": {"candidates": OLD_CANDIDATES}},
}
#: Sweeps made from another's results instead of run: by name, (the sweep they read, how).
REPLAYED = {"confirm@old": ("train", replay_old_order)}
#: The sweeps the best-arm check runs on `Mode.arm_seeds` seeds: the range test alone and the product's
#: confirm default (the others on the mode's seeds; a range test with confirm costs seconds on 2 cores).
ARM_CHECK_SWEEPS = ("train", "confirm")


#: Trained and scored on every case. Peers' rules as the engine computes them, the engine's
#: recommendation (alone and pooled over seeds), the no-range-test baseline, and candidates.
RULES: tuple[Rule, ...] = (
    Rule("recommended", "constant", _recommended, what="engine's recommended_lr, one seed"),
    Rule("recommended@seeds", "constant", _pooled_recommendation,
         what="engine's recommended_lr with repeats = all seeds (median over seeds)"),
    Rule("valley", "constant", _suggestion("valley"), what="fastai default"),
    Rule("steepest", "constant", _suggestion("steepest"), what="pytorch-lr-finder"),
    Rule("minimum", "constant", _suggestion("minimum"), what="fastai minimum/10"),
    Rule("slide", "constant", _suggestion("slide"), what="fastai slide"),
    Rule("keras_default", "constant", _keras_default, what="the optimizer's default LR (no range test)"),
    Rule("median3", "constant", _median3, what="candidate: log-median of valley, steepest, minimum"),
    Rule("median3@seeds", "constant", _pooled(_median3), what="candidate: median3, median over seeds"),
    Rule("valley[val]", "constant", _suggestion("valley"), sweep="validation",
         what="valley of a range test with evaluate_on=validation"),
    Rule("median3[val]", "constant", _median3, sweep="validation",
         what="median3 of a range test with evaluate_on=validation"),
    Rule("confirm", "constant", _confirmed, sweep="confirm",
         what="sweep.confirm = true: the arm's winner of fixed-LR fits at candidate LRs, on the held-out rows"),
    Rule("confirm@old", "constant", _confirmed, sweep="confirm@old",
         what="the candidate order before issue 24 (the recommendation, 3x and 9x below it; the sweep's length "
         "each), on the same range tests: never above the range test's pick"),
    Rule("confirm@5xsweep", "constant", _confirmed, sweep="confirm@5xsweep",
         what="the confirm search with each candidate the sweep's length instead of the default 0.6 sweeps "
         "(does the shorter default fit bias the answer?)"),
    Rule("confirm@4", "constant", _confirmed, sweep="confirm@4",
         what="the confirm search with 4 candidates of 0.75 sweeps (the same 3 sweeps' worth) instead of 5 of 0.6"),
    Rule("confirm@5x120", "constant", _confirmed, sweep="confirm@5x120",
         what="the same with 5 candidates of 120 steps each (the same cost)"),
    Rule("confirm@3xbudget", "constant", _confirmed, sweep="confirm@3xbudget",
         what="the same with each candidate fit for the task's whole training budget"),
    Rule("confirm@5xbudget", "constant", _confirmed, sweep="confirm@5xbudget",
         what="the confirm search with 5 candidates of the task's whole training budget each (`confirm.steps` = "
         "the budget: the documented way to do better than the default's 0.6 sweeps)"),
    Rule("median3[2s]", "constant", _two_sided(two_sided),
         what="candidate: median3 on a lag-free two-sided smoothing (arithmetic) instead of the EMAs"),
    Rule("median3[2s-log]", "constant", _two_sided(two_sided_log),
         what="candidate: median3 on a lag-free two-sided smoothing of log(loss) instead of the EMAs"),
    Rule("one_cycle", "one_cycle", _max_lr,
         what="one-cycle at lr_bounds.max_lr from max_lr/25 (the result's recommendation.one_cycle)"),
    Rule("clr_bounds", "one_cycle", _max_lr, start=lambda a: a["lr_bounds"]["base_lr"],
         what="one-cycle from lr_bounds.base_lr up to lr_bounds.max_lr"),
    Rule("one_cycle@max/4", "one_cycle", _scaled(_max_lr, 0.25),
         what="candidate: one-cycle at lr_bounds.base_lr (= max_lr/4) from there/25"),
    Rule("one_cycle@10xrec", "one_cycle", _scaled(_recommended, 10.0),
         what="candidate: one-cycle at 10 x recommended_lr"),
    Rule("one_cycle@min", "one_cycle", _smaller(_scaled(_recommended, 10.0), _scaled(_max_lr, 0.25)),
         what="candidate: one-cycle at min(10 x recommended_lr, lr_bounds.max_lr / 4)"),
    Rule("one_cycle@min[2s-log]", "one_cycle",
         _smaller(_scaled(_two_sided(two_sided_log), 10.0), _scaled(_two_sided_max_lr, 0.25)),
         what="candidate: one_cycle@min with median3[2s-log] and max_lr from the same smoothing"),
)


# --------------------------------------------------------------------------- measuring one task


def range_tests(task: QualityTask, seeds: int, fields: dict[str, Any]) -> list[dict[str, Any]]:
    """The job's whole result (`run_sweep`, repeats=1) once per seed: the engine's default sweep at the
    task's batch size, plus `fields` (a `SWEEPS` entry).

    One call per seed instead of `repeats=seeds` because the per-seed `lr_bounds`, confirm fits and
    recommendations are needed; the engine's own repeats runs are the same runs (seed s builds the
    same weights and batch order).
    """
    from lrrt.spec import DatasetRef, JobSpec, Sweep
    from worker.engine.data import Arrays
    from worker.engine.sweep import run_sweep

    d = task.data
    arrays = Arrays(d.x, d.y, d.x_val, d.y_val)
    return [
        run_sweep(JobSpec(model=task.model, dataset=DatasetRef(uri=f"file:{task.name}.npz"), loss=task.loss,
                          optimizers=list(task.arms), sweep=Sweep(batch_size=task.batch_size, seed=seed, **fields)),
                  data_root=Path("."), data=arrays)
        for seed in range(seeds)
    ]


def arm_results(per_seed: Sequence[dict[str, Any]], arm: int) -> ArmResults:
    """One arm's entry of each seed's result, in seed order (what a `Pick` reads)."""
    return [result["arms"][arm] for result in per_seed]


def step_cost(task: QualityTask, fields: dict[str, Any], per_seed: Sequence[dict[str, Any]]) -> dict[str, float]:
    """Training steps of one job with the sweep `fields`, as a multiple of its range test's.

    Range test: arms x planned sweep steps (an arm that diverged stops sooner, but a user books the
    whole sweep). Confirm, nominal: arms x candidates x confirm steps; measured: the steps its fits
    ran (mean over the seeds; a candidate that diverges stops early, an arm may have fewer candidates
    inside the swept range). The training after the choice is the user's own and not counted.
    """
    from lrrt.spec import Sweep

    sweep = Sweep(batch_size=task.batch_size, **fields)
    rows = len(task.data.x)
    range_test = len(task.arms) * sweep.total_steps(rows)
    nominal = len(task.arms) * (sweep.confirm.candidates if sweep.confirm else 0) * sweep.confirm_steps(rows)
    ran = float(np.mean([sum(c["steps"] for arm in r["arms"] for c in arm.get("confirm") or []) for r in per_seed]))
    return {"range_test_steps": range_test, "confirm_steps": round(ran, 1),
            "nominal_multiple": round((range_test + nominal) / range_test, 3),
            "multiple": round((range_test + ran) / range_test, 3)}


@dataclass
class CaseResult:
    """Everything measured for one (task, arm): grids, the sweeps' numbers, per-rule LRs and losses."""

    case: str
    baseline: float
    grids: dict[str, Grid]
    rule_lrs: dict[str, list[float | None]]
    rule_losses: dict[str, list[float]]
    agreement: list[float | None]  # per seed: decades spanned by steepest/valley/minimum/slide

    def summaries(self) -> dict[str, RuleSummary]:
        """Per rule; rules no longer in `RULES` (an older saved run) are left out."""
        rules = {rule.name: rule for rule in RULES}
        return {
            name: summarize(lrs, self.rule_losses[name], self.grids[rules[name].schedule], self.baseline)
            for name, lrs in self.rule_lrs.items()
            if name in rules
        }

    def to_json(self) -> dict[str, Any]:
        return {
            "case": self.case, "baseline": self.baseline,
            "grids": {k: {"lrs": g.lrs.tolist(), "losses": g.losses.tolist()} for k, g in self.grids.items()},
            "rule_lrs": self.rule_lrs, "rule_losses": self.rule_losses, "agreement": self.agreement,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CaseResult:
        grids = {k: Grid(np.array(g["lrs"]), np.array(g["losses"])) for k, g in data["grids"].items()}
        return cls(data["case"], data["baseline"], grids, data["rule_lrs"], data["rule_losses"], data["agreement"])


def measure_arm(task: QualityTask, trainer: GridTrainer, sweeps: dict[str, ArmResults], mode: Mode,
                log: Callable[[str], None]) -> CaseResult:
    """Grid ground truth and every rule's trained loss for one arm; `sweeps` by `SWEEPS` name."""
    from bench.quality_train import LRPlan

    lrs = log_grid(*mode.grid)
    seeds = range(mode.seeds)
    grids = {
        kind: Grid(lrs, np.array([[trainer.score(LRPlan(kind, float(lr)), s) for lr in lrs] for s in seeds]))
        for kind in ("constant", "one_cycle") if any(rule.schedule == kind for rule in mode.measured())
    }
    rule_lrs: dict[str, list[float | None]] = {}
    rule_losses: dict[str, list[float]] = {}
    for rule in mode.measured():
        results = sweeps[rule.sweep]
        picks = [rule.pick(results, s) for s in seeds]
        starts = [rule.start(results[s]) if rule.start else None for s in seeds]
        rule_lrs[rule.name] = picks
        rule_losses[rule.name] = [
            trainer.cap if lr is None else trainer.score(LRPlan(rule.schedule, float(lr), start), s)  # type: ignore[arg-type]
            for s, (lr, start) in enumerate(zip(picks, starts))
        ]
    agreement = [log_range(sweeps["train"][s]["suggestions"].values()) for s in seeds]
    case = f"{task.name}/{trainer.arm.display_label}"
    log(f"{case}: grid best " + ", ".join(f"{kind} {g.best_lr:.2g} ({g.best_loss:.3f})" for kind, g in grids.items())
        + f"; {trainer.fits} fits")
    return CaseResult(case, trainer.cap, grids, rule_lrs, rule_losses, agreement)


def best_arm_check(task: QualityTask, cases: Sequence[CaseResult], trainers: Sequence[GridTrainer],
                   runs: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """Does the job's `recommendation` name the optimizer that trains best, and how well does it train?

    The job-level number of every task (with one arm, its regret is that case's recommended one).
    Truth: the arm with the lowest grid-best validation loss (constant LR; one-cycle beside it). Per
    sweep and seed: the optimizer the result's `recommendation` names (the range test's `best_arm`;
    with confirm, the arm whose candidate won on the held-out rows) and the normalized regret of
    training that optimizer at the recommended LR for the budget, against the best arm's grid best
    (1.0 when there is no recommendation). Seeds beyond the grid's use the grid's seed-mean best.
    """
    from bench.quality_train import LRPlan

    labels = [arm.display_label for arm in task.arms]
    grid_best = {label: case.grids["constant"].best_loss for label, case in zip(labels, cases)}
    reference = min(grid_best.values())
    scale = max(trainers[0].cap - reference, 1e-12)

    def regret(recommendation: dict[str, Any] | None, seed: int) -> float:
        if not recommendation or recommendation.get("learning_rate") is None:
            return 1.0
        trainer = trainers[labels.index(recommendation["optimizer"])]
        return (trainer.score(LRPlan("constant", float(recommendation["learning_rate"])), seed) - reference) / scale

    return {
        "task": task.name,
        "grid_best": grid_best,
        "trains_best": {kind: labels[int(np.argmin([c.grids[kind].best_loss for c in cases]))]
                        for kind in cases[0].grids},
        "picks": {name: [(r["recommendation"] or {}).get("optimizer") for r in per_seed] for name, per_seed in runs.items()},
        "normalized_regret": {name: [round(regret(r["recommendation"], s), 4) for s, r in enumerate(per_seed)]
                              for name, per_seed in runs.items()},
    }


@dataclass
class TaskResult:
    """One task measured: its cases, the job-level check (`best_arm_check`) and each sweep's cost."""

    cases: list[CaseResult]
    check: dict[str, Any]
    costs: dict[str, dict[str, float]]  # by SWEEPS name
    candidates: dict[str, list[list[list[dict[str, Any]]]]]  # confirm sweeps: [seed][arm] -> candidates, by LR


def confirm_candidates(per_seed: Sequence[dict[str, Any]]) -> list[list[list[dict[str, Any]]]]:
    """Each seed's and arm's confirm candidates without their curves (the edge statistic reads them; the
    steps show a candidate stopped early, for example by the divergence stop)."""
    keep = ("lr", "val_loss", "steps", "stop_reason", "winner")
    return [[[{k: c[k] for k in keep} for c in arm.get("confirm") or []] for arm in r["arms"]] for r in per_seed]


def measure_task(task: QualityTask, mode: Mode, log: Callable[[str], None]) -> TaskResult:
    """All arms of one task; with several arms, the best-arm check's sweeps for `mode.arm_seeds` seeds."""
    from bench.quality_train import GridTrainer

    started = time.perf_counter()
    extra = max(mode.arm_seeds, mode.seeds) if len(task.arms) > 1 else mode.seeds
    names = sorted({rule.sweep for rule in mode.measured()} | {"train"})
    runs = {name: range_tests(task, extra if name in ARM_CHECK_SWEEPS else mode.seeds, SWEEPS[name](task))
            for name in names if name not in REPLAYED}
    for name in (n for n in names if n in REPLAYED):
        source, replay = REPLAYED[name]
        runs[name] = replay(task, runs[source][: mode.seeds])
    log(f"{task.name}: range tests ({', '.join(names)}; {mode.seeds} seeds, {extra} for "
        f"{', '.join(ARM_CHECK_SWEEPS)}) {time.perf_counter() - started:.1f}s")
    trainers = [GridTrainer(task, arm) for arm in task.arms]
    cases = [measure_arm(task, trainer, {name: arm_results(r[: mode.seeds], a) for name, r in runs.items()}, mode, log)
             for a, trainer in enumerate(trainers)]
    check = best_arm_check(task, cases, trainers, runs)
    log(f"{task.name}: done in {time.perf_counter() - started:.0f}s")
    return TaskResult(cases, check, {name: step_cost(task, SWEEPS[name](task), per_seed) for name, per_seed in runs.items()},
                      {name: confirm_candidates(per_seed) for name, per_seed in runs.items() if name.startswith("confirm")})


# --------------------------------------------------------------------------- reporting


def agreement_report(cases: Sequence[CaseResult]) -> dict[str, Any]:
    """Which signal flags the seeds where `recommended` trains badly? Rank correlations with its regret.

    - rules: decades spanned by the four suggestions (do the rules disagree?);
    - seeds: decades spanned by `recommended` across seeds (per case);
    - headroom: decades between `recommended` and `lr_bounds.max_lr` (how close to where the loss
      turned up: Smith's advice is to stay about a decade below).
    A useful confidence signal correlates positively (rules, seeds) or negatively (headroom).
    """
    spread, headroom, regret = [], [], []
    for c in cases:
        grid = c.grids["constant"]
        scale = max(c.baseline - grid.best_loss, 1e-12)
        picks = zip(c.agreement, c.rule_lrs["recommended"], c.rule_lrs["one_cycle"], c.rule_losses["recommended"])
        for rules_spread, recommended, max_lr, loss in picks:
            if rules_spread is not None and recommended and max_lr:
                spread.append(rules_spread)
                headroom.append(float(np.log10(max_lr / recommended)))
                regret.append((loss - grid.best_loss) / scale)
    seed_spread = [log_range(c.rule_lrs["recommended"]) or 0.0 for c in cases]
    case_regret = [c.summaries()["recommended"].normalized for c in cases]
    return {
        "rules_spread_vs_regret": round(spearman(spread, regret), 3),
        "seed_spread_vs_regret": round(spearman(seed_spread, case_regret), 3),
        "headroom_vs_regret": round(spearman(headroom, regret), 3),
        "seeds_scored": len(regret),
        "headroom_decades_when_regret_over_0.2": [round(h, 2) for h, r in zip(headroom, regret) if r > 0.2],
        "headroom_decades_min_when_regret_under_0.05": round(min((h for h, r in zip(headroom, regret) if r < 0.05),
                                                                 default=float("nan")), 2),
    }


def source_commit() -> str | None:
    """The checkout's commit (with "+dirty" for local edits): rule LRs move when the engine changes."""
    import subprocess

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], capture_output=True, text=True, check=True).stdout.strip()

    try:
        dirty = git("status", "--porcelain", "--untracked-files=no", "--", "worker", "bench")
        return git("rev-parse", "--short", "HEAD") + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return None


#: Issue 13's bar for the confirm mode (docs/quality.md): mean and worst normalized regret over the cases,
#: the share of seeds whose recommendation names the optimizer that trains best, the cost in range-test steps.
TARGET_MEAN, TARGET_WORST, TARGET_RIGHT_ARM, TARGET_COST = 0.03, 0.15, 0.9, 4.0


def cost_table(costs: dict[str, dict[str, dict[str, float]]], rules: Sequence[Rule] = RULES) -> str:
    """Markdown table of each sweep's steps per job, as a multiple of the range test's, over the tasks;
    `rules`: those measured, named beside the sweep they read."""
    lines = ["| sweep | rules reading it | x range-test steps, nominal: mean (max) over tasks | ran: mean (max) | ran, per task |",
             "| --- | --- | --- | --- | --- |"]
    for name in SWEEPS:
        per_task = {task: by_sweep[name] for task, by_sweep in costs.items() if name in by_sweep}
        if per_task:
            reading = ", ".join(f"`{rule.name}`" for rule in rules if rule.sweep == name)
            nominal, ran = ([c[key] for c in per_task.values()] for key in ("nominal_multiple", "multiple"))
            tasks = ", ".join(f"{task} {c['multiple']:.2f}" for task, c in per_task.items())
            lines.append(f"| {name} | {reading} | {np.mean(nominal):.2f} ({max(nominal):.2f}) | "
                         f"{np.mean(ran):.2f} ({max(ran):.2f}) | {tasks} |")
    return "\n".join(lines)


def winner_edges(candidates: dict[str, dict[str, list[list[list[dict[str, Any]]]]]]) -> dict[str, dict[str, int]]:
    """Per confirm sweep: how often an arm's winner was its lowest or its highest candidate LR.

    A winner at the edge says the best LR for the confirm budget may lie outside the bracket (too
    narrow); "none" counts arms where no candidate could be scored (every one diverged or stopped).
    """
    edges: dict[str, dict[str, int]] = {}
    for by_sweep in candidates.values():
        for name, per_seed in by_sweep.items():
            count = edges.setdefault(name, {"arms": 0, "lowest": 0, "highest": 0, "inside": 0, "none": 0})
            for arms in per_seed:
                for rows in arms:
                    count["arms"] += 1
                    won = [i for i, row in enumerate(rows) if row["winner"]]
                    where = "none" if not won else "lowest" if won[0] == 0 else "highest" if won[0] == len(rows) - 1 else "inside"
                    count[where] += 1
    return edges


def right_arm(check: dict[str, Any], sweep: str) -> tuple[int, int]:
    """(seeds whose recommendation names the arm that trains best at a constant LR, seeds)."""
    picks = check["picks"][sweep]
    return sum(pick == check["trains_best"]["constant"] for pick in picks), len(picks)


def check_table(check: dict[str, Any]) -> str:
    """Markdown table of one best-arm check: per sweep, the right optimizer in k of n seeds and the regret."""
    lines = ["| sweep | right optimizer (seeds) | picks per seed | norm. regret of the recommendation: mean / worst |",
             "| --- | --- | --- | --- |"]
    for name, picks in check["picks"].items():
        right, seeds = right_arm(check, name)
        regret = check["normalized_regret"][name]
        lines.append(f"| {name} | {right} of {seeds} | {', '.join(str(p) for p in picks)} | "
                     f"{np.mean(regret):.3f} / {max(regret):.3f} |")
    return "\n".join(lines)


def acceptance(summaries: dict[str, dict[str, RuleSummary]], checks: Sequence[dict[str, Any]],
               costs: dict[str, dict[str, dict[str, float]]]) -> list[str]:
    """Issue 13's bar, rule by rule for the confirm rules, and `recommended` against valley per case."""
    mean, worst = mean_over_cases(summaries, "normalized"), worst_over_cases(summaries, "normalized")
    lines = []
    for rule in (r for r in RULES if r.sweep.startswith("confirm") and r.name in mean):  # measured in this run
        cost = max(by_sweep[rule.sweep]["nominal_multiple"] for by_sweep in costs.values())
        arms = [(check["task"], *right_arm(check, rule.sweep)) for check in checks if len(check["grid_best"]) > 1]
        lines.append(
            f"- `{rule.name}`: mean norm. regret {mean[rule.name]:.3f} (<= {TARGET_MEAN}: {_yes(mean[rule.name] <= TARGET_MEAN)}), "
            f"worst {worst[rule.name]:.3f} (<= {TARGET_WORST}: {_yes(worst[rule.name] <= TARGET_WORST)}); right optimizer "
            + (", ".join(f"{task} {k} of {n} ({_yes(k >= TARGET_RIGHT_ARM * n)})" for task, k, n in arms) or "(no task with 2 arms)")
            + f"; cost up to {cost:.2f}x the range test's steps, nominal (<= {TARGET_COST:g}: {_yes(cost <= TARGET_COST)})")
    jobs = {sweep: [float(np.mean(check["normalized_regret"][sweep])) for check in checks] for sweep in checks[0]["picks"]}
    lines.append("- the job's recommendation (optimizer and LR, trained for the budget; mean over seeds per task), "
                 "norm. regret mean / worst over the tasks: "
                 + ", ".join(f"{sweep} {np.mean(v):.3f} / {max(v):.3f}" for sweep, v in jobs.items()))
    margins = {case: by_rule["recommended"].normalized - by_rule["valley"].normalized for case, by_rule in summaries.items()}
    worse = {case: margin for case, margin in margins.items() if margin > 0}
    lines.append("- without confirm, `recommended` minus `valley` (norm. regret, > 0: worse than valley): "
                 + ", ".join(f"{case} {margin:+.3f}" for case, margin in margins.items())
                 + f"; no worse on every case: {_yes(not worse)}")
    return lines


def _yes(met: bool) -> str:
    return "met" if met else "MISSED"


@dataclass
class Run:
    """One bench run, everything it measured: what `--out` writes and `--report` re-prints."""

    mode: Mode
    commit: str | None
    seconds: float
    cases: list[CaseResult]
    checks: list[dict[str, Any]]
    costs: dict[str, dict[str, dict[str, float]]]  # task -> SWEEPS name -> `step_cost`
    candidates: dict[str, dict[str, list[list[list[dict[str, Any]]]]]]  # task -> confirm sweep -> `confirm_candidates`

    def to_json(self) -> dict[str, Any]:
        return {"mode": {**asdict(self.mode), "tasks": sorted(self.mode.tasks or []),
                         "rules": None if self.mode.rules is None else sorted(self.mode.rules)}, "commit": self.commit,
                "seconds": self.seconds, "checks": self.checks, "costs": self.costs, "candidates": self.candidates,
                "cases": [c.to_json() for c in self.cases]}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Run:
        rules = data["mode"].get("rules")
        mode = Mode(**{**data["mode"], "grid": tuple(data["mode"]["grid"]), "tasks": frozenset(data["mode"]["tasks"]) or None,
                       "rules": None if rules is None else frozenset(rules)})
        return cls(mode, data.get("commit"), data["seconds"], [CaseResult.from_json(c) for c in data["cases"]],
                   data["checks"], data["costs"], data["candidates"])


def confirm_report(run: Run) -> str:
    """The report of a mode that measures a few rules (`Mode.rules`, issue 24's `--confirm`): ground truth,
    the rules' regrets, the confirm comparison table, costs and winners at an edge; JSON last."""
    summaries = {c.case: c.summaries() for c in run.cases}
    names = [rule.name for rule in run.mode.measured()]
    sweeps = [rule.sweep for rule in run.mode.measured() if rule.sweep.startswith("confirm")]
    mode = run.mode
    lines = [f"## Confirm search ({mode.name}: grid 10^{mode.grid[0]:g}..10^{mode.grid[1]:g} every {mode.grid[2]:g} "
             f"decades, {mode.seeds} seeds, {run.seconds:.0f}s)", "",
             "Rules: " + "; ".join(f"`{rule.name}` {rule.what}" for rule in run.mode.measured()) + ".", "",
             "Per case (normalized regret, mean over seeds: 0 = the grid's best constant LR, 1 = no better than the "
             "prior; best / recommended: the grid's best LR over the seeds' log-mean recommendation):", "",
             confirm_table(run.cases, run.candidates, run.costs, sweeps), "",
             "Means over the cases:", "", means_table(summaries, names), "", "Per case, in full:", "",
             format_table(summaries, names), "", "Cost in training steps per job:", "",
             cost_table(run.costs, run.mode.measured()), "",
             f"Confirm winners at the edge of their candidates (arm x seed): {json.dumps(winner_edges(run.candidates))}"]
    lines.append(json.dumps({"mode": mode.name, "commit": run.commit, "seconds": round(run.seconds), "cases": len(run.cases),
                             "mean_normalized_regret": mean_over_cases(summaries, "normalized"),
                             "worst_normalized_regret": worst_over_cases(summaries, "normalized")}))
    return "\n".join(lines)


def report(run: Run) -> str:
    if run.mode.rules is not None:
        return confirm_report(run)
    mode = run.mode
    summaries = {c.case: c.summaries() for c in run.cases}
    names = [rule.name for rule in RULES]
    peers = [rule.name for rule in RULES if rule.schedule == "constant"]
    lines = [
        f"## Recommendation quality ({mode.name}: grid 10^{mode.grid[0]:g}..10^{mode.grid[1]:g} every "
        f"{mode.grid[2]:g} decades, {mode.seeds} seeds, {run.seconds:.0f}s)",
        "",
        "Rules: " + "; ".join(f"`{rule.name}` {rule.what}" for rule in RULES) + ".",
        "",
        "Ground truth per case (best grid LR by mean validation loss over seeds):",
        "",
        "| task/arm | baseline loss | best constant LR (loss) | best one-cycle max_lr (loss) |",
        "| --- | --- | --- | --- |",
    ]
    for c in run.cases:
        g, o = c.grids["constant"], c.grids["one_cycle"]
        lines.append(f"| {c.case} | {c.baseline:.3f} | {g.best_lr:.2g} ({g.best_loss:.3f}) | {o.best_lr:.2g} ({o.best_loss:.3f}) |")
    lines += ["", "Means over the cases (normalized regret: 0 = grid's best, 1 = no better than the prior):", "",
              means_table(summaries, names), "", "Per case:", "", format_table(summaries, names), "",
              "Cost in training steps per job (range test: arms x planned sweep steps; confirm: the steps its fits ran):",
              "", cost_table(run.costs), ""]
    lines.append(f"Cases won (lowest regret among single-LR rules): {json.dumps(wins(summaries, peers))}")
    for check in (c for c in run.checks if len(c["grid_best"]) > 1):
        best = ", ".join(f"{arm} {loss:.3f}" for arm, loss in check["grid_best"].items())
        lines += ["", f"best_arm check, {check['task']}: trains best {check['trains_best']} (grid-best constant-LR "
                  f"loss {best}); the optimizer each seed's `recommendation` names:", "", check_table(check), ""]
    lines.append(f"Confirm winners at the edge of their candidates (arm x seed): {json.dumps(winner_edges(run.candidates))}")
    lines.append(f"Confidence signals (Spearman with recommended's normalized regret): {json.dumps(agreement_report(run.cases))}")
    lines += ["", "Issue 13 acceptance:", *acceptance(summaries, run.checks, run.costs), ""]
    final = {
        "mode": mode.name,
        "commit": run.commit,
        "seconds": round(run.seconds),
        "cases": len(run.cases),
        "mean_normalized_regret": mean_over_cases(summaries, "normalized"),
        "worst_normalized_regret": worst_over_cases(summaries, "normalized"),
        "mean_regret": mean_over_cases(summaries, "regret"),
        "mean_abs_grid_steps": mean_over_cases(summaries, "abs_steps"),
        "mean_lr_spread_decades": mean_over_cases(summaries, "lr_spread"),
        "right_optimizer": {check["task"]: {name: right_arm(check, name) for name in check["picks"]}
                            for check in run.checks if len(check["grid_best"]) > 1},
        "cost_multiple": {task: {name: c["multiple"] for name, c in by_sweep.items()} for task, by_sweep in run.costs.items()},
    }
    lines.append(json.dumps(final))
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="4 tasks, coarser grid, 2 seeds, half the training budget")
    parser.add_argument("--confirm", action="store_true", help="issue 24: the confirm search against the old candidate "
                        "order on cases whose best LR lies below and above the range test's pick (3 seeds, half budgets)")
    parser.add_argument("--tasks", help="comma-separated subset of the tasks (default: the mode's)")
    parser.add_argument("--seeds", type=int, help="override the mode's number of seeds")
    parser.add_argument("--rules", help="comma-separated rules to measure, with the short report (default: the mode's)")
    parser.add_argument("--arm-seeds", type=int, help="seeds of the best-arm check on tasks with several arms "
                        "(range tests and one fit per seed and sweep; default: the mode's, 10 in the full run)")
    parser.add_argument("--out", type=Path, help="also write every measured number as JSON here")
    parser.add_argument("--report", type=Path, help="re-print the report of a saved --out file; trains nothing")
    return parser.parse_args(argv)


def measure(mode: Mode, commit: str | None) -> Run:
    started = time.perf_counter()

    def log(message: str) -> None:
        print(f"[{time.perf_counter() - started:6.0f}s] {message}", file=sys.stderr, flush=True)

    run = Run(mode, commit, 0.0, [], [], {}, {})
    for task in build_tasks(quick=mode.quick, only=mode.tasks):
        measured = measure_task(task, mode, log)
        run.cases += measured.cases
        run.checks.append(measured.check)
        run.costs[task.name] = measured.costs
        run.candidates[task.name] = measured.candidates
    run.seconds = time.perf_counter() - started
    return run


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    if args.report:
        print(report(Run.from_json(json.loads(args.report.read_text()))))
        return
    mode = CONFIRM if args.confirm else QUICK if args.quick else FULL
    mode = replace(mode, seeds=args.seeds or mode.seeds, arm_seeds=args.arm_seeds or mode.arm_seeds,
                   tasks=frozenset(args.tasks.split(",")) if args.tasks else mode.tasks,
                   rules=frozenset(args.rules.split(",")) if args.rules else mode.rules)
    run = measure(mode, source_commit())
    if args.out:
        args.out.write_text(json.dumps(run.to_json(), indent=1))
    print(report(run))


if __name__ == "__main__":
    main()
