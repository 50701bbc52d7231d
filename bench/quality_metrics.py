"""Regret arithmetic of the quality bench: plain NumPy, no Keras, so it is unit-tested in milliseconds.

Definitions (docs/quality.md repeats them next to the numbers):
- The ground truth of one (task, arm, schedule) is a `Grid`: validation loss after the fixed budget at
  each log-spaced LR, one row per seed. Its best LR is the argmin of the seed-mean curve, and the
  best loss is that mean, so an oracle's expected regret is 0 (taking each seed's own minimum would
  bias every rule's regret upward by the noise).
- A rule's regret on one seed is the validation loss of training at the rule's LR (same budget, same
  seed) minus the grid's best loss. It can be slightly negative: the rule may land between grid points.
- Normalized regret divides by (baseline - best), the improvement over predicting the prior that the
  best LR achieves: 0 is as good as the grid's best, 1 is no better than not training. It makes
  cross-entropy and MSE tasks comparable, so it is the number the means across tasks use.
- Distance is signed, in grid steps: positive means the rule's LR is above the best one.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np


def log_grid(low_exp: float, high_exp: float, step_decades: float) -> np.ndarray:
    """Learning rates 10**low_exp .. 10**high_exp (inclusive), `step_decades` apart in log10."""
    count = int(round((high_exp - low_exp) / step_decades)) + 1
    return 10.0 ** (low_exp + step_decades * np.arange(count))


@dataclass(frozen=True, eq=False)
class Grid:
    """Validation losses after the budget at each grid LR; `losses[seed, point]`."""

    lrs: np.ndarray
    losses: np.ndarray

    def __post_init__(self) -> None:
        if self.losses.ndim != 2 or self.losses.shape[1] != len(self.lrs) or len(self.lrs) < 2:
            raise ValueError(f"losses must be (seeds, {len(self.lrs)}) for {len(self.lrs)} >= 2 grid LRs")

    @property
    def mean(self) -> np.ndarray:
        return self.losses.mean(axis=0)

    @property
    def best_index(self) -> int:
        return int(np.argmin(self.mean))

    @property
    def best_lr(self) -> float:
        return float(self.lrs[self.best_index])

    @property
    def best_loss(self) -> float:
        return float(self.mean[self.best_index])

    @property
    def step_decades(self) -> float:
        return float(np.log10(self.lrs[1] / self.lrs[0]))

    def steps_from_best(self, lr: float) -> float:
        """Signed distance of `lr` from the best grid LR, in grid steps (positive: too high)."""
        return math.log10(lr / self.best_lr) / self.step_decades


@dataclass(frozen=True)
class RuleSummary:
    """One rule on one (task, arm): means over seeds, and the spreads that show its stability."""

    regret: float  # mean over seeds, loss units
    regret_std: float  # across seeds
    normalized: float  # mean normalized regret (0 = grid best, 1 = no better than the prior)
    steps: float  # mean signed distance from the best grid LR, in grid steps
    abs_steps: float
    lr_spread: float  # max - min of log10(LR) across seeds, in decades (0 for a single pooled LR)
    answered: int  # seeds on which the rule gave an LR
    seeds: int


def summarize(lrs: Sequence[float | None], losses: Sequence[float], grid: Grid, baseline: float) -> RuleSummary:
    """Regret, distance and spread of one rule from its per-seed LRs and their trained losses.

    A seed where the rule gave no LR was scored by the caller as `baseline` (the user got nothing to
    train with); it counts in the regret but not in the distance or the LR spread.
    """
    if len(lrs) != len(losses) or not losses:
        raise ValueError("one loss per seed, and at least one seed")
    regrets = np.asarray(losses, dtype=float) - grid.best_loss
    given = [lr for lr in lrs if lr is not None and lr > 0]
    steps = np.array([grid.steps_from_best(lr) for lr in given]) if given else np.array([np.nan])
    log_lrs = np.log10(given) if given else np.array([np.nan])
    return RuleSummary(
        regret=float(regrets.mean()),
        regret_std=float(regrets.std()),
        normalized=float(regrets.mean() / max(baseline - grid.best_loss, 1e-12)),
        steps=float(steps.mean()),
        abs_steps=float(np.abs(steps).mean()),
        lr_spread=float(log_lrs.max() - log_lrs.min()),
        answered=len(given),
        seeds=len(losses),
    )


def log_median(values: Iterable[float | None]) -> float | None:
    """Geometric median of the positive values (the middle in log10), None when there are none."""
    logs = [math.log10(v) for v in values if v is not None and v > 0]
    return float(10 ** np.median(logs)) if logs else None


def log_range(values: Iterable[float | None]) -> float | None:
    """Decades between the smallest and largest positive value: how much a set of LRs disagrees."""
    logs = [math.log10(v) for v in values if v is not None and v > 0]
    return float(max(logs) - min(logs)) if logs else None


def mean_over_cases(summaries: Mapping[str, Mapping[str, RuleSummary]], field: str) -> dict[str, float]:
    """Mean of one `RuleSummary` field per rule over the cases (task/arm) that measured the rule."""
    by_rule: dict[str, list[float]] = {}
    for rules in summaries.values():
        for rule, summary in rules.items():
            by_rule.setdefault(rule, []).append(getattr(summary, field))
    return {rule: round(float(np.nanmean(values)), 4) for rule, values in by_rule.items()}


def worst_over_cases(summaries: Mapping[str, Mapping[str, RuleSummary]], field: str) -> dict[str, float]:
    """Largest value of one field per rule over the cases: a rule that fails badly once shows here."""
    by_rule: dict[str, list[float]] = {}
    for rules in summaries.values():
        for rule, summary in rules.items():
            by_rule.setdefault(rule, []).append(getattr(summary, field))
    return {rule: round(float(np.nanmax(values)), 4) for rule, values in by_rule.items()}


def wins(summaries: Mapping[str, Mapping[str, RuleSummary]], rules: Sequence[str]) -> dict[str, int]:
    """How many cases each of `rules` has the lowest regret among `rules` (ties count for each)."""
    counts = {rule: 0 for rule in rules}
    for case in summaries.values():
        present = {rule: case[rule].regret for rule in rules if rule in case}
        if present:
            best = min(present.values())
            for rule, regret in present.items():
                counts[rule] += int(regret <= best + 1e-12)
    return counts


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Rank correlation (no SciPy dependency): does rule disagreement predict regret?"""
    if len(x) != len(y) or len(x) < 3:
        return float("nan")
    rx, ry = _ranks(np.asarray(x, float)), _ranks(np.asarray(y, float))
    if rx.std() == 0 or ry.std() == 0:
        return float("nan")
    return float(np.corrcoef(rx, ry)[0, 1])


