"""Suggestion rules, diagnostics and summaries: plain NumPy on stored curves.

No Keras here: the API re-runs these on stored curves (for example on a running job's partial
curves), and a user can check every number against the definitions below. A rule that carries a
peer's name gives that peer's answer on the same raw losses (tests/lrrt/test_suggestions.py compares
each against an independent re-implementation of the peer's published algorithm):

- `steepest` (pytorch-lr-finder `LRFinder.plot(suggest_lr=True)`): its own smoothing of the raw losses
  (`range_test`'s `smooth_f=0.05`: `s[0] = loss[0]`, `s[i] = 0.05 loss[i] + 0.95 s[i-1]`, no debiasing),
  the points `[skip_start=10 : -skip_end=5]`, and the LR at the most negative `np.gradient` over the
  step index.
- `valley` (fastai's default), `slide` and `minimum` (fastai `minimum`: LR at the lowest loss / 10) on
  fastai's smoothed loss (the debiased EMA with factor `smoothing`, 0.98 as fastai's Recorder) over
  fastai's window `[num_it//10 : -5]`: the skip at the start comes from the PLANNED step count, not
  the recorded length (a sweep that diverged at step 60 of 200 still skips 20), the skip at the end
  from the recorded curve, and the window is cut at its first NaN, as `Learner.lr_find` does.
  `valley`: the longest strictly decreasing run (fastai's longest decreasing subsequence), then the
  point half-way between its first and second third. `slide`: walking left from the end, the first LR
  where the gradient within 15 points changes by less than 0.005 (fastai's `lr_diff`, `thresh`).
  On a validation curve (measured once per chunk) both start skips count steps, not points.
- `lr_bounds` (Smith, cyclical LR): `max_lr` is the LR at the lowest smoothed loss in fastai's window,
  `base_lr = max_lr / 4` (Smith: a factor of 3 to 4 below).
- `one_cycle` (Smith; fastai/PyTorch `OneCycleLR` shape): `max_lr = min(10 x recommended_lr,
  lr_bounds.max_lr / 4, min_loss_lr)`, `base_lr = max_lr / 25` (div_factor), `final_lr = base_lr / 1e4`,
  `pct_start = 0.3`; none when that max_lr is below the sweep's start_lr (the range never showed it).
  The min of three, because one-cycle at the loss minimum itself diverges or lands far off, and each
  of the others alone overshoots on some task (measured: docs/design.md, "Suggestion rules").
- `recommended_lr` (`median3`): the median in log10 of `valley`, `steepest` and `minimum` (the middle one;
  the geometric mean when two answer; the one that answers when only one does, named by its own rule).
  Measured against the grid-trained ground truth in bench/quality.py, it ties or beats fastai's valley.
  With repeats, the median over the seeds of each seed's recommendation. None, with a diagnostic that
  says what to change, when the curve is flat, never fell, or has too few points: any number would
  be a confident-looking guess.
- `rule_spread_log10`: decades between the largest and smallest of valley, steepest and minimum, a plain
  number to read beside the recommendation (measured: it does not predict regret, so no label).
- `loss_deltas` (the tutorial's moving-average derivative): `(losses[i] - losses[i-ma]) / ma` on the
  raw losses, aligned with `lrs` (the first `ma` entries are null).
- Diagnostics read the curve the rules read (fastai's smoothed loss over valley's window) for flat,
  never_fell and the fall; the noise from the raw losses' second differences (trend-free, so no
  smoother's lag or width enters it); raw_spike from medians of raw losses, for blow-ups the EMA
  hides. A lag-free two-sided smoother was measured for the rules in bench/quality.py and lost to
  the EMA (docs/quality.md), so the EMA stays, in the rules and in the in-loop divergence stop.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from lrrt.progress import finite

RULE_NAMES = ("steepest", "valley", "slide", "minimum")
#: pytorch-lr-finder: `range_test(smooth_f=0.05)`, `plot(skip_start=10, skip_end=5)`.
TORCH_SMOOTH_F = 0.05
STEEPEST_SKIP = (10, 5)
#: fastai `lr_find`: `recorder.losses[num_it//10:-5]`.
FASTAI_SKIP_START_DIVISOR, FASTAI_SKIP_END = 10, 5
SLIDE_WINDOW, SLIDE_THRESHOLD = 15, 0.005
CLR_FACTOR, ONE_CYCLE_DIV, ONE_CYCLE_FINAL_DIV, ONE_CYCLE_PCT_START = 4.0, 25.0, 1e4, 0.3
#: one-cycle's max_lr is at most this multiple of the recommended (constant) LR.
ONE_CYCLE_REC_FACTOR = 10.0
#: Fewer usable points than this after the skip windows and no rule answers.
MIN_POINTS = 8
#: Diagnostics thresholds (documented in `rules`; the noise ratio is calibrated in docs/quality.md).
FLAT_RELATIVE_RANGE = 0.05
NOISY_RATIO = 0.3
NEVER_DIVERGED_RISE = 0.1
RAW_SPIKE_FACTOR, RAW_SPIKE_WINDOW = 4.0, 5
EARLY_FRACTION = 0.2
#: Diagnostics after which the arm gets no recommended_lr (each message says what to change).
NO_RECOMMENDATION = frozenset({"too_few_points", "flat", "never_fell"})

#: A curve as stored (a list with nulls) or as computed (an array with NaN).
Curve = Sequence[float | None] | np.ndarray


def rule_descriptions(planned_steps: int) -> dict[str, str]:
    """What each rule did on a sweep of `planned_steps`, with the skip windows it used (for the result)."""
    fastai_start = planned_steps // FASTAI_SKIP_START_DIVISOR
    return {
        "steepest": f"most negative np.gradient over the step index of pytorch-lr-finder's smoothed loss "
        f"(smooth_f {TORCH_SMOOTH_F}), skipping the first {STEEPEST_SKIP[0]} and last {STEEPEST_SKIP[1]} points "
        "(pytorch-lr-finder)",
        "valley": f"middle of the longest strictly decreasing run of the smoothed loss (first third + half a "
        f"third), skipping the first {fastai_start} (num_it//10) steps and last {FASTAI_SKIP_END} points (fastai default)",
        "slide": f"walking left from the end, first lr where the smoothed-loss gradient changes by less than "
        f"{SLIDE_THRESHOLD} across {SLIDE_WINDOW} points, same skips as valley (fastai)",
        "minimum": "lr at the lowest smoothed loss divided by 10, same skips as valley (fastai)",
        "lr_bounds": f"max_lr = lr at the lowest smoothed loss, base_lr = max_lr/{CLR_FACTOR:g} (Smith, CLR)",
        "one_cycle": f"max_lr = min({ONE_CYCLE_REC_FACTOR:g} x recommended_lr, lr_bounds.max_lr/{CLR_FACTOR:g}, "
        f"min_loss_lr), none below start_lr; base_lr = max_lr/{ONE_CYCLE_DIV:g}, final_lr = "
        f"base_lr/{ONE_CYCLE_FINAL_DIV:g}, pct_start {ONE_CYCLE_PCT_START} (Smith's one-cycle; max_lr chosen by "
        "bench/quality.py)",
        "recommended": "median3: the median in log10 of valley, steepest and minimum (geometric mean when two "
        "answer); with repeats, the median over the seeds; none for a flat, never-falling or too short curve",
        "rule_spread_log10": "decades between the largest and smallest of valley, steepest and minimum",
        "min_loss": "minimum of the smoothed loss (debiased EMA) and the lr where it occurred",
        "loss_deltas": "(losses[i] - losses[i-ma]) / ma on the raw losses, null for i < ma (the tutorial)",
        "diagnostics": f"on the smoothed loss over valley's window: flat: range < "
        f"{FLAT_RELATIVE_RANGE:.0%} of its max; never_fell: fell by < {FLAT_RELATIVE_RANGE:.0%} of its start; "
        f"noisy: median |second difference of the loss|/sqrt(6) before the minimum > {NOISY_RATIO} x the fall; raw_spike: completed, "
        f"yet the median of {RAW_SPIKE_WINDOW} raw losses rose above {RAW_SPIKE_FACTOR:g} x the lowest smoothed "
        f"loss so far; never_diverged: completed, no raw_spike, and the last raw losses within "
        f"{NEVER_DIVERGED_RISE:.0%} of the fall above the minimum; diverged_early: stopped before "
        f"{EARLY_FRACTION:.0%} of the steps; too_few_points: < {MIN_POINTS} points after the skips",
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
    """fastai's smoothed curve; from the first NaN/inf/None loss on it is NaN."""
    values = _array(losses)
    out = np.full(values.shape, np.nan)
    smoother = Smoother(beta)
    for i, value in enumerate(values[: _finite_length(values)]):
        out[i] = smoother.push(value)
    return out


