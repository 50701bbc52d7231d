"""Recommendation quality: which LR rule picks learning rates that actually train well?

For every task and optimizer arm (`bench/quality_tasks.py`) the bench
1. finds the ground truth: fixed-budget training at a log-spaced grid of constant LRs, and of one-cycle
   schedules whose max_lr is each grid point, scored by validation loss (`bench/quality_train.py`);
2. runs the range test (`worker.engine.sweep.run_sweep`, same model, same rows) once per seed, on the
   training loss and with `evaluate_on="validation"`;
3. trains, with the same budget and seed, at the LR each rule picked, and reports each rule's regret
   against the grid's best, its distance in grid steps and its spread across seeds
   (`bench/quality_metrics.py`).

Usage (2 shared CPU cores: `--quick` 3-6 min, the full run ~12 min; results in docs/quality.md)::

    nice -n 10 python -m bench.quality --quick
    nice -n 10 python -m bench.quality --tasks digits_mlp,friedman_mlp --seeds 3 --out results.json
    python -m bench.quality --report results.json   # re-print a saved run without training

Prints the ground truth, a table of means per rule, a markdown table (task/arm x rule), the best_arm
check and the confidence-signal analysis, and as its LAST line one JSON object with the mean (normalized)
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
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before TensorFlow loads: keep the table readable

import numpy as np  # noqa: E402

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
)
from bench.quality_smoothing import two_sided, two_sided_log  # noqa: E402
from bench.quality_tasks import QualityTask, build_tasks  # noqa: E402

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


#: The four kinds of task the issue asks for, half budgets, 2 seeds: minutes on 2 busy cores.
QUICK = Mode("quick", (-4.0, 0.0, 0.5), seeds=2, quick=True,
             tasks=frozenset({"digits_mlp", "digits_convnet", "friedman_mlp", "illcond_mlp"}))
FULL = Mode("full", (-5.0, 0.5, 0.5), seeds=3, quick=False)


# --------------------------------------------------------------------------- rules under test


@dataclass(frozen=True)
class Rule:
    """A way to turn range-test results into a training schedule.

    `pick(results, i)` returns the peak LR for training seed `i` (None: the rule gave no answer);
    `schedule` says whether it is trained at a constant LR or as one-cycle with that max_lr, and
    `start` maps a seed's result to the one-cycle starting LR (None: max_lr / 25, the grid's shape).
    `evaluate_on` picks the range test: the default one on training batches, or `sweep.evaluate_on =
    "validation"` (suggestions from the loss on the held-out rows, as Smith recommends).
    """

    name: str
    schedule: str
    pick: Pick
    start: Callable[[dict[str, Any]], float | None] | None = None
    what: str = ""
    evaluate_on: str = "train"  # which range test the rule reads: on the training or the validation loss


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
    from worker.core.suggestions import repeat_spread

    return repeat_spread(results, list(range(len(results))))["median"]["recommended"]


#: The engine's default sweep length and smoothing, which `sweep_results` runs (fastai's num_it, beta).
SWEEP_STEPS, SWEEP_SMOOTHING = 200, 0.98


def _two_sided(smoother: Callable[[np.ndarray, float], np.ndarray]) -> Pick:
    """Candidate: median3 with valley, steepest and minimum all read off a lag-free two-sided smoothing
    of the raw training loss (bench/quality_smoothing.py, the sweep's beta, the same windows)."""
    return lambda results, i: log_median(_smoothed_rules(results[i], smoother).values())


def _two_sided_max_lr(results: ArmResults, i: int) -> float | None:
    """Candidate: lr_bounds.max_lr (the LR at the lowest smoothed loss) on the two-sided log smoothing."""
    from worker.core import suggestions as s

    lrs, curve, steps = _smoothed_curve(results[i], two_sided_log)
    return s.lr_bounds(*s.fastai_window(lrs, curve, steps, SWEEP_STEPS))["max_lr"]


def _smoothed_curve(arm: dict[str, Any], smoother: Callable[[np.ndarray, float], np.ndarray]
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    losses = np.array([np.nan if v is None else v for v in arm["losses"]], dtype=np.float64)
    return np.asarray(arm["lrs"], dtype=np.float64), smoother(losses, SWEEP_SMOOTHING), np.arange(len(losses))


def _smoothed_rules(arm: dict[str, Any], smoother: Callable[[np.ndarray, float], np.ndarray]) -> dict[str, float | None]:
    from worker.core import suggestions as s

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
    Rule("valley[val]", "constant", _suggestion("valley"), evaluate_on="validation",
         what="valley of a range test with evaluate_on=validation"),
    Rule("median3[val]", "constant", _median3, evaluate_on="validation",
         what="median3 of a range test with evaluate_on=validation"),
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


def sweep_results(task: QualityTask, seeds: int, evaluate_on: str) -> list[ArmResults]:
    """The range test of every arm, once per seed (repeats=1), with the engine's default sweep settings.

    One call per seed instead of `repeats=seeds` because the per-seed `lr_bounds` are needed; the
    engine's own repeats runs are the same runs (seed s builds the same weights and batch order).
    """
    from worker.core.spec import DatasetRef, JobSpec, Sweep
    from worker.engine.data import Arrays
    from worker.engine.sweep import run_sweep

    d = task.data
    arrays = Arrays(d.x, d.y, d.x_val, d.y_val)
    per_seed = []
    for seed in range(seeds):
        spec = JobSpec(
            model=task.model, dataset=DatasetRef(uri=f"file:{task.name}.npz"), loss=task.loss,
            optimizers=list(task.arms), sweep=Sweep(batch_size=task.batch_size, seed=seed, evaluate_on=evaluate_on),
        )
        per_seed.append(run_sweep(spec, data_root=Path("."), data=arrays))
    return [[result["arms"][a] for result in per_seed] for a in range(len(task.arms))]


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


def measure_arm(task: QualityTask, arm_index: int, sweeps: dict[str, ArmResults], mode: Mode,
                log: Callable[[str], None]) -> CaseResult:
    """Grid ground truth and every rule's trained loss for one arm; `sweeps` by `evaluate_on`."""
    from bench.quality_train import GridTrainer, LRPlan

    arm = task.arms[arm_index]
    trainer = GridTrainer(task, arm)
    cache: dict[tuple[LRPlan, int], float] = {}

    def score(plan: LRPlan, seed: int) -> float:
        if (plan, seed) not in cache:
            cache[plan, seed] = trainer.score(plan, seed)
        return cache[plan, seed]

    lrs = log_grid(*mode.grid)
    seeds = range(mode.seeds)
    grids = {
        kind: Grid(lrs, np.array([[score(LRPlan(kind, float(lr)), s) for lr in lrs] for s in seeds]))
        for kind in ("constant", "one_cycle")
    }
    rule_lrs: dict[str, list[float | None]] = {}
    rule_losses: dict[str, list[float]] = {}
    for rule in RULES:
        results = sweeps[rule.evaluate_on]
        picks = [rule.pick(results, s) for s in seeds]
        starts = [rule.start(results[s]) if rule.start else None for s in seeds]
        rule_lrs[rule.name] = picks
        rule_losses[rule.name] = [
            trainer.cap if lr is None else score(LRPlan(rule.schedule, float(lr), start), s)  # type: ignore[arg-type]
            for s, (lr, start) in enumerate(zip(picks, starts))
        ]
    agreement = [log_range(sweeps["train"][s]["suggestions"].values()) for s in seeds]
    case = f"{task.name}/{arm.display_label}"
    log(f"{case}: grid best constant {grids['constant'].best_lr:.2g} ({grids['constant'].best_loss:.3f}), "
        f"one-cycle {grids['one_cycle'].best_lr:.2g} ({grids['one_cycle'].best_loss:.3f}); {len(cache)} fits")
    return CaseResult(case, trainer.cap, grids, rule_lrs, rule_losses, agreement)


def measure_task(task: QualityTask, mode: Mode, log: Callable[[str], None]) -> tuple[list[CaseResult], dict[str, Any]]:
    """All arms of one task, plus whether the engine's `best_arm` is the arm that trains best."""
    started = time.perf_counter()
    kinds = sorted({rule.evaluate_on for rule in RULES})
    per_kind = {kind: sweep_results(task, mode.seeds, kind) for kind in kinds}
    log(f"{task.name}: range tests ({', '.join(kinds)}) {time.perf_counter() - started:.1f}s")
    cases = [measure_arm(task, a, {kind: per_kind[kind][a] for kind in kinds}, mode, log) for a in range(len(task.arms))]
    check: dict[str, Any] = {}
    if len(cases) > 1:
        labels = [arm.display_label for arm in task.arms]

        def best_arm_per_seed(per_arm: list[ArmResults]) -> list[str]:
            return [labels[min(range(len(labels)), key=lambda a: per_arm[a][s]["min_loss"])] for s in range(mode.seeds)]

        truth = {kind: labels[int(np.argmin([c.grids[kind].best_loss for c in cases]))] for kind in ("constant", "one_cycle")}
        check = {"task": task.name, "trains_best": truth,
                 **{f"best_arm_per_seed[{kind}]": best_arm_per_seed(per_kind[kind]) for kind in kinds}}
    log(f"{task.name}: done in {time.perf_counter() - started:.0f}s")
    return cases, check


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


def report(cases: Sequence[CaseResult], checks: Sequence[dict[str, Any]], mode: Mode, seconds: float,
           commit: str | None = None) -> str:
    summaries = {c.case: c.summaries() for c in cases}
    names = [rule.name for rule in RULES]
    peers = [rule.name for rule in RULES if rule.schedule == "constant"]
    lines = [
        f"## Recommendation quality ({mode.name}: grid 10^{mode.grid[0]:g}..10^{mode.grid[1]:g} every "
        f"{mode.grid[2]:g} decades, {mode.seeds} seeds, {seconds:.0f}s)",
        "",
        "Rules: " + "; ".join(f"`{rule.name}` {rule.what}" for rule in RULES) + ".",
        "",
        "Ground truth per case (best grid LR by mean validation loss over seeds):",
        "",
        "| task/arm | baseline loss | best constant LR (loss) | best one-cycle max_lr (loss) |",
        "| --- | --- | --- | --- |",
    ]
    for c in cases:
        g, o = c.grids["constant"], c.grids["one_cycle"]
        lines.append(f"| {c.case} | {c.baseline:.3f} | {g.best_lr:.2g} ({g.best_loss:.3f}) | {o.best_lr:.2g} ({o.best_loss:.3f}) |")
    lines += ["", "Means over the cases (normalized regret: 0 = grid's best, 1 = no better than the prior):", "",
              means_table(summaries, names), "", "Per case:", "", format_table(summaries, names), ""]
    lines.append(f"Cases won (lowest regret among single-LR rules): {json.dumps(wins(summaries, peers))}")
    for check in checks:
        picked = {k: v for k, v in check.items() if k.startswith("best_arm_per_seed")}
        lines.append(f"best_arm ({check['task']}): engine's pick per seed {picked}; trains best {check['trains_best']}")
    lines.append(f"Confidence signals (Spearman with recommended's normalized regret): {json.dumps(agreement_report(cases))}")
    final = {
        "mode": mode.name,
        "commit": commit,
        "seconds": round(seconds),
        "cases": len(cases),
        "mean_normalized_regret": mean_over_cases(summaries, "normalized"),
        "mean_regret": mean_over_cases(summaries, "regret"),
        "mean_abs_grid_steps": mean_over_cases(summaries, "abs_steps"),
        "mean_lr_spread_decades": mean_over_cases(summaries, "lr_spread"),
    }
    lines.append(json.dumps(final))
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="4 tasks, coarser grid, 2 seeds, half the training budget")
    parser.add_argument("--tasks", help="comma-separated subset of the tasks (default: the mode's)")
    parser.add_argument("--seeds", type=int, help="override the mode's number of seeds")
    parser.add_argument("--out", type=Path, help="also write every measured number as JSON here")
    parser.add_argument("--report", type=Path, help="re-print the report of a saved --out file; trains nothing")
    return parser.parse_args(argv)


def measure(mode: Mode) -> tuple[list[CaseResult], list[dict[str, Any]]]:
    started = time.perf_counter()

    def log(message: str) -> None:
        print(f"[{time.perf_counter() - started:6.0f}s] {message}", file=sys.stderr, flush=True)

    cases: list[CaseResult] = []
    checks: list[dict[str, Any]] = []
    for task in build_tasks(quick=mode.quick, only=mode.tasks):
        task_cases, check = measure_task(task, mode, log)
        cases += task_cases
        checks += [check] if check else []
    return cases, checks


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    if args.report:
        saved = json.loads(args.report.read_text())
        mode = Mode(**{**saved["mode"], "tasks": frozenset(saved["mode"]["tasks"]) or None})
        mode = replace(mode, grid=tuple(mode.grid))
        cases = [CaseResult.from_json(c) for c in saved["cases"]]
        print(report(cases, saved["checks"], mode, saved["seconds"], saved.get("commit")))
        return
    mode = QUICK if args.quick else FULL
    if args.seeds or args.tasks:
        tasks = frozenset(args.tasks.split(",")) if args.tasks else mode.tasks
        mode = replace(mode, seeds=args.seeds or mode.seeds, tasks=tasks)
    commit = source_commit()
    started = time.perf_counter()
    cases, checks = measure(mode)
    seconds = time.perf_counter() - started
    if args.out:
        saved_mode = {**asdict(mode), "tasks": sorted(mode.tasks or [])}
        args.out.write_text(json.dumps({"mode": saved_mode, "commit": commit, "seconds": seconds, "checks": checks,
                                        "cases": [c.to_json() for c in cases]}, indent=1))
    print(report(cases, checks, mode, seconds, commit))


if __name__ == "__main__":
    main()