def _ranks(values: np.ndarray) -> np.ndarray:
    """Average ranks, ties sharing the mean of their positions."""
    order = np.argsort(values, kind="mergesort")
    ranks = np.empty(len(values))
    ranks[order] = np.arange(len(values), dtype=float)
    for value in np.unique(values):
        tied = values == value
        ranks[tied] = ranks[tied].mean()
    return ranks


def means_table(summaries: Mapping[str, Mapping[str, RuleSummary]], rules: Sequence[str]) -> str:
    """Markdown table, one row per rule, over all cases: the headline numbers."""
    columns = {
        "mean norm. regret": mean_over_cases(summaries, "normalized"),
        "worst norm. regret": worst_over_cases(summaries, "normalized"),
        "mean regret": mean_over_cases(summaries, "regret"),
        "mean abs grid steps": mean_over_cases(summaries, "abs_steps"),
        "mean LR spread (decades)": mean_over_cases(summaries, "lr_spread"),
    }
    lines = ["| rule | " + " | ".join(columns) + " |", "| --- |" + " --- |" * len(columns)]
    for rule in rules:
        if rule in columns["mean regret"]:
            lines.append(f"| {rule} | " + " | ".join(f"{values[rule]:.3f}" for values in columns.values()) + " |")
    return "\n".join(lines)


def format_table(summaries: Mapping[str, Mapping[str, RuleSummary]], rules: Sequence[str]) -> str:
    """Markdown table, one row per (case, rule): what docs/quality.md shows."""
    lines = [
        "| task/arm | rule | regret (±sd over seeds) | norm. regret | grid steps (signed) | LR spread (decades) | answered |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for case, by_rule in summaries.items():
        for rule in rules:
            if rule not in by_rule:
                continue
            s = by_rule[rule]
            lines.append(
                f"| {case} | {rule} | {s.regret:.3f} ± {s.regret_std:.3f} | {s.normalized:.3f} | "
                f"{s.steps:+.1f} | {s.lr_spread:.2f} | {s.answered}/{s.seeds} |"
            )
    return "\n".join(lines)
