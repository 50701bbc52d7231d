"""Suggestion rules, diagnostics and summaries: plain NumPy on stored curves.

No Keras here: the API re-runs these on stored curves (for example with other skip windows), and a
user can check every number against the definitions below, which follow the peers users know:

- `steepest` (pytorch-lr-finder `suggest_lr`, PyTorch Lightning `suggestion`): the LR where the
  smoothed loss falls fastest, i.e. the most negative `np.gradient` of the smoothed loss against
  log10(LR), ignoring the first `skip_start=10` and last `skip_end=5` points (their defaults).
- `valley` (fastai's default): the longest run of strictly decreasing smoothed loss, then the point
  half-way between the first and second third of that run. fastai skips the first `n//10` and last 5
  points.
- `slide` (fastai): walking left from the end, the first LR where the gradient of the smoothed loss
  within a window of 15 points changes by less than 0.005 (fastai's `lr_diff`, `thresh`); same skips.
- `minimum` (fastai `minimum`): the LR at the lowest smoothed loss divided by 10; same skips.
- `lr_bounds` (Smith, cyclical LR): `max_lr` is the LR at the lowest smoothed loss (the largest LR that
  still trains), `base_lr = max_lr / 4` (Smith: a factor of 3 to 4 below).
- `one_cycle` (Smith; fastai/PyTorch `OneCycleLR` shape): `max_lr = min(10 x recommended_lr,
  lr_bounds.max_lr / 4)`, `base_lr = max_lr / 25` (div_factor), `final_lr = base_lr / 1e4`,
  `pct_start = 0.3`. Measured in bench/quality.py (docs/quality.md): one-cycle at the loss minimum itself
  diverged or landed far off on 4 of 7 cases; each half of the min alone overshoots on some task.
- `recommended_lr` (`median3`): the median in log10 of `valley`, `steepest` and `minimum` (the middle one;
  the geometric mean when two answer; the one that answers when only one does, named by its own rule).
  Measured against the grid-trained ground truth in bench/quality.py, it ties or beats fastai's valley
  (the best single peer rule) on every run, and is closer to the best LR by 0.3-0.4 grid steps.
  With repeats, the median over the seeds of each seed's recommendation.
- `rule_spread_log10`: decades between the largest and smallest of valley, steepest and minimum, a plain
  number to read beside the recommendation (measured: it does not predict regret, so no label).
- `loss_deltas` (the tutorial's moving-average derivative): `(losses[i] - losses[i-ma]) / ma` on the
  raw losses, aligned with `lrs` (the first `ma` entries are null).
- The smoothed loss is fastai's debiased exponential moving average with factor `smoothing`.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

RULE_NAMES = ("steepest", "valley", "slide", "minimum")
STEEPEST_SKIP = (10, 5)
FASTAI_SKIP_END = 5
SLIDE_WINDOW, SLIDE_THRESHOLD = 15, 0.005
CLR_FACTOR, ONE_CYCLE_DIV, ONE_CYCLE_FINAL_DIV, ONE_CYCLE_PCT_START = 4.0, 25.0, 1e4, 0.3
#: one-cycle's max_lr is at most this multiple of the recommended (constant) LR.
ONE_CYCLE_REC_FACTOR = 10.0
#: Fewer usable points than this after the skip windows and no rule answers.
MIN_POINTS = 8
#: Diagnostics thresholds (documented in `rules`).
FLAT_RELATIVE_RANGE = 0.05
NOISY_RATIO = 0.5
EARLY_FRACTION = 0.2
LATE_FRACTION = 0.9

Curve = Sequence[float | None]


def rule_descriptions(num_points: int) -> dict[str, str]:
    """What each rule did on a curve of `num_points`, with the skip windows it used (for the result)."""
    fastai_start = num_points // 10
    return {
        "steepest": f"most negative gradient of the smoothed loss vs log10(lr), skipping the first "
        f"{STEEPEST_SKIP[0]} and last {STEEPEST_SKIP[1]} points (pytorch-lr-finder, Lightning)",
        "valley": f"middle of the longest strictly decreasing run of the smoothed loss (first third + half a "
        f"third), skipping the first {fastai_start} (n//10) and last {FASTAI_SKIP_END} points (fastai default)",
        "slide": f"walking left from the end, first lr where the smoothed-loss gradient changes by less than "
        f"{SLIDE_THRESHOLD} across {SLIDE_WINDOW} points, same skips as valley (fastai)",
        "minimum": "lr at the lowest smoothed loss divided by 10, same skips as valley (fastai)",
        "lr_bounds": f"max_lr = lr at the lowest smoothed loss, base_lr = max_lr/{CLR_FACTOR:g} (Smith, CLR)",
        "one_cycle": f"max_lr = min({ONE_CYCLE_REC_FACTOR:g} x recommended_lr, lr_bounds.max_lr/{CLR_FACTOR:g}), "
        f"base_lr = max_lr/{ONE_CYCLE_DIV:g}, final_lr = base_lr/{ONE_CYCLE_FINAL_DIV:g}, pct_start "
        f"{ONE_CYCLE_PCT_START} (Smith's one-cycle; max_lr chosen by bench/quality.py)",
        "recommended": "median3: the median in log10 of valley, steepest and minimum (geometric mean when two "
        "answer); with repeats, the median over the seeds. Lowest regret in bench/quality.py",
        "rule_spread_log10": "decades between the largest and smallest of valley, steepest and minimum",
        "min_loss": "minimum of the smoothed loss (debiased EMA) and the lr where it occurred",
        "loss_deltas": "(losses[i] - losses[i-ma]) / ma on the raw losses, null for i < ma (the tutorial)",
        "diagnostics": f"flat: smoothed range < {FLAT_RELATIVE_RANGE:.0%} of its max; noisy: median "
        f"|loss - smoothed| > {NOISY_RATIO} x smoothed range; diverged_early: stopped before "
        f"{EARLY_FRACTION:.0%} of the steps; never_diverged: completed with the minimum after "
        f"{LATE_FRACTION:.0%} of the steps; too_few_points: < {MIN_POINTS} points after skips",
    }


# --------------------------------------------------------------------------- curves


class Smoother:
    """fastai's debiased exponential moving average, one value at a time (the sweep's divergence check
    feeds it chunk by chunk; `smooth` feeds it a stored curve, so both agree to the last bit)."""

    def __init__(self, beta: float) -> None:
        self.beta = beta
        self.avg = 0.0
        self.count = 0

    def push(self, value: float) -> float:
        self.count += 1
        self.avg = self.beta * self.avg + (1.0 - self.beta) * value
        return self.avg / (1.0 - self.beta**self.count)


def smooth(losses: Curve, beta: float) -> np.ndarray:
    """The smoothed curve; from the first NaN/inf/None loss on it is NaN."""
    values = _array(losses)
    out = np.full(values.shape, np.nan)
    smoother = Smoother(beta)
    for i, value in enumerate(values):
        if not math.isfinite(value):
            break
        out[i] = smoother.push(value)
    return out


def loss_deltas(losses: Curve, window: int) -> list[float | None]:
    """The tutorial's moving-average derivative, aligned with the losses (None where undefined)."""
    values = _array(losses)
    deltas: list[float | None] = [None] * min(window, len(values))
    deltas += [_finite((values[i] - values[i - window]) / window) for i in range(window, len(values))]
    return deltas


