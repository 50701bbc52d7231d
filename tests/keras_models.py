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
