"""Each rule returns the known answer on synthetic curves (hand-computed, or fastai's own reference code)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from worker.core import suggestions as s

LRS = np.logspace(-5, 1, 100)


def valley_curve() -> np.ndarray:
    """Flat for 20 points, strictly falling for 60, rising for 20: minimum at index 79."""
    return np.concatenate([np.full(20, 3.0), np.linspace(2.9, 0.5, 60), np.linspace(0.6, 4.0, 20)])


def fastai_valley(lrs: np.ndarray, losses: np.ndarray) -> float:
    """fastai.callback.schedule.valley, verbatim but for tensors (its O(n^2) loop)."""
    n = len(losses)
    max_start, max_end = 0, 0
    lds = [1] * n
    for i in range(1, n):
        for j in range(0, i):
            if (losses[i] < losses[j]) and (lds[i] < lds[j] + 1):
                lds[i] = lds[j] + 1
            if lds[max_end] < lds[i]:
                max_end = i
                max_start = max_end - lds[max_end]
    sections = (max_end - max_start) / 3
    return float(lrs[max_start + int(sections) + int(sections / 2)])


def fastai_slide(lrs: np.ndarray, losses: np.ndarray, lr_diff: int = 15, thresh: float = 0.005) -> float:
    """fastai.callback.schedule.slide, verbatim but for tensors."""
    loss_grad = np.gradient(losses)
    r_idx = -1
    l_idx = r_idx - lr_diff
    local_min_lr = lrs[l_idx]
    while (l_idx >= -len(losses)) and (abs(loss_grad[r_idx] - loss_grad[l_idx]) > thresh):
        local_min_lr = lrs[l_idx]
        r_idx -= 1
        l_idx -= 1
    return float(local_min_lr)


def test_valley_hand_computed() -> None:
    # Window [10:95]: ten flat points, the 60 falling ones (run of 61 ending at window index 69), rising.
    # max_start = 69 - 61 = 8; sections = 61/3; index 8 + 20 + 10 = 38 -> original index 48.
    assert s.valley(LRS, valley_curve()) == LRS[48]


@pytest.mark.parametrize("seed", range(5))
def test_valley_and_slide_match_fastai_on_noisy_curves(seed: int) -> None:
    rng = np.random.default_rng(seed)
    curve = s.smooth(valley_curve() + rng.normal(scale=0.3, size=100), 0.9)
    window = slice(10, 95)
    assert s.valley(LRS, curve) == fastai_valley(LRS[window], curve[window])
    assert s.slide(LRS, curve) == fastai_slide(LRS[window], curve[window])


def test_steepest_is_the_most_negative_slope_against_log_lr() -> None:
    curve = 2.0 - np.tanh((np.log10(LRS) + 2.0) * 1.5)  # falls fastest at log10(lr) = -2 ...
    curve[90:] = 5.0  # ... and a cliff after the skip_end window must not count
    assert s.steepest(LRS, curve) == pytest.approx(LRS[np.argmin(np.abs(np.log10(LRS) + 2.0))])


def test_minimum_bounds_and_one_cycle() -> None:
    curve = valley_curve()
    assert s.minimum(LRS, curve) == pytest.approx(LRS[79] / 10)
    bounds = s.lr_bounds(LRS, curve)
    assert bounds == {"max_lr": LRS[79], "base_lr": LRS[79] / 4}
    cycle = s.one_cycle(bounds, recommended_lr=LRS[79] / 100)  # 10 x recommended is below max_lr / 4
    assert cycle["max_lr"] == pytest.approx(LRS[79] / 10) and cycle["base_lr"] == pytest.approx(LRS[79] / 250)
    assert s.one_cycle(bounds, recommended_lr=LRS[79])["max_lr"] == pytest.approx(LRS[79] / 4)  # capped by bounds
    assert s.one_cycle(bounds, recommended_lr=None)["max_lr"] == pytest.approx(LRS[79] / 4)
    assert s.one_cycle({"max_lr": None, "base_lr": None}, recommended_lr=None) is None


def test_rules_ignore_everything_after_a_nan() -> None:
    curve = valley_curve()
    poisoned = list(curve[:60]) + [math.nan] + list(curve[61:])
    assert s.suggest(LRS, poisoned) == s.suggest(LRS[:60], curve[:60])


def test_recommendation_order_and_too_few_points() -> None:
    assert s.recommend({"valley": 1e-3, "steepest": 1e-1, "minimum": 1e-2, "slide": 5.0}) == (1e-2, "median3")
    lr, rule = s.recommend({"valley": None, "steepest": 0.1, "minimum": 0.001})  # two answer: geometric mean
    assert rule == "median3" and lr == pytest.approx(0.01)
    assert s.recommend({"valley": 0.2, "steepest": None, "slide": 0.1}) == (0.2, "valley")  # slide never counts
    assert s.recommend({"slide": 0.1}) == (None, None)
    assert s.rule_spread({"valley": 1e-3, "steepest": 1e-1, "minimum": 1e-2}) == pytest.approx(2.0)
    assert s.rule_spread({"valley": 1e-3}) is None
    assert s.suggest(LRS[:10], valley_curve()[:10]) == {"steepest": None, "valley": None, "slide": None, "minimum": None}


def test_smoothing_is_fastais_debiased_ema() -> None:
    assert s.smooth([2.0, 2.0, 2.0], 0.98).tolist() == pytest.approx([2.0, 2.0, 2.0])  # debiased: no ramp from zero
    assert s.smooth([1.0, 3.0], 0.5).tolist() == pytest.approx([1.0, (0.25 * 1 + 0.5 * 3) / 0.75])


def test_loss_deltas_are_the_tutorials_moving_average_derivative() -> None:
    losses = [5.0, 4.0, 2.0, 1.0, 1.0]
    assert s.loss_deltas(losses, 2) == [None, None, (2.0 - 5.0) / 2, (1.0 - 4.0) / 2, (1.0 - 2.0) / 2]


def diagnose(losses, stop_reason: str = "completed", planned: int | None = None) -> set[str]:
    losses = np.asarray(losses, dtype=float)
    return {f["code"] for f in s.diagnostics(losses, s.smooth(losses, 0.9), stop_reason=stop_reason,
                                            planned_steps=planned or len(losses))}


def test_diagnostics() -> None:
    assert diagnose(np.full(100, 2.0) + np.linspace(0, 0.01, 100)) == {"flat"}
    assert "never_diverged" in diagnose(np.linspace(3.0, 0.5, 100))
    assert diagnose(valley_curve()) == set()
    assert "diverged_early" in diagnose(valley_curve()[:60], "diverged", planned=400)
    assert "too_few_points" in diagnose([1.0, 2.0, 3.0])
    rng = np.random.default_rng(0)
    assert "noisy" in diagnose(np.linspace(2.0, 1.8, 100) + rng.normal(scale=1.0, size=100).clip(-1.5, 1.5))
    nan = s.diagnostics(np.array([1.0] * 30 + [math.inf]), s.smooth([1.0] * 30 + [math.inf], 0.9),
                        stop_reason="nan", planned_steps=31)
    assert {"code": "nan_at_step", "step": 30} == {k: v for k, v in nan[0].items() if k != "message"}


def test_analyze_arm_uses_the_validation_curve_where_measured() -> None:
    curve = valley_curve()
    val = [None] * 100
    for i in range(1, 100, 2):
        val[i] = float(curve[i])
    analysis = s.analyze_arm(LRS, np.full(100, 2.0), smoothing=0.0, moving_average=5, stop_reason="completed",
                             planned_steps=100, val_losses=val)
    assert analysis["min_loss_lr"] == LRS[79] and analysis["min_loss"] == pytest.approx(curve[79])
    assert analysis["recommended_rule"] == "median3" and "skipping" in analysis["rules"]["valley"]
    picks = [analysis["suggestions"][rule] for rule in ("valley", "steepest", "minimum")]
    assert analysis["recommended_lr"] == pytest.approx(sorted(picks)[1])


def test_best_arm_spread_and_json_safety() -> None:
    arms = [{"label": "a", "min_loss": 0.5}, {"label": "b", "min_loss": 0.2}, {"label": "c", "min_loss": None}]
    assert s.best_arm(arms) == "b"
    spread = s.repeat_spread([{"suggestions": {"valley": v}, "recommended_lr": v} for v in (1e-3, 1e-2, 1e-1, 1.0, 10.0)],
                             [0, 1, 2, 3, 4])
    assert spread["median"]["valley"] == pytest.approx(0.1) and spread["iqr_log10"]["valley"] == pytest.approx(2.0)
    assert s.json_safe({"x": [np.float32(1.5), math.nan, np.inf], "n": np.int64(3)}) == {"x": [1.5, None, None], "n": 3}