# --------------------------------------------------------------------------- rules


def steepest(lrs: np.ndarray, smoothed: np.ndarray) -> float | None:
    start, end = STEEPEST_SKIP
    lrs, smoothed = lrs[start : len(lrs) - end], smoothed[start : len(smoothed) - end]
    if len(smoothed) < MIN_POINTS:
        return None
    grad = np.gradient(smoothed, np.log10(lrs))
    return float(lrs[int(np.argmin(grad))])


def valley(lrs: np.ndarray, smoothed: np.ndarray) -> float | None:
    lrs, smoothed = _fastai_window(lrs, smoothed)
    if len(smoothed) < MIN_POINTS:
        return None
    lds = _longest_decreasing_ending_at(smoothed)
    max_end = int(np.argmax(lds))  # first index of the longest run, as fastai's loop finds it
    max_start = max_end - int(lds[max_end])
    sections = (max_end - max_start) / 3
    return float(lrs[max_start + int(sections) + int(sections / 2)])


def slide(lrs: np.ndarray, smoothed: np.ndarray) -> float | None:
    lrs, smoothed = _fastai_window(lrs, smoothed)
    if len(smoothed) < max(MIN_POINTS, SLIDE_WINDOW + 1):
        return None
    grad = np.gradient(smoothed)
    right, left = -1, -1 - SLIDE_WINDOW
    found = lrs[left]
    while left >= -len(smoothed) and abs(grad[right] - grad[left]) > SLIDE_THRESHOLD:
        found = lrs[left]
        right -= 1
        left -= 1
    return float(found)


