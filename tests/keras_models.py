"""Real Keras models and job specs for tests that build them: CPU Keras, the digits dataset."""

from __future__ import annotations

import json
from typing import Any

from lrrt.spec import JobSpec


def mlp_json(inputs: tuple[int, ...] = (64,), hidden: int = 32, outputs: int = 10, activation: str = "softmax") -> dict[str, Any]:
    """A real Keras 3 `to_json()` of a small MLP (built here, so the fixture never drifts from Keras)."""
    import keras

    layers = [keras.Input(inputs)]
    if len(inputs) > 1:
        layers.append(keras.layers.Flatten())
    layers += [keras.layers.Dense(hidden, activation="relu"), keras.layers.Dense(outputs, activation=activation)]
    return json.loads(keras.Sequential(layers).to_json())


def memory_bomb_json(size: int) -> dict[str, Any]:
    """Issue 20's memory bomb, made a classifier: 90-odd parameters that resize each digit (64 pixels) to a
    `size` x `size` image and convolve it, so a step's activations grow with size squared (4096: ~4 GiB
    at batch 16) while every check on the JSON passes."""
    import keras

    L = keras.layers
    model = keras.Sequential([keras.Input((64,)), L.Reshape((8, 8, 1)), L.Resizing(size, size), L.Conv2D(4, 3),
                              L.GlobalAveragePooling2D(), L.Dense(10, activation="softmax")])
    return json.loads(model.to_json())


def unestimated_bomb_json(size: int) -> dict[str, Any]:
    """`memory_bomb_json` behind `TimeDistributed`, a wrapper the submit-time memory estimate does not look
    into (lrrt/vetting/layers.py has no rule for it): the estimate is an incomplete floor of a few bytes and
    admits the job, which the worker's own memory guard must then stop. Tests that rely on this assert it."""
    import keras

    L = keras.layers
    model = keras.Sequential([keras.Input((64,)), L.Reshape((1, 8, 8, 1)), L.TimeDistributed(L.Resizing(size, size)),
                              L.TimeDistributed(L.Conv2D(4, 3)), L.GlobalAveragePooling3D(),
                              L.Dense(10, activation="softmax")])
    return json.loads(model.to_json())


def make_spec(model: dict[str, Any] | None = None, *, optimizers: list[dict[str, Any]] | None = None,
              dataset: dict[str, Any] | None = None, loss: str = "sparse_categorical_crossentropy", **sweep: Any) -> JobSpec:
    settings = {"start_lr": 1e-4, "end_lr": 1.0, "num_steps": 60, "batch_size": 64, **sweep}
    return JobSpec(
        model=model if model is not None else mlp_json(),
        dataset=dataset or {"uri": "builtin:digits", "normalize": True},
        loss=loss,
        optimizers=optimizers or [{"name": "sgd"}],
        sweep=settings,
    )


def layer(class_name: str, **config: Any) -> dict[str, Any]:
    return {"module": "keras.layers", "class_name": class_name, "registered_name": None, "config": config}


def digits_bomb(blow_up: dict[str, Any]) -> dict[str, Any]:
    """Issue 20's 90-parameter Sequential: the 64 digits pixels as 8x8x1, `blow_up`, Conv2D(4, 3), then
    pooling and a 10-way softmax."""
    return {"module": "keras", "class_name": "Sequential", "registered_name": None, "config": {"name": "bomb", "layers": [
        layer("InputLayer", batch_shape=[None, 64], name="pixels"), layer("Reshape", target_shape=[8, 8, 1], name="r"),
        blow_up, layer("Conv2D", filters=4, kernel_size=[3, 3], name="c"), layer("GlobalAveragePooling2D", name="g"),
        layer("Dense", units=10, activation="softmax", name="d")]}}
