"""Real tf.keras 2.21 JSON (fixtures/README.md says how it was made): Functional models, text models
with an Embedding vocabulary and input_length, masking, recurrent layers and two named inputs are
rewritten onto Keras 3, built twice with the parameter count tf.keras reported, and swept."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from lrrt.settings import Settings
from lrrt.vetting.keras2 import is_legacy
from lrrt.vetting.vet import vet_model_json
from tests.keras_models import make_spec

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
CAPS = Settings()
#: Parameter counts tf.keras 2.21 printed when it made each fixture.
TF_KERAS_PARAMS = {"functional_bn": 3_594, "text_lstm": 18_146, "text_bigru": 5_081, "two_inputs": 199}


def fixture(name: str) -> dict:
    return json.loads((FIXTURES / f"tf_keras_2_21_{name}.json").read_text())


def arrays(name: str, rows: int = 64) -> tuple[object, object, str]:
    rng = np.random.default_rng(0)
    if name == "functional_bn":
        return rng.random((rows, 64), dtype=np.float32), rng.integers(0, 10, rows), "sparse_categorical_crossentropy"
    if name == "text_lstm":
        tokens = rng.integers(1, 1000, (rows, 20))
        tokens[:, 15:] = 0  # padding, masked by mask_zero
        return tokens, rng.integers(0, 2, rows), "sparse_categorical_crossentropy"
    if name == "text_bigru":
        return rng.integers(0, 500, (rows, 24)), rng.integers(0, 2, rows).astype(np.float32), "binary_crossentropy"
    return ({"numbers": rng.random((rows, 8)), "category": rng.integers(0, 10, (rows, 5))}, rng.integers(0, 3, rows),
            "sparse_categorical_crossentropy")


@pytest.mark.parametrize("name", sorted(TF_KERAS_PARAMS))
def test_tf_keras_2_21_model_builds_twice_with_its_parameter_count(name: str) -> None:
    from worker.engine.models import build_model

    raw = fixture(name)
    assert is_legacy(raw)
    config = vet_model_json(raw, CAPS)
    first, second = build_model(config, CAPS), build_model(config, CAPS)
    assert first.count_params() == second.count_params() == TF_KERAS_PARAMS[name]


@pytest.mark.parametrize("name", sorted(TF_KERAS_PARAMS))
def test_tf_keras_2_21_model_sweeps(name: str, engine_root: Path) -> None:
    from worker.engine.data import Arrays
    from worker.engine.sweep import run_sweep

    x, y, loss = arrays(name)
    spec = make_spec(fixture(name), loss=loss, optimizers=[{"name": "sgd"}, {"name": "adam"}], num_steps=8,
                     batch_size=8, dataset={"uri": "builtin:digits", "validation_split": 0.0})
    result = run_sweep(spec, data_root=engine_root, caps=CAPS, data=Arrays(x, y))
    for arm in result["arms"]:
        assert len(arm["losses"]) == 8 and all(np.isfinite(arm["losses"])), arm["losses"]


def test_operation_nodes_with_slices_build_and_sweep(engine_root: Path) -> None:
    """`x[:, 1:4]`, `x[..., 0]`, `keras.ops.expand_dims`, `x + y`: GetItem nodes carry `__slice__` and
    `__ellipsis__` index markers, which the allow-list reads as plain values."""
    import keras

    from worker.engine.data import Arrays
    from worker.engine.models import build_model
    from worker.engine.sweep import run_sweep

    inputs = keras.Input((64,))
    h = keras.ops.expand_dims(inputs[:, 8:40], -1)[..., 0]
    h = keras.layers.Dense(16, activation="relu")(h)
    h = h + keras.ops.relu(keras.layers.Dense(16)(h))
    model = keras.Model(inputs, keras.layers.Dense(10, activation="softmax")(h))
    raw = json.loads(model.to_json())
    config = vet_model_json(raw, CAPS)
    assert build_model(config, CAPS).count_params() == build_model(config, CAPS).count_params() == model.count_params()
    rng = np.random.default_rng(1)
    result = run_sweep(make_spec(raw, num_steps=6, batch_size=8), data_root=engine_root, caps=CAPS,
                       data=Arrays(rng.random((48, 64), dtype=np.float32), rng.integers(0, 10, 48)))
    assert len(result["arms"][0]["losses"]) == 6