def minimum(lrs: np.ndarray, smoothed: np.ndarray) -> float | None:
    lrs, smoothed = _fastai_window(lrs, smoothed)
    if len(smoothed) < MIN_POINTS:
        return None
    return float(lrs[int(np.argmin(smoothed))] / 10.0)


RULES = {"steepest": steepest, "valley": valley, "slide": slide, "minimum": minimum}
#: The rules whose log-median is the recommendation (`slide` is left out: the worst rule measured).
CONSENSUS_RULES = ("valley", "steepest", "minimum")
#: How `best_arm` chooses, stated in the result: it is not a comparison of fully trained models.
BEST_ARM_CRITERION = ("lowest smoothed loss reached during the range test; not a comparison of trained models "
                      "(confirm by training both at their recommended LR when it matters)")


def suggest(lrs: Curve, smoothed: Curve) -> dict[str, float | None]:
    """Every rule on the finite prefix of a curve (points after a NaN never count)."""
    x, y = _finite_prefix(lrs, smoothed)
    return {name: rule(x, y) for name, rule in RULES.items()}


def recommend(suggestions: dict[str, float | None]) -> tuple[float | None, str | None]:
    """`median3`: the log-median of the consensus rules that answered (see the module docstring)."""
    picks = {rule: suggestions[rule] for rule in CONSENSUS_RULES if suggestions.get(rule)}
    if not picks:
        return None, None
    if len(picks) == 1:
        return next(iter(picks.values())), next(iter(picks))
    return float(10 ** np.median(np.log10(list(picks.values())))), "median3"


def rule_spread(suggestions: dict[str, float | None]) -> float | None:
    """Decades spanned by the consensus rules' answers (None with fewer than two)."""
    logs = [math.log10(v) for rule in CONSENSUS_RULES if (v := suggestions.get(rule))]
    return max(logs) - min(logs) if len(logs) > 1 else None


def lr_bounds(lrs: Curve, smoothed: Curve) -> dict[str, float | None]:
    x, y = _fastai_window(*_finite_prefix(lrs, smoothed))
    if len(y) < MIN_POINTS:
        return {"base_lr": None, "max_lr": None}
    max_lr = float(x[int(np.argmin(y))])
    return {"base_lr": max_lr / CLR_FACTOR, "max_lr": max_lr}


