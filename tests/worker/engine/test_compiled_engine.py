"""A compiled model's setup reaches the engine only as job fields (`JobSpec` fills them from the
`compile_config`): the arm runs the model's optimizer with its hyperparameters, and `loss_weights` scale
the loss Keras trains and records (a weight of 0.5 halves the first step's loss, the same weights and batch)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from lrrt.spec import JobSpec
from worker.engine.data import Arrays
from worker.engine.sweep import run_sweep

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
