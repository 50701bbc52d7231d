"""A compiled model's setup reaches the engine only as job fields (`JobSpec` fills them from the
`compile_config`): the arm runs the model's optimizer with its hyperparameters, and `loss_weights` scale
the loss Keras trains and records (a weight of 0.5 halves the first step's loss, the same weights and batch)."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from lrrt.spec import JobSpec
from worker.engine.data import Arrays
from worker.engine.scoring import held_out_loss
from worker.engine.sweep import _compiled_cache, run_sweep

from .test_weights_engine import digits


def compiled_mlp(**compile_args: Any) -> dict[str, Any]:
    import keras

    model = keras.Sequential([keras.Input((64,)), keras.layers.Dense(16, activation="relu"),
                              keras.layers.Dense(10, activation="softmax")])
    model.compile(**compile_args)
    return json.loads(model.to_json())


def test_the_models_optimizer_and_loss_weights_are_what_the_engine_runs(engine_root: Path, caps) -> None:  # noqa: ANN001
    import keras

    x, y = digits()
    sweep = {"num_steps": 3, "batch_size": 64, "start_lr": 1e-4, "end_lr": 1e-3}
    first = {}
    for weight in (1.0, 0.5):
        model = compiled_mlp(optimizer=keras.optimizers.SGD(momentum=0.9), loss="sparse_categorical_crossentropy",
                             loss_weights=[weight])
        spec = JobSpec.model_validate({"model": model, "dataset": {"uri": "builtin:digits", "validation_split": 0.0},
                                       "sweep": sweep})
        result = run_sweep(spec, data_root=engine_root, caps=caps, data=Arrays(x, y))
        [arm] = result["arms"]
        assert arm["label"] == "sgd" and arm["optimizer"]["params"] == {"momentum": 0.9, "nesterov": False}
        first[weight] = arm["losses"][0]
        assert [n["code"] for n in result["notes"]][:1] == ["compiled_optimizer_used"]
    assert first[0.5] == pytest.approx(first[1.0] / 2, rel=1e-5)  # the same first batch and weights, half the loss


def test_a_logits_model_trains_with_its_compiled_from_logits_loss(engine_root: Path, caps) -> None:  # noqa: ANN001
    """`SparseCategoricalCrossentropy(from_logits=True)` on a linear last layer (the tutorials' setup) reaches
    the engine as `loss_config`: the first step's loss is Keras's own `evaluate` of that loss on the batch
    (the whole training set, from saved weights), and the plain identifier, which reads the logits as
    probabilities, gives another number. Held-out scoring (confirm, `evaluate_on`) goes through the same
    compiled loss, so it scores logits as logits too."""
    import keras
    import numpy as np

    keras.utils.set_random_seed(3)
    model = keras.Sequential([keras.Input((64,)), keras.layers.Dense(16, activation="relu"), keras.layers.Dense(10)])
    model.compile(optimizer="sgd", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    (engine_root / "logits").mkdir(exist_ok=True)
    model.save_weights(str(engine_root / "logits" / "m.weights.h5"))
    x, y = digits()
    expected = model.evaluate(x, y, batch_size=len(x), verbose=0)
    body = {"model": json.loads(model.to_json()), "dataset": {"uri": "builtin:digits", "validation_split": 0.0},
            "weights": "file:logits/m.weights.h5", "sweep": {"num_steps": 2, "batch_size": len(x), "start_lr": 1e-4,
                                                             "end_lr": 1e-3}}
    first = {}
    for named in (None, "sparse_categorical_crossentropy"):
        spec = JobSpec.model_validate(body if named is None else {**body, "loss": named})
        assert spec.loss_config == ({"from_logits": True} if named is None else None)
        result = run_sweep(spec, data_root=engine_root, caps=caps, data=Arrays(x, y))
        first[named] = result["arms"][0]["losses"][0]
        if named is None:
            trained = next(reversed(_compiled_cache.values())).model  # the run's model, after its steps
            held_out = SimpleNamespace(x_val=[x[:200]], y_val=[y[:200]])  # what `held_out_loss` reads of `Prepared`
            by_hand = keras.losses.SparseCategoricalCrossentropy(from_logits=True)(y[:200], trained.predict(x[:200], verbose=0))
            assert held_out_loss(trained, held_out) == pytest.approx(float(by_hand), rel=1e-5)  # type: ignore[arg-type]
        assert {"compiled_loss_used" if named is None else "compiled_loss_replaced"} <= {n["code"] for n in result["notes"]}
    np.testing.assert_allclose(first[None], expected, rtol=1e-5)
    assert abs(first["sparse_categorical_crossentropy"] - expected) > 0.1, first  # the logits read as probabilities
