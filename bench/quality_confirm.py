"""Issue 24's comparison in the quality bench: the product's confirm search (`lrrt.confirm`, rounds that
move the bracket both ways) against the candidate order it replaced (the recommendation, 3x and 9x
below it: the winner could never lie above the range test's pick), on the same range tests.

The old order lives here only, for this comparison: `replay_old_order` trains its candidates with the
engine's own confirm runs (`worker.engine.sweep.confirm_runs`: same initial weights, batch order,
held-out scoring) at the old default budget (the sweep's length each) on the plain range test's
results, so the two differ in nothing but which LRs they try.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from lrrt import confirm

if TYPE_CHECKING:
    from bench.quality import CaseResult
    from bench.quality_tasks import QualityTask

#: The old slot order's factor and its three default candidates.
OLD_BRACKET, OLD_CANDIDATES = 3.0, 3


def old_order_lrs(arm: dict[str, Any], count: int, *, start_lr: float, end_lr: float) -> list[float]:
    """The replaced `candidate_lrs`: the recommendation, one and two brackets below, one above, the rules'
    picks, wider brackets; inside the range and `MIN_SEPARATION_DECADES` apart."""
    recommended = arm.get("recommended_lr")
    if recommended is None:
        return []
    rules = arm.get("suggestions") or {}
    order = [recommended, recommended / OLD_BRACKET, recommended / OLD_BRACKET**2, recommended * OLD_BRACKET,
             *(rules.get(name) for name in ("valley", "steepest", "minimum"))]
    for power in range(2, 8):
        order += [recommended / OLD_BRACKET ** (power + 1), recommended * OLD_BRACKET**power]
    chosen: list[float] = []
    for lr in order:
        if len(chosen) < count and lr is not None and start_lr <= lr <= end_lr and all(
                abs(math.log10(lr / c)) >= confirm.MIN_SEPARATION_DECADES for c in chosen):
            chosen.append(lr)
    return chosen


def replay_old_order(task: QualityTask, plain: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each seed's plain range-test result (`SWEEPS["train"]`) with every arm's `confirm` list from the
    old order's candidates, and the job's recommendation their winner, as the product assembled it."""
    from lrrt.spec import DatasetRef, JobSpec, Sweep
    from worker.engine.data import Arrays
    from worker.engine.sweep import confirm_runs

    d = task.data
    arrays = Arrays(d.x, d.y, d.x_val, d.y_val)
    out = []
    for seed, result in enumerate(plain):
        spec = JobSpec(model=task.model, dataset=DatasetRef(uri=f"file:{task.name}.npz"), loss=task.loss,
                       optimizers=list(task.arms),
                       sweep=Sweep(batch_size=task.batch_size, seed=seed, confirm={"candidates": OLD_CANDIDATES}))
        replayed = copy.deepcopy(result)
        for index, arm in enumerate(replayed["arms"]):
            lrs = old_order_lrs(arm, OLD_CANDIDATES, start_lr=spec.sweep.start_lr, end_lr=spec.sweep.end_lr)
            ran = confirm_runs(spec, [(index, slot, lr) for slot, lr in enumerate(lrs)], data_root=Path("."), data=arrays)
            arm["confirm"] = confirm.entries([ran.curves[(index, slot)].outcome() for slot in range(len(lrs))])
        won = confirm.winner(replayed["arms"])
        if won is not None:
            replayed["recommendation"] = {**(replayed["recommendation"] or {}), "optimizer": won[0]["label"],
                                          "learning_rate": won[1]["lr"]}
        out.append(replayed)
    return out


def at_edge(rows: list[dict[str, Any]]) -> bool | None:
    """Whether an arm's winner is its lowest or highest candidate (None: no winner)."""
    won = [i for i, row in enumerate(rows) if row["winner"]]
    return None if not won else won[0] in (0, len(rows) - 1)


def paired_difference(losses: Sequence[float], reference: Sequence[float], scale: float) -> tuple[float, float]:
    """Mean and standard error over the seeds of a rule's trained loss minus the reference rule's on the
    same seed, divided by `scale` (the case's normalizing span): the seeds share their initial weights
    and batches, so pairing them removes what the seed does to both (issue 24's "no worse" bar is a
    difference of means smaller than one seed's spread). The error is NaN with one seed."""
    diffs = (np.asarray(losses, dtype=float) - np.asarray(reference, dtype=float)) / scale
    error = float(diffs.std(ddof=1) / math.sqrt(len(diffs))) if len(diffs) > 1 else float("nan")
    return float(diffs.mean()), error


def confirm_table(cases: Sequence[CaseResult], candidates: dict[str, dict[str, Any]],
                  costs: dict[str, dict[str, dict[str, float]]], sweeps: Sequence[str]) -> str:
    """Per case: where the grid's best constant LR lies against the range test's pick, each rule's mean
    normalized regret, each confirm's paired difference from the range test (mean ± standard error over
    the seeds, `paired_difference`), how often each confirm's winner sat at an edge of its candidates,
    and the cost."""
    head = ["task/arm", "best LR", "best / recommended", "recommended", *sweeps,
            *(f"{s} - recommended (± SE)" for s in sweeps), *(f"{s} at edge" for s in sweeps),
            *(f"{s} cost" for s in sweeps)]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    seen: dict[str, int] = {}
    for case in cases:  # a task's cases come in its arms' order
        task = case.case.split("/", 1)[0]
        arm = seen[task] = seen.get(task, -1) + 1
        summaries = case.summaries()
        grid = case.grids["constant"]
        recs = [lr for lr in case.rule_lrs["recommended"] if lr]
        ratio = grid.best_lr / float(np.exp(np.mean(np.log(recs)))) if recs else float("nan")
        scale = max(case.baseline - grid.best_loss, 1e-12)
        paired = [paired_difference(case.rule_losses[s], case.rule_losses["recommended"], scale) for s in sweeps]
        edges = []
        for sweep in sweeps:
            flags = [at_edge(seed_arms[arm]) for seed_arms in candidates[task][sweep]]
            edges.append(f"{sum(f is True for f in flags)} of {len(flags)}")
        cells = [case.case, f"{grid.best_lr:.2g}", f"{ratio:.2g}", f"{summaries['recommended'].normalized:.3f}",
                 *(f"{summaries[s].normalized:.3f}" for s in sweeps),
                 *(f"{mean:+.3f} ± {error:.3f}" for mean, error in paired), *edges,
                 *(f"{costs[task][s]['multiple']:.2f}x" for s in sweeps)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
