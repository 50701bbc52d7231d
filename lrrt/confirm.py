"""The confirm phase (`sweep.confirm`): which constant LRs an arm trains at once its range test is over,
and how the measured winner becomes the job's recommendation.

A range test reads a curve; it cannot see overfitting, a loss that blows up over a longer budget, or
which optimizer trains further (docs/quality.md). Confirm measures instead: each candidate is a
training run at a constant LR, from the job's initial weights (seed `sweep.seed`) and with the job's
batch order, scored by its loss on the held-out rows. The lowest validation loss across every arm's
candidates wins, so the recommendation names both the optimizer and the LR that trained best.

Candidates are a pure function of the arm's range-test result, so a job whose confirm runs are spread
over workers (`worker.tasks`, each run works out its own candidate from the stored curves) trains the
same LRs as a job run in one process (`lrrt.inprocess`). Pure Python: the API assembles partial
results with it too.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

from lrrt.spec import JobSpec

#: Factor between neighbouring candidates (~0.5 decades: one step of bench/quality.py's ground-truth
#: grid, which is where the rules' misses lie).
BRACKET = 3.0
#: Candidates closer than this (in decades) are the same training: the later one is dropped.
MIN_SEPARATION_DECADES = 0.15
#: A candidate counts only if it trained its whole budget to a finite held-out loss.
SCORED_STOP_REASONS = frozenset({"completed"})
UNVERIFIED = ("every confirm candidate hit a NaN loss or was stopped before its budget: lower end_lr, or set "
              "sweep.confirm.steps to a shorter budget")
CRITERION = "lowest held-out loss after {steps} steps at a constant learning rate from the job's initial weights"


def candidate_lrs(arm: dict[str, Any], count: int, *, start_lr: float, end_lr: float) -> list[float]:
    """The LRs of an arm's `count` confirm slots, in slot order: the recommendation, one and two brackets
    below it, one above it, the rules' own picks (valley, steepest, minimum), then ever wider brackets;
    each within the swept range and at least `MIN_SEPARATION_DECADES` from the others. Empty when the
    arm has no recommendation (its diagnostics say why): there is nothing to confirm.

    Lower first, because that is where the constant LR that trains best lies more often than above it,
    and a budget longer than the sweep moves it further down (the measurements: docs/design.md,
    "Confirm").
    """
    recommended = arm.get("recommended_lr")
    if recommended is None:
        return []
    chosen: list[float] = []
    for lr in _priorities(float(recommended), arm.get("suggestions") or {}):
        if len(chosen) == count:
            break
        if lr is None or not start_lr <= lr <= end_lr:
            continue
        if all(abs(math.log10(lr / c)) >= MIN_SEPARATION_DECADES for c in chosen):
            chosen.append(lr)
    return chosen


def _priorities(recommended: float, rules: dict[str, float | None]) -> Iterator[float | None]:
    yield recommended
    yield recommended / BRACKET
    yield recommended / BRACKET**2
    yield recommended * BRACKET
    for name in ("valley", "steepest", "minimum"):
        yield rules.get(name)
    for power in range(2, 8):  # enough for MAX_CONFIRM_CANDIDATES inside any range
        yield recommended / BRACKET ** (power + 1)
        yield recommended * BRACKET**power


def job_candidates(arm: dict[str, Any], spec: JobSpec) -> list[float]:
    """`candidate_lrs` of this arm with the job's own confirm count and swept range, in slot order."""
    assert spec.sweep.confirm is not None
    return candidate_lrs(arm, spec.sweep.confirm.candidates, start_lr=spec.sweep.start_lr, end_lr=spec.sweep.end_lr)


def slot_lr(arm: dict[str, Any], spec: JobSpec, slot: int) -> float | None:
    """The LR confirm slot `slot` of this arm trains at, or None when the arm has fewer candidates."""
    lrs = job_candidates(arm, spec)
    return lrs[slot] if slot < len(lrs) else None


def entries(outcomes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """An arm's `confirm` list from its confirm runs' outcomes, by LR, the arm's own winner marked.
    Slots with no candidate (`skipped`) are left out."""
    rows = sorted(({"lr": o["lr"], "val_loss": o.get("val_loss"), "steps": o.get("steps", 0), "losses": o.get("losses") or [],
                    "stop_reason": o.get("stop_reason"), "winner": False} for o in outcomes if o.get("lr") is not None),
                  key=lambda row: row["lr"])
    best = _best(rows)
    if best is not None:
        best["winner"] = True
    return rows


def arm_entries(confirmed: dict[tuple[int, int], dict[str, Any]], arm_index: int) -> list[dict[str, Any]]:
    """`entries` of one arm from the ended confirm runs' outcomes of a job, keyed by (arm index, slot)."""
    return entries([outcome for (index, _), outcome in sorted(confirmed.items()) if index == arm_index])


def _best(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    scored = [r for r in rows if r["stop_reason"] in SCORED_STOP_REASONS and r["val_loss"] is not None
              and math.isfinite(r["val_loss"])]
    return min(scored, key=lambda r: (r["val_loss"], r["lr"])) if scored else None


def winner(arms: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """(arm, candidate) with the lowest held-out loss across every arm's scored candidates, or None."""
    best = [(row["val_loss"], i, row) for i, arm in enumerate(arms) for row in arm.get("confirm") or [] if row["winner"]]
    if not best:
        return None
    _, index, row = min(best, key=lambda b: (b[0], b[1]))
    return arms[index], row