def one_cycle(bounds: dict[str, float | None], recommended_lr: float | None) -> dict[str, float | None] | None:
    candidates = [lr for lr in (None if recommended_lr is None else ONE_CYCLE_REC_FACTOR * recommended_lr,
                                None if bounds.get("max_lr") is None else bounds["max_lr"] / CLR_FACTOR)
                  if lr is not None]
    if not candidates:
        return None
    max_lr = min(candidates)
    base_lr = max_lr / ONE_CYCLE_DIV
    return {"max_lr": max_lr, "base_lr": base_lr, "final_lr": base_lr / ONE_CYCLE_FINAL_DIV,
            "pct_start": ONE_CYCLE_PCT_START, "div_factor": ONE_CYCLE_DIV, "final_div_factor": ONE_CYCLE_FINAL_DIV}


# --------------------------------------------------------------------------- one arm


def analyze_arm(
    lrs: Curve,
    losses: Curve,
    *,
    smoothing: float,
    moving_average: int,
    stop_reason: str,
    planned_steps: int,
    val_losses: Curve | None = None,
) -> dict[str, Any]:
    """Every derived field of one arm's result from its raw curves.

    With `val_losses` (evaluate_on=validation), suggestions, bounds and min_loss use the validation
    curve at the steps where it was measured; `smoothed_losses` and `loss_deltas` stay on the train loss.
    """
    lr_arr, loss_arr = _array(lrs), _array(losses)
    smoothed = smooth(loss_arr, smoothing)
    basis_lrs, basis = lr_arr, smoothed
    if val_losses is not None:
        val = _array(val_losses)
        measured = ~np.isnan(val)  # None (not measured) became NaN
        basis_lrs, basis = lr_arr[measured], smooth(val[measured], smoothing)
    suggestions = suggest(basis_lrs, basis)
    recommended, rule = recommend(suggestions)
    bounds = lr_bounds(basis_lrs, basis)
    x, y = _finite_prefix(basis_lrs, basis)
    best = int(np.argmin(y)) if len(y) else None
    return {
        "smoothed_losses": _list(smoothed),
        "loss_deltas": loss_deltas(loss_arr, moving_average),
        "suggestions": suggestions,
        "rules": rule_descriptions(len(y)),
        "lr_bounds": bounds,
        "recommended_lr": recommended,
        "recommended_rule": rule,
        "rule_spread_log10": rule_spread(suggestions),
        "min_loss": None if best is None else _finite(y[best]),
        "min_loss_lr": None if best is None else float(x[best]),
        "diagnostics": diagnostics(loss_arr, smoothed, stop_reason=stop_reason, planned_steps=planned_steps),
    }


def diagnostics(losses: np.ndarray, smoothed: np.ndarray, *, stop_reason: str, planned_steps: int) -> list[dict[str, Any]]:
    """Machine-readable flags about the curve; each says what to change."""
    flags: list[dict[str, Any]] = []
    bad = np.flatnonzero(~np.isfinite(losses))
    if len(bad):
        step = int(bad[0])
        flags.append({"code": "nan_at_step", "step": step,
                      "message": f"the loss became NaN/inf at step {step}; the curve ends there"})
    finite = smoothed[np.isfinite(smoothed)]
    usable = len(finite) - len(finite) // 10 - FASTAI_SKIP_END
    if usable < MIN_POINTS:
        flags.append({"code": "too_few_points",
                      "message": f"only {len(finite)} points were recorded; use more steps or a smaller start_lr"})
        return flags
    stopped_at = len(losses)
    if stop_reason in ("diverged", "nan") and stopped_at < EARLY_FRACTION * planned_steps:
        flags.append({"code": "diverged_early", "step": stopped_at - 1,
                      "message": f"the loss diverged after {stopped_at} of {planned_steps} steps; lower start_lr"})
    if stop_reason == "completed" and int(np.argmin(finite)) >= LATE_FRACTION * len(finite):
        flags.append({"code": "never_diverged",
                      "message": "the loss was still falling at end_lr; raise end_lr to see where training breaks down"})
    spread = float(finite.max() - finite.min())
    if spread < FLAT_RELATIVE_RANGE * abs(float(finite.max())):
        flags.append({"code": "flat", "message": "the loss barely changed over the range; widen it or check the model and data"})
    elif np.median(np.abs(losses[: len(finite)] - finite)) > NOISY_RATIO * spread:
        flags.append({"code": "noisy", "message": "step-to-step noise is as large as the trend; raise batch_size or repeats"})
    return flags


