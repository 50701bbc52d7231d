"""Each rule gives its peer's answer on the same curve, and each diagnostic fires on a curve made to
trigger it and stays silent on a clean one.

The peers' algorithms are re-implemented here from their published descriptions and source (fastai
`Learner.lr_find` and `fastai.callback.schedule.valley/slide/minimum`; pytorch-lr-finder
`LRFinder.range_test` smoothing and `LRFinder.plot(suggest_lr=True)`), in their own plain loops, so a
shortcut in the engine (the O(n log n) valley, the shared windows) is checked against the original.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from lrrt import suggestions as s

LRS = np.logspace(-5, 1, 100)
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def valley_curve() -> np.ndarray:
    """Flat for 20 points, strictly falling for 60, rising for 20: minimum at index 79."""
    return np.concatenate([np.full(20, 3.0), np.linspace(2.9, 0.5, 60), np.linspace(0.6, 4.0, 20)])


def stored_curve(name: str) -> tuple[np.ndarray, np.ndarray]:
    """A real 200-step digits sweep (64-64-10 MLP, Adam, 1e-5..10) recorded by the engine."""
    arm = json.loads((FIXTURES / f"{name}.json").read_text())
    return np.array(arm["lrs"]), np.array([math.nan if v is None else v for v in arm["losses"]])


# --------------------------------------------------------------------------- the peers, re-implemented


def fastai_smooth_losses(raw: np.ndarray, beta: float) -> list[float]:
    """fastai's Recorder.smooth_loss (AvgSmoothLoss): a debiased running average, one batch at a time."""
    val, out = 0.0, []
    for count, loss in enumerate(raw, start=1):
        val = val * beta + loss * (1 - beta)  # torch.lerp(loss, val, beta)
        out.append(val / (1 - beta**count))
    return out


