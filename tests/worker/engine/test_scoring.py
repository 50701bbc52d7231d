"""Held-out scoring (`worker.engine.scoring`) goes through the loss path training uses, for every loss the
spec accepts and every target layout the range test accepts for it, on TensorFlow and on JAX: the score
equals the hand-computed loss on targets aligned to their outputs, and a job whose targets need aligning
(the binary classifier with labels of shape (n,)) confirms and validates instead of failing."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from tests.worker.engine.scoring_cases import CASES, run_binary_classifier_job, score
from tests.worker.jax_process import run_on_jax


@pytest.mark.parametrize("case", sorted(CASES))
def test_the_held_out_score_is_the_training_loss_on_tensorflow(case: str) -> None:
    ours, by_hand = score(case)
    assert np.isfinite(ours) and ours == pytest.approx(by_hand, rel=1e-4, abs=1e-6)


@pytest.fixture(scope="module")
def jax_scores() -> dict[str, Any]:
    """Every case scored in one JAX worker-like process (one start-up for the whole matrix)."""
    return run_on_jax("""
        from tests.worker.engine.scoring_cases import score_all
        report(score_all())
    """)


@pytest.mark.slow  # one JAX process compiles a train step per case: ~2 min on 2 idle cores, 9 under load
@pytest.mark.parametrize("case", sorted(CASES))
def test_the_held_out_score_is_the_training_loss_on_jax(jax_scores: dict[str, Any], case: str) -> None:
    scored = jax_scores[case]
    assert isinstance(scored, list), scored  # else the error the case raised
    ours, by_hand = scored
    assert np.isfinite(ours) and ours == pytest.approx(by_hand, rel=1e-4, abs=1e-6)


CONFIRM = {"confirm": {"candidates": 2, "steps": 10}}
VALIDATION = {"evaluate_on": "validation"}


def _check_confirmed(arm: dict[str, Any]) -> None:
    assert [c["stop_reason"] for c in arm["confirm"]] == ["completed"] * 2, arm["confirm"]
    assert all(np.isfinite(c["val_loss"]) and 0 < c["val_loss"] < 5 for c in arm["confirm"]), arm["confirm"]


def _check_validated(arm: dict[str, Any]) -> None:
    values = [v for v in arm["val_losses"] if v is not None]
    # the first point is near the untrained classifier's log(2); later ones rise as the LR sweeps up to 10
    assert len(values) >= 2 and all(np.isfinite(values)) and 0.3 < values[0] < 2, arm["val_losses"]


@pytest.mark.parametrize(("sweep", "check"), [(CONFIRM, _check_confirmed), (VALIDATION, _check_validated)],
                         ids=["confirm", "validation"])
def test_a_binary_classifier_with_1d_labels_is_scored_on_tensorflow(sweep: dict[str, Any], check: Any) -> None:
    """Issue 20: this job ran its range test, then failed `internal` ("target.shape=(n,), output.shape=(n, 1)")."""
    check(run_binary_classifier_job(**sweep))


@pytest.mark.slow
def test_a_binary_classifier_with_1d_labels_is_scored_on_jax() -> None:
    arms = run_on_jax(f"""
        from tests.worker.engine.scoring_cases import run_binary_classifier_job
        report([run_binary_classifier_job(**{CONFIRM!r}), run_binary_classifier_job(**{VALIDATION!r})])
    """)
    _check_confirmed(arms[0])
    _check_validated(arms[1])


def test_scoring_leaves_the_step_loss_recorder_as_it_was() -> None:
    """The score is read between chunks, mid-`fit`: it must not add a held-out value to the per-step losses
    the recorder holds (the range test's curve) or move its step counter."""
    import keras

    from worker.engine.data import Prepared
    from worker.engine.recorder import install
    from worker.engine.scoring import held_out_loss

    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(24, 5)).astype("float32"), rng.integers(0, 2, 24).astype("float32")
    model = keras.Sequential([keras.Input((5,)), keras.layers.Dense(1, activation="sigmoid")])
    model.compile(optimizer="sgd", loss=keras.losses.get("binary_crossentropy"), steps_per_execution=2)
    recorder = install(model, 2)
    model.fit(x[:16], y[:16], batch_size=8, epochs=1, verbose=0)
    before = [np.array(v.numpy()) for v in recorder.variables]
    score = held_out_loss(model, Prepared(x=[x[:16]], y=[y[:16]], x_val=[x[16:]], y_val=[y[16:]]))
    assert np.isfinite(score)
    for old, new in zip(before, recorder.variables):
        np.testing.assert_array_equal(old, new.numpy())
