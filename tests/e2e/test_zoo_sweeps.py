"""Short range tests of the models users bring, end to end: real API, real Celery worker, real Keras,
on TensorFlow (asked for by name); `test_zoo_jax.py` runs the same cases where `auto` sends them (JAX on
the CPU) and on JAX, so no case passes only on a route users never take.

Each job is two optimizer arms times two seeds of a few steps on arrays made here, so it proves that
the model is accepted, built, compiled, fed and swept by the service, and that its result has every
arm and seed, not that the curves are good. Also here: labels outside the model's output range and a
NaN loss, which used to come back as TensorFlow traces or failed jobs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from lrrt.client.api import Client
from tests.zoo import models

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
ROWS = 16
SWEEP = {"start_lr": 1e-4, "end_lr": 1e-2, "num_steps": 4, "batch_size": 4, "repeats": 2}


def _images(rng: np.random.Generator) -> tuple[Any, Any]:
    return rng.random((ROWS, 32, 32, 3), dtype=np.float32), rng.integers(0, 4, ROWS)


def _tokens(rng: np.random.Generator, classes: int) -> tuple[Any, Any]:
    x = rng.integers(1, 50, (ROWS, 12))
    x[:, 9:] = 0  # padding, masked by mask_zero
    return x, rng.integers(0, classes, ROWS)


def _two_inputs(rng: np.random.Generator) -> tuple[Any, Any]:
    return {"numbers": rng.random((ROWS, 6)), "category": rng.integers(0, 5, (ROWS, 1))}, rng.integers(0, 3, ROWS)


def _two_outputs(rng: np.random.Generator) -> tuple[Any, Any]:
    return rng.random((ROWS, 6)), {"kind": rng.integers(0, 3, ROWS), "size": rng.random((ROWS, 1))}


CASES: dict[str, tuple[Callable[[], Any], Callable[[np.random.Generator], tuple[Any, Any]], Any]] = {
    "ResNet50": (lambda: models.application("ResNet50"), _images, "sparse_categorical_crossentropy"),
    "MobileNetV3Small": (lambda: models.application("MobileNetV3Small"), _images, "sparse_categorical_crossentropy"),
    "EfficientNetB0": (lambda: models.application("EfficientNetB0"), _images, "sparse_categorical_crossentropy"),
    "ConvNeXtTiny": (lambda: models.application("ConvNeXtTiny"), _images, "sparse_categorical_crossentropy"),
    "embedding_lstm": (models.text_lstm, lambda rng: _tokens(rng, 3), "sparse_categorical_crossentropy"),
    "transformer_block": (models.transformer_block, lambda rng: _tokens(rng, 2), "sparse_categorical_crossentropy"),
    "two_inputs": (models.two_inputs, _two_inputs, "sparse_categorical_crossentropy"),
    "two_outputs": (models.two_outputs, _two_outputs, {"kind": "sparse_categorical_crossentropy", "size": "mse"}),
    "augmented": (models.augmented, _images, "sparse_categorical_crossentropy"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_model_sweeps_two_arms_two_seeds(client: Client, case: str) -> None:
    make_model, make_data, loss = CASES[case]
    x, y = make_data(np.random.default_rng(0))
    dataset = client.upload_arrays(x, y)
    job = client.submit(models.as_json(make_model()), {"uri": dataset["uri"], "validation_split": 0.0},
                        optimizers=["sgd", "adam"], loss=loss, sweep=SWEEP, backend="tensorflow")
    done = client.wait(job["id"], timeout=600)
    assert done["status"] == "succeeded", done.get("error")
    result = client.result(job["id"])
    assert [arm["label"] for arm in result["arms"]] == ["sgd", "adam"]
    for arm in result["arms"]:
        assert len(arm["losses"]) == SWEEP["num_steps"] and all(np.isfinite(arm["losses"])), arm["losses"]
        assert arm["repeats"]["seeds"] == [0, 1] and arm["repeats"]["stop_reasons"] == ["completed"] * 2


def test_labels_outside_the_output_range_fail_with_the_expected_range(client: Client) -> None:
    x, _ = _tokens(np.random.default_rng(1), 3)
    dataset = client.upload_arrays(x, np.full(ROWS, 7))
    job = client.submit(models.as_json(models.text_lstm()), {"uri": dataset["uri"]}, sweep=SWEEP)
    done = client.wait(job["id"], timeout=300)
    assert done["status"] == "failed"
    error = done["error"]
    assert error["type"] == "urn:lrrt:problem:dataset-error"
    assert "class ids from 7 to 7" in error["detail"] and "ids in 0..2" in error["detail"], error["detail"]
    assert error["expected_range"] == [0, 2] and "Traceback" not in error["detail"] and "graph" not in error["detail"]


def test_nan_stops_its_arm_and_the_job_succeeds_with_validation_at_the_default_length(client: Client) -> None:
    """A linear regression of the digit on its raw pixels (values up to 16) with SGD up to LR 1e4
    overflows to NaN; the clipped arm cannot. The sweep is long enough that each chunk holds several
    steps but one validation point (the placeholders between used to crash the task layer)."""
    import keras

    model = keras.Sequential([keras.Input((64,)), keras.layers.Dense(1)])
    job = client.submit(
        models.as_json(model), {"uri": "builtin:digits", "validation_split": 0.2}, loss="mse",
        optimizers=[{"name": "sgd", "label": "blows up"}, {"name": "sgd", "label": "clipped", "params": {"clipvalue": 1e-9}}],
        sweep={"start_lr": 1e-3, "end_lr": 1e4, "num_steps": 150, "batch_size": 32, "divergence_threshold": None,
               "evaluate_on": "validation"},
    )
    done = client.wait(job["id"], timeout=300)
    assert done["status"] == "succeeded", done.get("error")
    blows_up, clipped = client.result(job["id"])["arms"]
    assert blows_up["stop_reason"] == "nan"
    assert any(d["code"] == "nan_at_step" for d in blows_up["diagnostics"]), blows_up["diagnostics"]
    assert clipped["stop_reason"] == "completed" and len(clipped["losses"]) == 150
    values = [v for v in clipped["val_losses"] if v is not None]
    assert 0 < len(values) < len(clipped["val_losses"]) and all(np.isfinite(values))
