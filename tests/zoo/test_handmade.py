"""The model shapes and data the catalogue lacks, in the engine (vetting, build, sweep): a nested
model used as a layer with a shared layer and a mask, one loss for two outputs, one-hot targets, and
targets that cannot fit an output (a sentence naming the expected range, never a TensorFlow trace)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from lrrt.problems import DatasetError
from lrrt.settings import Settings
from tests.keras_models import make_spec
from tests.zoo.models import as_json, two_outputs

CAPS = Settings()
ROWS = 48


def sweep(model_json: dict[str, Any], x: Any, y: Any, root: Path, loss: Any = "sparse_categorical_crossentropy") -> dict:
    from worker.engine.data import Arrays
    from worker.engine.sweep import run_sweep

    spec = make_spec(model_json, loss=loss, optimizers=[{"name": "sgd"}, {"name": "adam"}], num_steps=6, batch_size=8,
                     dataset={"uri": "builtin:digits", "validation_split": 0.0})
    return run_sweep(spec, data_root=root, caps=CAPS, data=Arrays(x, y))


def nested_shared_masked() -> Any:
    """A Sequential encoder (masked embedding, LSTM) used as a layer twice: a nested, shared model.
    (The mask lives inside the encoder: Keras does not carry a mask into a nested Sequential.)"""
    import keras

    encoder = keras.Sequential([keras.Input((10,), dtype="int32"), keras.layers.Embedding(30, 8, mask_zero=True),
                                keras.layers.LSTM(8)], name="encoder")
    left, right = keras.Input((10,), dtype="int32", name="left"), keras.Input((10,), dtype="int32", name="right")
    both = keras.layers.Concatenate()([encoder(left), encoder(right)])
    return keras.Model([left, right], keras.layers.Dense(2, activation="softmax")(both))


def test_nested_model_with_a_shared_layer_and_a_mask_sweeps(engine_root: Path) -> None:
    from lrrt.vetting.vet import vet_model_json
    from worker.engine.models import build_model

    model = nested_shared_masked()
    config = vet_model_json(as_json(model), CAPS)
    assert build_model(config, CAPS).count_params() == build_model(config, CAPS).count_params() == model.count_params()
    rng = np.random.default_rng(0)
    tokens = {name: rng.integers(0, 30, (ROWS, 10)) for name in ("left", "right")}
    result = sweep(as_json(model), tokens, rng.integers(0, 2, ROWS), engine_root)
    assert all(len(arm["losses"]) == 6 and np.all(np.isfinite(arm["losses"])) for arm in result["arms"])


def test_one_loss_for_two_outputs(engine_root: Path) -> None:
    rng = np.random.default_rng(1)
    y = {"kind": rng.integers(0, 3, ROWS).astype("float32").reshape(-1, 1) / 2, "size": rng.random((ROWS, 1))}
    model = two_outputs()
    model_json = as_json(model)
    model_json["config"]["layers"][-2]["config"]["activation"] = "sigmoid"  # mse on both heads, in [0, 1]
    model_json["config"]["layers"][-2]["config"]["units"] = 1
    result = sweep(model_json, rng.random((ROWS, 6)), y, engine_root, loss="mse")
    assert all(len(arm["losses"]) == 6 for arm in result["arms"])


def test_one_hot_targets_with_categorical_crossentropy(engine_root: Path) -> None:
    import keras

    rng = np.random.default_rng(2)
    labels = rng.integers(0, 4, ROWS)
    model = keras.Sequential([keras.Input((12,)), keras.layers.Dense(4, activation="softmax")])
    result = sweep(as_json(model), rng.random((ROWS, 12)), np.eye(4)[labels], engine_root, loss="categorical_crossentropy")
    assert all(len(arm["losses"]) == 6 for arm in result["arms"])


@pytest.mark.parametrize("loss, targets, says", [
    ("sparse_categorical_crossentropy", np.full(ROWS, 4), "class ids from 4 to 4"),
    ("sparse_categorical_crossentropy", np.full(ROWS, 0.5), "integer class ids"),
    ("categorical_crossentropy", np.zeros(ROWS), "convert class ids with keras.utils.to_categorical"),
    ("binary_crossentropy", np.full((ROWS, 4), 3.0), "targets in [0, 1]"),
    ("mse", np.full((ROWS, 4), np.nan), "NaN or infinite"),
])
def test_targets_that_cannot_fit_the_output_say_what_to_change(engine_root: Path, loss: str, targets: Any,
                                                               says: str) -> None:
    import keras

    model = keras.Sequential([keras.Input((12,)), keras.layers.Dense(4, activation="softmax")])
    with pytest.raises(DatasetError) as failed:
        sweep(as_json(model), np.random.default_rng(3).random((ROWS, 12)), targets, engine_root, loss=loss)
    assert says in failed.value.detail and "Traceback" not in failed.value.detail, failed.value.detail