def repeat_spread(per_seed: list[dict[str, Any]], seeds: list[int]) -> dict[str, Any]:
    """Each seed's suggestions, their median and IQR in log10(LR) per rule (the stability users ask for)."""
    rules = (*RULE_NAMES, "recommended")
    values = {rule: [s["suggestions"].get(rule) if rule != "recommended" else s["recommended_lr"] for s in per_seed]
              for rule in rules}
    median: dict[str, float | None] = {}
    iqr: dict[str, float | None] = {}
    for rule, vals in values.items():
        logs = np.log10([v for v in vals if v is not None and v > 0])
        median[rule] = float(10 ** np.median(logs)) if len(logs) else None
        iqr[rule] = float(np.subtract(*np.percentile(logs, [75, 25]))) if len(logs) else None
    return {"seeds": seeds, "suggestions": values, "median": median, "iqr_log10": iqr}


# --------------------------------------------------------------------------- across arms


def best_arm(arms: list[dict[str, Any]]) -> str | None:
    """The arm whose (smoothed) minimum loss is lowest: the tutorial's "which optimizer does best"."""
    scored = [(arm["min_loss"], i) for i, arm in enumerate(arms) if arm.get("min_loss") is not None]
    return arms[min(scored)[1]]["label"] if scored else None


def recommendation(arms: list[dict[str, Any]], best: str | None) -> dict[str, Any] | None:
    arm = next((a for a in arms if a["label"] == best), None)
    if arm is None:
        return None
    return {"optimizer": arm["label"], "optimizer_criterion": BEST_ARM_CRITERION,
            "learning_rate": arm.get("recommended_lr"), "rule": arm.get("recommended_rule"),
            "one_cycle": one_cycle(arm.get("lr_bounds") or {}, arm.get("recommended_lr"))}


# --------------------------------------------------------------------------- helpers


def json_safe(value: Any) -> Any:
    """NaN and inf become None, NumPy scalars become Python numbers, recursively."""
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, np.ndarray):
        return [json_safe(v) for v in value.tolist()]
    if isinstance(value, (np.floating, float)):
        return _finite(float(value))
    if isinstance(value, np.integer):
        return int(value)
    return value


def _finite(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def _list(values: np.ndarray) -> list[float | None]:
    return [_finite(v) for v in values.tolist()]


def _array(values: Curve) -> np.ndarray:
    return np.array([np.nan if v is None else v for v in values], dtype=np.float64)


def _finite_prefix(lrs: Curve, values: Curve) -> tuple[np.ndarray, np.ndarray]:
    x, y = _array(lrs), _array(values)
    bad = np.flatnonzero(~np.isfinite(y))
    end = int(bad[0]) if len(bad) else len(y)
    return x[:end], y[:end]


def _fastai_window(lrs: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    start = len(values) // 10
    end = max(start, len(values) - FASTAI_SKIP_END)
    return lrs[start:end], values[start:end]


def _longest_decreasing_ending_at(values: np.ndarray) -> np.ndarray:
    """Length of the longest strictly decreasing subsequence ending at each index, in O(n log n).

    fastai computes the same with an O(n^2) double loop, too slow for 20,000-step sweeps.
    """
    tails: list[float] = []  # tails[k]: smallest negated end value of a decreasing run of length k+1
    lengths = np.empty(len(values), dtype=np.int64)
    for i, value in enumerate(-values):
        pos = bisect.bisect_left(tails, value)
        if pos == len(tails):
            tails.append(value)
        else:
            tails[pos] = value
        lengths[i] = pos + 1
    return lengths