def torch_smooth(losses: Curve, smooth_f: float = TORCH_SMOOTH_F) -> np.ndarray:
    """pytorch-lr-finder's smoothed curve: starts at the first loss, no debiasing; NaN from the first NaN on."""
    values = _array(losses)
    out = np.full(values.shape, np.nan)
    end = _finite_length(values)
    if end:
        out[0] = values[0]
        for i in range(1, end):
            out[i] = smooth_f * values[i] + (1.0 - smooth_f) * out[i - 1]
    return out


def loss_deltas(losses: Curve, window: int) -> list[float | None]:
    """The tutorial's moving-average derivative, aligned with the losses (None where undefined)."""
    values = _array(losses)
    deltas: list[float | None] = [None] * min(window, len(values))
    deltas += [finite((values[i] - values[i - window]) / window) for i in range(window, len(values))]
    return deltas


def fastai_window(lrs: np.ndarray, curve: np.ndarray, steps: np.ndarray, planned_steps: int) -> tuple[np.ndarray, np.ndarray]:
    """`[num_it//10 : -5]` with num_it the planned steps, then cut at the first NaN (fastai `lr_find`)."""
    return _window(lrs, curve, steps, planned_steps // FASTAI_SKIP_START_DIVISOR, FASTAI_SKIP_END)


def torch_window(lrs: np.ndarray, curve: np.ndarray, steps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """pytorch-lr-finder's `[skip_start:-skip_end]`, cut at the first NaN (its gradient would pick the NaN)."""
    return _window(lrs, curve, steps, *STEEPEST_SKIP)


# --------------------------------------------------------------------------- rules (on a windowed curve)


def steepest(lrs: np.ndarray, curve: np.ndarray) -> float:
    return float(lrs[int(np.argmin(np.gradient(curve)))])


def valley(lrs: np.ndarray, curve: np.ndarray) -> float:
    lds = _longest_decreasing_ending_at(curve)
    max_end = int(np.argmax(lds))  # first index of the longest run, as fastai's loop finds it
    max_start = max_end - int(lds[max_end])
    sections = (max_end - max_start) / 3
    return float(lrs[max_start + int(sections) + int(sections / 2)])


def slide(lrs: np.ndarray, curve: np.ndarray) -> float | None:
    if len(curve) < SLIDE_WINDOW + 1:
        return None
    grad = np.gradient(curve)
    right, left = -1, -1 - SLIDE_WINDOW
    found = lrs[left]
    while left >= -len(curve) and abs(grad[right] - grad[left]) > SLIDE_THRESHOLD:
        found = lrs[left]
        right -= 1
        left -= 1
    return float(found)


def minimum(lrs: np.ndarray, curve: np.ndarray) -> float:
    return float(lrs[int(np.argmin(curve))] / 10.0)


#: The rules whose log-median is the recommendation (`slide` is left out: the worst rule measured).
CONSENSUS_RULES = ("valley", "steepest", "minimum")
#: How `best_arm` chooses, stated in the result: it is not a comparison of fully trained models.
BEST_ARM_CRITERION = ("lowest smoothed loss reached during the range test, among arms with a recommended LR; "
                      "not a comparison of trained models (confirm by training both at their recommended LR "
                      "when it matters)")


def suggest(lrs: Curve, losses: Curve, *, smoothing: float, planned_steps: int,
            steps: Sequence[int] | np.ndarray | None = None) -> dict[str, float | None]:
    """Every rule on the raw losses of one curve, each on its peer's smoothing and window.

    `steps[i]` is the step point i was measured at (None: one point per step, the training loss).
    """
    x, raw = _array(lrs), _array(losses)
    at = np.arange(len(raw)) if steps is None else np.asarray(steps)
    fastai = fastai_window(x, smooth(raw, smoothing), at, planned_steps)
    return {"steepest": answer(steepest, *torch_window(x, torch_smooth(raw), at)),
            "valley": answer(valley, *fastai), "slide": answer(slide, *fastai), "minimum": answer(minimum, *fastai)}


def recommend(suggestions: dict[str, float | None]) -> tuple[float | None, str | None]:
    """`median3`: the log-median of the consensus rules that answered (see the module docstring)."""
    picks = {rule: suggestions[rule] for rule in CONSENSUS_RULES if suggestions.get(rule)}
    if not picks:
        return None, None
    if len(picks) == 1:
        return next(iter(picks.values())), next(iter(picks))
    return float(10 ** np.median(np.log10(np.asarray(list(picks.values()), dtype=float)))), "median3"


def rule_spread(suggestions: dict[str, float | None]) -> float | None:
    """Decades spanned by the consensus rules' answers (None with fewer than two)."""
    logs = [math.log10(v) for rule in CONSENSUS_RULES if (v := suggestions.get(rule))]
    return max(logs) - min(logs) if len(logs) > 1 else None


def lr_bounds(lrs: np.ndarray, curve: np.ndarray) -> dict[str, float | None]:
    """Smith's CLR pair from a curve already cut to fastai's window."""
    if len(curve) < MIN_POINTS:
        return {"base_lr": None, "max_lr": None}
    max_lr = float(lrs[int(np.argmin(curve))])
    return {"base_lr": max_lr / CLR_FACTOR, "max_lr": max_lr}


def one_cycle(bounds: dict[str, float | None], recommended_lr: float | None, *, start_lr: float | None = None,
              min_loss_lr: float | None = None) -> dict[str, float | None] | None:
    """Smith's one-cycle, its max_lr never above the loss minimum's LR; None below `start_lr` (unseen)."""
    max_lr = bounds.get("max_lr")
    candidates = [lr for lr in (None if recommended_lr is None else ONE_CYCLE_REC_FACTOR * recommended_lr,
                                None if max_lr is None else max_lr / CLR_FACTOR,
                                min_loss_lr)
                  if lr is not None]
    if not candidates or (start_lr is not None and min(candidates) < start_lr):
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
    curve at the steps where it was measured; `smoothed_losses`, `loss_deltas` and the diagnostics stay
    on the train loss.
    """
    lr_arr, loss_arr = _array(lrs), _array(losses)
    smoothed = smooth(loss_arr, smoothing)
    basis_lrs, basis_losses, steps = lr_arr, loss_arr, np.arange(len(loss_arr))
    if val_losses is not None:
        val = _array(val_losses)
        steps = np.flatnonzero(~np.isnan(val))  # None (not measured) became NaN
        basis_lrs, basis_losses = lr_arr[steps], val[steps]
    suggestions = suggest(basis_lrs, basis_losses, smoothing=smoothing, planned_steps=planned_steps, steps=steps)
    flags = diagnostics(lr_arr, loss_arr, smoothing=smoothing, stop_reason=stop_reason, planned_steps=planned_steps)
    recommended, rule = recommend(suggestions)
    if any(flag["code"] in NO_RECOMMENDATION for flag in flags):
        recommended, rule = None, None
    basis = smooth(basis_losses, smoothing)
    x, y = basis_lrs[: _finite_length(basis)], basis[: _finite_length(basis)]
    best = int(np.argmin(y)) if len(y) else None
    return {
        "smoothed_losses": _list(smoothed),
        "loss_deltas": loss_deltas(loss_arr, moving_average),
        "suggestions": suggestions,
        "rules": rule_descriptions(planned_steps),
        "lr_bounds": lr_bounds(*fastai_window(basis_lrs, basis, steps, planned_steps)),
        "recommended_lr": recommended,
        "recommended_rule": rule,
        "rule_spread_log10": rule_spread(suggestions),
        "min_loss": None if best is None else finite(y[best]),
        "min_loss_lr": None if best is None else float(x[best]),
        "diagnostics": flags,
    }


def diagnostics(lrs: np.ndarray, losses: np.ndarray, *, smoothing: float, stop_reason: str,
                planned_steps: int) -> list[dict[str, Any]]:
    """Machine-readable flags about the training curve; each says what to change.

    flat, never_fell and the fall read the smoothed curve the rules read; noise and raw_spike read the
    raw losses, where neither the EMA's lag nor its width can hide them.
    """
    flags: list[dict[str, Any]] = []
    bad = np.flatnonzero(~np.isfinite(losses))
    if len(bad):
        step = int(bad[0])
        flags.append({"code": "nan_at_step", "step": step,
                      "message": f"the loss became NaN/inf at step {step}; the curve ends there"})
    steps = np.arange(len(losses))
    curve = smooth(losses, smoothing)
    _, y = fastai_window(lrs, curve, steps, planned_steps)
    if len(y) < MIN_POINTS:
        flags.append({"code": "too_few_points", "message": f"only {_finite_length(curve)} points were recorded, "
                      f"{len(y)} after skipping the first {100 // FASTAI_SKIP_START_DIVISOR}% of the steps and the last "
                      f"{FASTAI_SKIP_END}; no recommendation: use more steps or a smaller start_lr"})
        return flags
    stopped_at = len(losses)
    if stop_reason in ("diverged", "nan") and stopped_at < EARLY_FRACTION * planned_steps:
        flags.append({"code": "diverged_early", "step": stopped_at - 1,
                      "message": f"the loss diverged after {stopped_at} of {planned_steps} steps; lower start_lr"})
    low, high, first = float(y.min()), float(y.max()), float(y[0])
    fall = first - low
    if high - low < FLAT_RELATIVE_RANGE * abs(high):
        flags.append({"code": "flat", "message": f"the smoothed loss moved by {(high - low) / abs(high):.1%} of its "
                      "level over the range; no recommendation: widen the LR range (raise end_lr, lower start_lr) "
                      "or check the model and data"})
        return flags
    if fall < FLAT_RELATIVE_RANGE * abs(first):
        flags.append({"code": "never_fell", "message": "the smoothed loss never fell below its level at the start of "
                      "the range; no recommendation: lower start_lr (training breaks down already there), or "
                      "raise batch_size if the curve is noisy"})
    noise = step_noise(lrs, losses, curve, planned_steps)
    if noise > NOISY_RATIO * max(fall, FLAT_RELATIVE_RANGE * abs(first)):  # never_fell: against the least fall counted
        flags.append({"code": "noisy", "message": f"step-to-step noise ({noise:.3g}) is {noise / fall:.0%} of the fall "
                      f"of the loss ({fall:.3g}); raise batch_size or repeats" if fall > 0 else
                      f"step-to-step noise ({noise:.3g}) hides any fall of the loss; raise batch_size or repeats"})
    if stop_reason == "completed":
        spike = raw_spike(losses, curve)
        if spike is not None:
            flags.append({"code": "raw_spike", "step": spike, "lr": float(lrs[spike]),
                          "message": f"the raw loss blew up past {RAW_SPIKE_FACTOR:g}x its lowest smoothed value at "
                          f"step {spike} (lr {lrs[spike]:.3g}), which the smoothed curve hides; the useful range "
                          "ends below that lr"})
        elif fall > 0 and np.median(losses[-RAW_SPIKE_WINDOW:]) - low <= NEVER_DIVERGED_RISE * fall:
            flags.append({"code": "never_diverged", "message": "the loss did not rise after its minimum; raise end_lr "
                          "to see where training breaks down"})
    return flags


def step_noise(lrs: np.ndarray, losses: np.ndarray, curve: np.ndarray, planned_steps: int) -> float:
    """Batch-to-batch noise of the raw loss before the curve's minimum: median |second difference| / sqrt 6.

    Second differences of neighbours cancel any locally straight trend (one step moves the LR by a
    hair), so this is the noise alone, on the scale of median |loss - trend| for Gaussian noise;
    before the minimum, because a blow-up after it is signal.
    """
    steps = np.arange(len(losses))
    _, y = fastai_window(lrs, curve, steps, planned_steps)
    _, raw = fastai_window(lrs, losses, steps, planned_steps)
    upto = max(int(np.argmin(y)) + 1, MIN_POINTS)
    return float(np.median(np.abs(np.diff(raw[:upto], n=2))) / math.sqrt(6.0))


def raw_spike(losses: np.ndarray, curve: np.ndarray) -> int | None:
    """First step where the median of the last few raw losses exceeds the spike factor x the lowest
    smoothed loss so far (a median, so one bad batch is not a blow-up); None if never."""
    end = _finite_length(losses)
    if end < RAW_SPIKE_WINDOW:
        return None
    windows = np.lib.stride_tricks.sliding_window_view(losses[:end], RAW_SPIKE_WINDOW)
    medians = np.median(windows, axis=1)
    best = np.minimum.accumulate(curve[:end])[RAW_SPIKE_WINDOW - 1 :]
    above = np.flatnonzero(medians > RAW_SPIKE_FACTOR * best)
    return int(above[0]) + RAW_SPIKE_WINDOW - 1 if len(above) else None


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
    """Among arms with a recommended LR, the one whose (smoothed) minimum loss is lowest: the tutorial's
    "which optimizer does best". None when no arm has a recommendation."""
    scored = [(arm["min_loss"], i) for i, arm in enumerate(arms)
              if arm.get("min_loss") is not None and arm.get("recommended_lr") is not None]
    return arms[min(scored)[1]]["label"] if scored else None


def recommendation(arms: list[dict[str, Any]], best: str | None, *,
                   learning_rate: float | None = None) -> dict[str, Any] | None:
    """The best arm's LR (its `recommended_lr`, or `learning_rate` when a measurement chose another)
    and the one-cycle schedule around it; None when no arm has one (`recommendation_reason` says why)."""
    arm = next((a for a in arms if a["label"] == best), None)
    if arm is None:
        return None
    lrs = arm.get("lrs") or []
    lr = arm.get("recommended_lr") if learning_rate is None else learning_rate
    return {"optimizer": arm["label"], "optimizer_criterion": BEST_ARM_CRITERION,
            "learning_rate": lr, "rule": arm.get("recommended_rule"),
            "verified": False, "criterion": f"range-test rule {arm.get('recommended_rule')}; sweep.confirm trains "
            "candidates to check it",
            "one_cycle": one_cycle(arm.get("lr_bounds") or {}, lr, start_lr=lrs[0] if lrs else None,
                                   min_loss_lr=arm.get("min_loss_lr"))}


def recommendation_reason(arms: list[dict[str, Any]]) -> str | None:
    """Why there is no recommendation: each arm's diagnostic that withheld it (None when there is one)."""
    if any(arm.get("recommended_lr") is not None for arm in arms):
        return None
    reasons = []
    for arm in arms:
        flags = [f["message"] for f in arm.get("diagnostics") or [] if f.get("code") in NO_RECOMMENDATION]
        reasons.append(f"{arm['label']}: {flags[0] if flags else 'no rule answered on the curve recorded so far'}")
    return "; ".join(reasons) if reasons else "the job has no arms"


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
        return finite(float(value))
    if isinstance(value, np.integer):
        return int(value)
    return value


def _list(values: np.ndarray) -> list[float | None]:
    return [finite(v) for v in values.tolist()]


def _array(values: Curve) -> np.ndarray:
    return np.array([np.nan if v is None else v for v in values], dtype=np.float64)


def _finite_length(values: np.ndarray) -> int:
    """Points before the first NaN/inf: everything after one never counts."""
    bad = np.flatnonzero(~np.isfinite(values))
    return int(bad[0]) if len(bad) else len(values)


def _window(lrs: np.ndarray, curve: np.ndarray, steps: np.ndarray, skip_steps: int, skip_end: int) -> tuple[np.ndarray, np.ndarray]:
    """Points measured at step >= skip_steps, less the last skip_end recorded ones, cut at the first NaN."""
    start = int(np.searchsorted(steps, skip_steps))
    x, y = lrs[start : max(start, len(curve) - skip_end)], curve[start : max(start, len(curve) - skip_end)]
    end = _finite_length(y)
    return x[:end], y[:end]


def answer(rule: Callable[[np.ndarray, np.ndarray], float | None], lrs: np.ndarray, curve: np.ndarray) -> float | None:
    """The rule's LR on a windowed curve, or None when the window holds too few points to mean anything."""
    return rule(lrs, curve) if len(curve) >= MIN_POINTS else None


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
