"""The engine starts from the user's weights: the first recorded loss is the pretrained model's own loss,
every arm and seed starts from them, frozen layers (and their BatchNormalization statistics) stay as
loaded, and weights of another model fail with `weights-mismatch` listing the variables."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from lrrt.problems import WeightsMismatch
from lrrt.settings import Settings
from lrrt.vetting.weights import sha256_file
from tests.keras_models import make_spec
from worker.engine.data import Arrays
from worker.engine.sweep import _compiled_cache, run_sweep


def digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    return (bunch.data / 16.0).astype("float32"), bunch.target.astype("int64")


def pretrained(root: Path, *, frozen: bool = False, hidden: int = 32) -> tuple[Any, dict[str, Any], str]:
    """A digits model trained for a few epochs, its JSON and its weights saved under `root` as `file:`
    references them. Frozen: the backbone and a BatchNormalization after it are `trainable: false`."""
    import keras

    keras.utils.set_random_seed(7)
    backbone = [keras.layers.Dense(hidden, activation="relu", name="backbone")]
    if frozen:
        backbone.append(keras.layers.BatchNormalization(name="bn"))
    model = keras.Sequential([keras.Input((64,)), *backbone, keras.layers.Dense(10, activation="softmax", name="head")])
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="sparse_categorical_crossentropy")
    x, y = digits()
    model.fit(x, y, epochs=10, batch_size=64, verbose=0)
    if frozen:
        model.get_layer("backbone").trainable = False
        model.get_layer("bn").trainable = False
    (root / "pre").mkdir(exist_ok=True)
    model.save_weights(str(root / "pre" / f"m{hidden}.weights.h5"))
    model_json = json.loads(model.to_json())
    model_json.pop("compile_config", None)  # a compiled model's JSON names its optimizer; the job names its own
    return model, model_json, f"file:pre/m{hidden}.weights.h5"


def full_batch_spec(model_json: dict[str, Any], weights: str | None, **sweep: Any):  # noqa: ANN201
    """Every step sees the whole training set, so the first loss is the model's loss on all of it."""
    settings = {"num_steps": 6, "batch_size": 1797, "start_lr": 1e-4, "end_lr": 1e-2, **sweep}
    spec = make_spec(model_json, dataset={"uri": "builtin:digits", "validation_split": 0.0},
                     optimizers=[{"name": "sgd"}, {"name": "adam"}], **settings)
    return spec.model_copy(update={"weights": weights})


def own_loss(model: Any, x: np.ndarray, y: np.ndarray) -> float:
    import keras

    return float(np.mean(keras.losses.sparse_categorical_crossentropy(y, model(x, training=False))))


def test_the_sweep_starts_from_the_loaded_weights(engine_root: Path, caps: Settings) -> None:
    model, model_json, reference = pretrained(engine_root)
    x, y = digits()
    result = run_sweep(full_batch_spec(model_json, reference, repeats=2), data_root=engine_root, caps=caps,
                       data=Arrays(x, y))
    expected = own_loss(model, x, y)
    firsts = [arm["losses"][0] for arm in result["arms"]]
    np.testing.assert_allclose(firsts, [expected] * 2, rtol=1e-5)
    assert expected < 0.5  # trained: far below a fresh model's ~2.3
    assert result["engine"]["weights"] == {"uri": reference,
                                           "sha256": sha256_file(engine_root / "pre" / "m32.weights.h5")}
    prints = {arm["fingerprint"]["initial_weights"] for arm in result["arms"]}
    assert len(prints) == 1  # every arm (and both seeds: fingerprint is the first seed's) from the same start
    assert all("frozen_initial" not in run["variables"] for run in result["engine"]["runs"])  # nothing frozen

    fresh = run_sweep(full_batch_spec(model_json, None), data_root=engine_root, caps=caps, data=Arrays(x, y))
    assert fresh["engine"]["weights"] is None
    assert fresh["arms"][0]["losses"][0] > 4 * expected
    assert fresh["arms"][0]["fingerprint"]["initial_weights"] not in prints


def test_frozen_layers_and_their_batchnorm_stay_as_loaded(engine_root: Path, caps: Settings) -> None:
    import keras

    model, model_json, reference = pretrained(engine_root, frozen=True)
    x, y = digits()
    _compiled_cache.clear()
    result = run_sweep(full_batch_spec(model_json, reference, end_lr=1.0), data_root=engine_root, caps=caps,
                       data=Arrays(x, y))
    # BatchNormalization of a frozen layer normalizes with its moving statistics (inference mode), so the
    # first loss is the model's inference-mode loss; in training mode it would use the batch's statistics.
    np.testing.assert_allclose(result["arms"][0]["losses"][0], own_loss(model, x, y), rtol=1e-5)
    assert len(_compiled_cache) == 2
    for compiled in _compiled_cache.values():
        swept = compiled.model
        for name in ("backbone", "bn"):
            for after, loaded in zip(swept.get_layer(name).weights, model.get_layer(name).weights):
                np.testing.assert_array_equal(keras.ops.convert_to_numpy(after.value),
                                              keras.ops.convert_to_numpy(loaded.value), err_msg=f"{name}/{after.name}")
        head_after = keras.ops.convert_to_numpy(swept.get_layer("head").kernel.value)
        assert not np.allclose(head_after, keras.ops.convert_to_numpy(model.get_layer("head").kernel.value))
    # What the API reports of it: each run's variables at its end, the frozen layers' unchanged.
    start = result["arms"][0]["fingerprint"]["initial_weights"]
    for run in result["engine"]["runs"]:
        variables = run["variables"]
        assert variables["initial"] == start and variables["final"] != start, run
        assert variables["frozen_final"] == variables["frozen_initial"], run


def test_weights_of_another_model_fail_listing_the_variables(engine_root: Path, caps: Settings) -> None:
    _, model_json, _ = pretrained(engine_root)
    _, _, other = pretrained(engine_root, hidden=16)
    x, y = digits()
    with pytest.raises(WeightsMismatch) as caught:
        run_sweep(full_batch_spec(model_json, other), data_root=engine_root, caps=caps, data=Arrays(x, y))
    problem = caught.value.problem()
    assert problem["type"].endswith("weights-mismatch")
    wrong = {v["path"]: (v["expected"], v["found"]) for v in problem["variables"]}
    # Keras 3 names a layer's variables after the layer's class and position (dense, dense_1), not its name.
    assert wrong["layers/dense/vars/0"] == ([64, 32], [64, 16])
    assert wrong["layers/dense_1/vars/0"] == ([32, 10], [16, 10])
    assert "layers/dense_1/vars/1" not in wrong  # the head's bias fits: only differences are listed
    assert "Traceback" not in problem["detail"] and "expected (64, 32), found (64, 16)" in problem["detail"]