def fastai_lr_find(lrs: np.ndarray, raw: np.ndarray, num_it: int, beta: float = 0.98) -> dict[str, float]:
    """`Learner.lr_find`: recorder.lrs/losses[num_it//10:-5], cut at the first NaN, then each function."""
    window_lrs = list(lrs[num_it // 10 : -5])
    window = fastai_smooth_losses(raw, beta)[num_it // 10 : -5]
    nan = [i for i, v in enumerate(window) if math.isnan(v)]
    if nan:
        window_lrs, window = window_lrs[: nan[0]], window[: nan[0]]
    return {"valley": fastai_valley(window_lrs, window), "slide": fastai_slide(window_lrs, window),
            "minimum": window_lrs[int(np.argmin(window))] / 10}


def fastai_valley(lrs: list[float], losses: list[float]) -> float:
    """The longest valley by fastai's O(n^2) longest-decreasing-subsequence loop, 2/3 of the way down."""
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


def fastai_slide(lrs: list[float], losses: list[float], lr_diff: int = 15, thresh: float = 0.005) -> float:
    """The interval slide rule: walk left until the gradient across lr_diff points settles."""
    loss_grad = np.gradient(np.array(losses))
    r_idx = -1
    l_idx = r_idx - lr_diff
    local_min_lr = lrs[l_idx]
    while (l_idx >= -len(losses)) and (abs(loss_grad[r_idx] - loss_grad[l_idx]) > thresh):
        local_min_lr = lrs[l_idx]
        r_idx -= 1
        l_idx -= 1
    return float(local_min_lr)


def torch_lr_finder_steepest(lrs: np.ndarray, raw: np.ndarray, smooth_f: float = 0.05) -> float:
    """pytorch-lr-finder: range_test's history["loss"] (smoothed in the loop), then plot()'s suggestion."""
    history: list[float] = []
    for iteration, loss in enumerate(raw):
        if iteration > 0 and smooth_f > 0:
            loss = smooth_f * loss + (1 - smooth_f) * history[-1]
        history.append(float(loss))
    losses = history[10:-5]
    return float(list(lrs[10:-5])[int((np.gradient(np.array(losses))).argmin())])


def engine(lrs: np.ndarray, raw: np.ndarray, planned: int, beta: float = 0.98) -> dict[str, float | None]:
    return s.suggest(lrs, raw, smoothing=beta, planned_steps=planned)


# --------------------------------------------------------------------------- peer-named rules


@pytest.mark.parametrize("seed", range(4))
def test_every_peer_rule_matches_the_peer_on_noisy_synthetic_curves(seed: int) -> None:
    raw = valley_curve() + np.random.default_rng(seed).normal(scale=0.3, size=100)
    ours = engine(LRS, raw, planned=100, beta=0.9)
    assert {k: ours[k] for k in ("valley", "slide", "minimum")} == pytest.approx(fastai_lr_find(LRS, raw, 100, beta=0.9))
    assert ours["steepest"] == torch_lr_finder_steepest(LRS, raw)


@pytest.mark.parametrize("name", ["digits_adam_bs64", "digits_adam_bs1"])
def test_every_peer_rule_matches_the_peer_on_stored_sweeps(name: str) -> None:
    lrs, raw = stored_curve(name)
    ours = engine(lrs, raw, planned=200)
    assert {k: ours[k] for k in ("valley", "slide", "minimum")} == pytest.approx(fastai_lr_find(lrs, raw, 200))
    assert ours["steepest"] == torch_lr_finder_steepest(lrs, raw)


def test_fastai_skips_a_tenth_of_the_planned_steps_not_of_the_recorded_ones() -> None:
    # A sweep planned for 400 steps that stopped (diverged) after 100: fastai skips 40, not 10.
    # The falling run starts before step 40 so the skip moves valley's answer.
    raw = np.concatenate([np.linspace(3.0, 1.0, 70), np.linspace(1.1, 6.0, 30)])
    raw = raw + np.random.default_rng(1).normal(scale=0.02, size=100)
    ours, peer = engine(LRS, raw, planned=400), fastai_lr_find(LRS, raw, 400)
    assert ours["valley"] == pytest.approx(peer["valley"]) and ours["minimum"] == pytest.approx(peer["minimum"])
    assert engine(LRS, raw, planned=100)["valley"] != pytest.approx(peer["valley"])  # the recorded length differs


def test_fastai_cuts_its_window_at_the_first_nan() -> None:
    raw = valley_curve()
    raw[60] = math.nan
    ours, peer = engine(LRS, raw, planned=100, beta=0.9), fastai_lr_find(LRS, raw, 100, beta=0.9)
    assert {k: ours[k] for k in peer} == pytest.approx(peer)
    garbage_after = raw.copy()
    garbage_after[61:] = 100.0
    assert ours == engine(LRS, garbage_after, planned=100, beta=0.9)  # nothing after a NaN counts


def test_steepest_smooths_the_raw_losses_as_pytorch_lr_finder_does() -> None:
    # pytorch-lr-finder's EMA starts at the first loss and is not debiased; the steepest fall of that
    # curve trails the raw curve's by its lag. The engine's fastai EMA would give another answer.
    raw = 2.0 - np.tanh((np.log10(LRS) + 2.0) * 1.5)
    raw[90:] = 5.0  # a cliff inside the skip_end window does not count
    ours = engine(LRS, raw, planned=100)["steepest"]
    assert ours == torch_lr_finder_steepest(LRS, raw)
    assert ours > LRS[np.argmin(np.abs(np.log10(LRS) + 2.0))]  # after the raw curve's steepest point


def test_too_few_points_after_the_skips_gives_no_answers() -> None:
    assert engine(LRS[:20], valley_curve()[:20], planned=200) == {
        "steepest": None, "valley": None, "slide": None, "minimum": None}


# --------------------------------------------------------------------------- smoothing


def test_fastai_smoothing_is_the_debiased_ema() -> None:
    assert s.smooth([2.0, 2.0, 2.0], 0.98).tolist() == pytest.approx([2.0, 2.0, 2.0])  # debiased: no ramp from zero
    assert s.smooth([1.0, 3.0], 0.5).tolist() == pytest.approx([1.0, (0.25 * 1 + 0.5 * 3) / 0.75])


def test_loss_deltas_are_the_tutorials_moving_average_derivative() -> None:
    losses = [5.0, 4.0, 2.0, 1.0, 1.0]
    assert s.loss_deltas(losses, 2) == [None, None, (2.0 - 5.0) / 2, (1.0 - 4.0) / 2, (1.0 - 2.0) / 2]


# --------------------------------------------------------------------------- diagnostics


def codes(losses, stop_reason: str = "completed", planned: int | None = None, lrs: np.ndarray | None = None) -> set[str]:
    losses = np.asarray(losses, dtype=float)
    lrs = np.logspace(-5, 1, len(losses)) if lrs is None else lrs
    return {f["code"] for f in s.diagnostics(lrs, losses, smoothing=0.9, stop_reason=stop_reason,
                                             planned_steps=planned or len(losses))}


def test_a_clean_curve_raises_no_flag() -> None:
    assert codes(valley_curve(), "diverged") == set()  # a clean sweep ends at the engine's divergence stop
    assert codes(np.linspace(3.0, 0.5, 100)) == {"never_diverged"}


def test_flat_and_never_fell_withhold_the_recommendation() -> None:
    flat = np.full(100, 2.0) + np.linspace(0, 0.01, 100)
    rising = np.linspace(2.0, 6.0, 100)
    assert codes(flat) == {"flat"} and codes(rising) == {"never_fell"}
    for curve in (flat, rising):
        arm = s.analyze_arm(LRS, curve, smoothing=0.9, moving_average=5, stop_reason="completed", planned_steps=100)
        assert arm["recommended_lr"] is None and arm["recommended_rule"] is None
        assert "no recommendation" in arm["diagnostics"][0]["message"]
    assert s.analyze_arm(LRS, valley_curve(), smoothing=0.9, moving_average=5, stop_reason="completed",
                         planned_steps=100)["recommended_lr"] is not None


def test_never_diverged_only_when_the_loss_did_not_rise_after_its_minimum() -> None:
    assert "never_diverged" in codes(np.linspace(3.0, 0.5, 100))
    # The case: minimum at step 93 of 100, then the smoothed loss rose 1.6 -> 5.4 (raw to 71.9).
    late_rise = np.concatenate([np.linspace(2.3, 1.4, 93), [3.0, 6.0, 12.0, 20.0, 35.0, 50.0, 71.9]])
    assert "never_diverged" not in codes(late_rise)
    assert "never_diverged" not in codes(valley_curve())


def test_raw_spike_catches_a_blow_up_the_ema_hides() -> None:
    blow_up = np.concatenate([np.linspace(2.3, 0.5, 190), np.full(10, 30.0)])
    ema = s.smooth(blow_up, 0.98)
    assert ema[-1] < 4 * ema.min() * 2.5  # the smoothed curve has not even reached 10x its best
    flags = {f["code"]: f for f in s.diagnostics(np.logspace(-5, 1, 200), blow_up, smoothing=0.98,
                                                 stop_reason="completed", planned_steps=200)}
    assert flags["raw_spike"]["step"] == 192  # three of the five raw losses in the median are blown up
    assert "never_diverged" not in flags
    one_bad_batch = np.linspace(2.3, 0.5, 200)
    one_bad_batch[150] = 30.0
    assert "raw_spike" not in codes(one_bad_batch)


def test_noisy_fires_on_a_batch_size_1_sweep_and_not_on_a_batch_size_64_one() -> None:
    for name, noisy in (("digits_adam_bs1", True), ("digits_adam_bs64", False)):
        lrs, raw = stored_curve(name)
        flags = {f["code"] for f in s.diagnostics(lrs, raw, smoothing=0.98, stop_reason="completed", planned_steps=200)}
        assert ("noisy" in flags) is noisy, name


def test_diverged_early_too_few_points_and_nan() -> None:
    assert "diverged_early" in codes(valley_curve()[:60], "diverged", planned=400)
    assert "too_few_points" in codes([1.0, 2.0, 3.0])
    losses = np.array([2.0 - 0.01 * i for i in range(30)] + [math.inf])
    nan = s.diagnostics(np.logspace(-5, 1, 31), losses, smoothing=0.9, stop_reason="nan", planned_steps=31)
    assert {"code": "nan_at_step", "step": 30} == {k: v for k, v in nan[0].items() if k != "message"}


# --------------------------------------------------------------------------- recommendation


def test_recommendation_is_the_median_of_three() -> None:
    assert s.recommend({"valley": 1e-3, "steepest": 1e-1, "minimum": 1e-2, "slide": 5.0}) == (1e-2, "median3")
    lr, rule = s.recommend({"valley": None, "steepest": 0.1, "minimum": 0.001})  # two answer: geometric mean
    assert rule == "median3" and lr == pytest.approx(0.01)
    assert s.recommend({"valley": 0.2, "steepest": None, "slide": 0.1}) == (0.2, "valley")  # slide never counts
    assert s.recommend({"slide": 0.1}) == (None, None)
    assert s.rule_spread({"valley": 1e-3, "steepest": 1e-1, "minimum": 1e-2}) == pytest.approx(2.0)
    assert s.rule_spread({"valley": 1e-3}) is None


def test_bounds_and_one_cycle_stay_between_start_lr_and_the_loss_minimum() -> None:
    curve = valley_curve()
    bounds = s.lr_bounds(*s.fastai_window(LRS, curve, np.arange(100), 100))
    assert bounds == {"max_lr": LRS[79], "base_lr": LRS[79] / 4}
    cycle = s.one_cycle(bounds, recommended_lr=LRS[79] / 100)  # 10 x recommended is below max_lr / 4
    assert cycle["max_lr"] == pytest.approx(LRS[79] / 10) and cycle["base_lr"] == pytest.approx(LRS[79] / 250)
    assert s.one_cycle(bounds, recommended_lr=LRS[79])["max_lr"] == pytest.approx(LRS[79] / 4)  # capped by bounds
    assert s.one_cycle(bounds, LRS[79], min_loss_lr=LRS[79] / 8)["max_lr"] == pytest.approx(LRS[79] / 8)
    assert s.one_cycle(bounds, LRS[79], start_lr=LRS[79] / 2) is None  # the range never showed max_lr
    assert s.one_cycle({"max_lr": None, "base_lr": None}, recommended_lr=None) is None


def arm(label: str, min_loss: float | None, lr: float | None, flags: list[dict] | None = None) -> dict:
    return {"label": label, "min_loss": min_loss, "recommended_lr": lr, "recommended_rule": "median3" if lr else None,
            "lrs": [1e-5, 1.0], "lr_bounds": {"max_lr": 0.4, "base_lr": 0.1}, "min_loss_lr": 0.4,
            "diagnostics": flags or []}


def test_best_arm_and_recommendation_skip_arms_without_a_recommendation() -> None:
    flat = {"code": "flat", "message": "no recommendation: widen the LR range"}
    arms = [arm("a", 0.5, 1e-3), arm("b", 0.2, None, [flat]), arm("c", None, None)]
    assert s.best_arm(arms) == "a"  # b's loss is lower, but b has no recommended LR
    reco = s.recommendation(arms, "a")
    assert reco["learning_rate"] == 1e-3 and reco["one_cycle"]["max_lr"] == pytest.approx(1e-2)
    assert s.recommendation_reason(arms) is None
    nothing = [arm("b", 0.2, None, [flat]), arm("c", None, None)]
    assert s.best_arm(nothing) is None and s.recommendation(nothing, None) is None
    assert s.recommendation_reason(nothing) == ("b: no recommendation: widen the LR range; "
                                                "c: no rule answered on the curve recorded so far")


def test_analyze_arm_uses_the_validation_curve_where_measured() -> None:
    curve = valley_curve()
    val: list[float | None] = [None] * 100
    for i in range(1, 100, 2):
        val[i] = float(curve[i])
    analysis = s.analyze_arm(LRS, valley_curve(), smoothing=0.0, moving_average=5, stop_reason="completed",
                             planned_steps=100, val_losses=val)
    assert analysis["min_loss_lr"] == LRS[79] and analysis["min_loss"] == pytest.approx(curve[79])
    assert analysis["recommended_rule"] == "median3" and "skipping the first 10 (num_it//10) steps" in analysis["rules"]["valley"]
    odd = np.arange(1, 100, 2)
    assert analysis["suggestions"] == s.suggest(LRS[odd], curve[odd], smoothing=0.0, planned_steps=100, steps=odd)
    picks = [analysis["suggestions"][rule] for rule in ("valley", "steepest", "minimum")]
    assert analysis["recommended_lr"] == pytest.approx(sorted(picks)[1])


def test_spread_and_json_safety() -> None:
    spread = s.repeat_spread([{"suggestions": {"valley": v}, "recommended_lr": v} for v in (1e-3, 1e-2, 1e-1, 1.0, 10.0)],
                             [0, 1, 2, 3, 4])
    assert spread["median"]["valley"] == pytest.approx(0.1) and spread["iqr_log10"]["valley"] == pytest.approx(2.0)
    assert s.json_safe({"x": [np.float32(1.5), math.nan, np.inf], "n": np.int64(3)}) == {"x": [1.5, None, None], "n": 3}
