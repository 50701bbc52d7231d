"""The sweep records what it claims: the schedule's LR at every step, each step's own loss, the same
start for every arm, stops on divergence and NaN, and the same curves for the same spec and seed."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from lrrt.problems import ConfigInvalid
from lrrt.progress import Chunk
from tests.keras_models import make_spec, mlp_json
from worker.engine.data import Arrays
from worker.engine.schedule import lr_values
from worker.engine.sweep import run_sweep


def regression_data(rows: int = 512, features: int = 8) -> Arrays:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(rows, features)).astype("float32")
    return Arrays(x, (x @ rng.normal(size=features)).astype("float32"))


@pytest.mark.parametrize("mode", ["exponential", "linear"])
def test_each_step_uses_the_schedule_lr_and_records_its_own_loss(mode: str, engine_root: Path, caps) -> None:
    """Replay the sweep by hand: same initial weights, plain SGD with lrs[i] at step i.

    The data is exactly one batch, so every step sees all of it whatever the shuffle order. Recorded
    losses must equal the replay's loss on the weights before each step; any other LR (or Keras's
    running mean) would make them drift apart within a few steps.
    """
    import keras
    import tensorflow as tf

    from lrrt.vetting.vet import vet_model_json
    from worker.engine.models import build_model

    rng = np.random.default_rng(0)
    data = Arrays(rng.random((32, 64), dtype=np.float32), rng.integers(0, 10, 32))
    spec = make_spec(num_steps=45, batch_size=32, start_lr=1e-3, end_lr=0.5, mode=mode, divergence_threshold=None,
                     dataset={"uri": "builtin:digits", "validation_split": 0.0})
    result = run_sweep(spec, data_root=engine_root, caps=caps, data=data, steps_per_execution=10)
    arm = result["arms"][0]
    expected_lrs = lr_values(1e-3, 0.5, 45, mode)
    np.testing.assert_allclose(arm["lrs"], expected_lrs, rtol=1e-12)

    keras.utils.set_random_seed(spec.sweep.seed)
    model = build_model(vet_model_json(spec.model, caps), caps)
    loss_fn = keras.losses.SparseCategoricalCrossentropy()
    replayed = []
    for lr in expected_lrs:
        with tf.GradientTape() as tape:
            loss = loss_fn(data.y, model(data.x, training=True))
        grads = tape.gradient(loss, model.trainable_variables)
        replayed.append(float(loss))
        for variable, grad in zip(model.trainable_variables, grads):
            variable.assign_sub(lr * grad)
    np.testing.assert_allclose(arm["losses"], replayed, rtol=2e-4, atol=1e-5)
    assert arm["stop_reason"] == "completed" and len(arm["losses"]) == 45


def test_arms_with_the_same_optimizer_give_the_same_curve(engine_root: Path, caps) -> None:
    """Same initial weights and the same batches in the same order, across epochs (digits: 25 batches each)."""
    spec = make_spec(optimizers=[{"name": "sgd", "label": "one"}, {"name": "adam"}, {"name": "sgd", "label": "two"}],
                     num_steps=60)
    one, adam, two = run_sweep(spec, data_root=engine_root, caps=caps)["arms"]
    assert one["losses"] == two["losses"]
    assert adam["losses"][0] == one["losses"][0] and adam["losses"][5] != one["losses"][5]


def test_same_spec_and_seed_give_identical_curves(engine_root: Path, caps) -> None:
    """Also with dropout and batch norm, whose RNG and statistics must be reset when a compiled model is reused."""
    import json

    import keras

    model = json.loads(keras.Sequential([keras.Input((64,)), keras.layers.Dense(32, activation="relu"),
                                         keras.layers.BatchNormalization(), keras.layers.Dropout(0.3),
                                         keras.layers.Dense(10, activation="softmax")]).to_json())
    spec = make_spec(model, optimizers=[{"name": "adam"}], num_steps=40)
    first = run_sweep(spec, data_root=engine_root, caps=caps)  # compiles
    second = run_sweep(spec, data_root=engine_root, caps=caps)  # reuses the compiled model
    assert first["arms"] == second["arms"]
    other_seed = run_sweep(make_spec(model, optimizers=[{"name": "adam"}], num_steps=40, seed=7), data_root=engine_root, caps=caps)
    assert other_seed["arms"][0]["losses"] != first["arms"][0]["losses"]


def test_a_huge_learning_rate_stops_with_diverged(engine_root: Path, caps) -> None:
    spec = make_spec(mlp_json(inputs=(8,), outputs=1, activation="linear"), loss="mse",
                     start_lr=0.01, end_lr=1e4, num_steps=200, divergence_threshold=4.0)
    arm = run_sweep(spec, data_root=engine_root, caps=caps, data=regression_data())["arms"][0]
    assert arm["stop_reason"] == "diverged"
    assert len(arm["losses"]) < 200 and len(arm["lrs"]) == len(arm["losses"])
    assert arm["smoothed_losses"][-1] > 4 * min(v for v in arm["smoothed_losses"] if v is not None)


def test_a_nan_loss_stops_the_arm_with_nan_at_step(engine_root: Path, caps) -> None:
    spec = make_spec(mlp_json(inputs=(8,), outputs=1, activation="linear"), loss="mse",
                     start_lr=1.0, end_lr=1e8, num_steps=200, divergence_threshold=None)
    result = run_sweep(spec, data_root=engine_root, caps=caps, data=regression_data())
    arm = result["arms"][0]
    assert arm["stop_reason"] == "nan"
    assert arm["losses"][-1] is None  # the NaN/inf step is kept, as null
    flags = {flag["code"]: flag for flag in arm["diagnostics"]}
    assert flags["nan_at_step"]["step"] == len(arm["losses"]) - 1
    assert all(v is None or math.isfinite(v) for v in arm["losses"])


def test_digits_adam_and_sgd_give_plausible_learning_rates(engine_root: Path, caps) -> None:
    spec = make_spec(optimizers=[{"name": "adam"}, {"name": "sgd"}], start_lr=1e-5, end_lr=10.0, num_steps=200)
    result = run_sweep(spec, data_root=engine_root, caps=caps)
    adam, sgd = result["arms"]
    assert 1e-4 <= adam["recommended_lr"] <= 1e-1, adam["suggestions"]
    assert sgd["recommended_lr"] > adam["recommended_lr"], (adam["suggestions"], sgd["suggestions"])
    assert result["best_arm"] in ("adam", "sgd")
    assert result["recommendation"]["learning_rate"] is not None and result["recommendation"]["one_cycle"]["max_lr"] > 0
    assert result["engine"]["backend"] == "tensorflow" and result["stopped"] is None


def test_progress_hook_sees_every_step_and_can_cancel(engine_root: Path, caps) -> None:
    chunks: list[Chunk] = []

    def hook(chunk: Chunk) -> str | None:
        chunks.append(chunk)
        return "cancelled" if chunk.job_steps_done >= 30 else None

    spec = make_spec(optimizers=[{"name": "sgd"}, {"name": "adam"}], num_steps=50)
    result = run_sweep(spec, data_root=engine_root, caps=caps, on_chunk=hook, steps_per_execution=10)
    assert result["stopped"] == "cancelled"
    sgd, adam = result["arms"]
    assert sgd["stop_reason"] == "cancelled" and adam["stop_reason"] == "cancelled" and adam["losses"] == []
    assert chunks[-1].job_steps_done >= 30 > chunks[-2].job_steps_done  # stopped at the first chunk past 30
    assert all(0 < len(c.losses) <= 10 for c in chunks)  # never more than steps_per_execution between looks
    assert [c.step_start for c in chunks[1:]] == [c.step_start + len(c.losses) for c in chunks[:-1]]
    assert sum((c.losses for c in chunks), []) == sgd["losses"] and len(sgd["lrs"]) == len(sgd["losses"])
    assert chunks[-1].job_steps_total == 100


def test_validation_mode_and_repeats(engine_root: Path, caps) -> None:
    spec = make_spec(optimizers=[{"name": "adam"}], evaluate_on="validation", repeats=3, num_steps=100)
    arm = run_sweep(spec, data_root=engine_root, caps=caps)["arms"][0]
    measured = [v for v in arm["val_losses"] if v is not None]
    assert len(arm["val_losses"]) == len(arm["losses"]) and len(measured) >= 50
    assert arm["repeats"]["seeds"] == [0, 1, 2]
    assert len(arm["repeats"]["suggestions"]["valley"]) == 3
    assert arm["repeats"]["iqr_log10"]["valley"] >= 0


def test_unknown_loss_and_bad_optimizer_params_are_config_errors(engine_root: Path, caps) -> None:
    with pytest.raises(ValidationError, match="unknown loss 'not_a_loss': use one of"):  # the spec itself refuses it now
        make_spec(loss="not_a_loss")
    with pytest.raises(ConfigInvalid) as caught:
        run_sweep(make_spec(optimizers=[{"name": "sgd", "params": {"nesterov_typo": True}}]), data_root=engine_root, caps=caps)
    assert "nesterov_typo" in caught.value.detail


def test_mixed_precision_and_jit_compile_options_run(engine_root: Path, caps) -> None:
    spec = make_spec(num_steps=20, mixed_precision=True, jit_compile=True)
    arm = run_sweep(spec, data_root=engine_root, caps=caps)["arms"][0]
    assert len(arm["losses"]) == 20 and all(v is not None for v in arm["losses"])


def test_out_of_memory_becomes_resource_exhausted(engine_root: Path, caps, monkeypatch: pytest.MonkeyPatch) -> None:
    import keras

    from lrrt.problems import ResourceExhausted

    class ResourceExhaustedError(Exception):
        pass

    def fit(*args, **kwargs):
        raise ResourceExhaustedError("OOM when allocating tensor with shape [64,4096]")

    monkeypatch.setattr(keras.Model, "fit", fit)
    with pytest.raises(ResourceExhausted) as caught:
        run_sweep(make_spec(num_steps=10, seed=11), data_root=engine_root, caps=caps)
    problem = caught.value.problem()
    assert problem["status"] == 507 and problem["type"] == "urn:lrrt:problem:resource-exhausted"
    assert "batch_size" in problem["detail"]


def test_epochs_sized_sweep_over_the_step_cap_fails_before_training(engine_root: Path) -> None:
    """The API cannot know an epochs-sized sweep's length; the engine checks it once the data is loaded."""
    from lrrt.problems import CapExceeded
    from lrrt.settings import Settings

    rows = 640
    data = Arrays(np.zeros((rows, 64), dtype=np.float32), np.zeros(rows, dtype=np.int64))
    spec = make_spec(num_steps=None, epochs=3, batch_size=64, dataset={"uri": "builtin:digits", "validation_split": 0.0})
    tight = Settings(data_root=engine_root, max_steps=29)  # 3 epochs x 10 batches = 30 steps
    with pytest.raises(CapExceeded) as caught:
        run_sweep(spec, data_root=engine_root, caps=tight, data=data)
    assert caught.value.extensions == {"cap": "max_steps", "limit": 29, "value": 30}
    assert "num_steps is 30" in caught.value.detail
