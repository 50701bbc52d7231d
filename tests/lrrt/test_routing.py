"""The backend rule (`lrrt.routing`): queues, `auto` and the reasons results give, on the models
`bench/peers.py` measured it on."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from lrrt.routing import auto_backend, device_kind, in_process, model_kind, queue_for, route, rule_backend

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
BOTH_CPU = {"tensorflow": "cpu", "jax": "cpu"}


def example(name: str) -> dict[str, Any]:
    return json.loads((EXAMPLES / name).read_text())


def layer(class_name: str, **config: Any) -> dict[str, Any]:
    return {"module": "keras.layers", "class_name": class_name, "config": config, "registered_name": None}


def sequential(*layers: dict[str, Any]) -> dict[str, Any]:
    return {"module": "keras", "class_name": "Sequential", "config": {"name": "m", "layers": list(layers)}}


TEXT_LSTM = sequential(layer("InputLayer", batch_shape=[None, 80], dtype="int32"),
                       layer("Embedding", input_dim=5000, output_dim=32), layer("LSTM", units=32),
                       layer("Dense", units=2, activation="softmax"))
DIGITS_CONVNET = sequential(layer("InputLayer", batch_shape=[None, 8, 8, 1]),
                            layer("Conv2D", filters=32, kernel_size=[3, 3], padding="same"), layer("Flatten"),
                            layer("Dense", units=10))


def test_tensorflow_keeps_the_deployments_queue_and_jax_gets_its_own() -> None:
    assert queue_for("lrrt", "tensorflow") == "lrrt"
    assert queue_for("lrrt", "jax") == "lrrt.jax"


def test_model_kinds() -> None:
    assert model_kind(example("digits_mlp.json")) == "dense"
    assert model_kind(example("mnist_convnet.json")) == "conv"
    assert model_kind(TEXT_LSTM) == "recurrent"


def convnet(side: int) -> dict[str, Any]:
    return sequential(layer("InputLayer", batch_shape=[None, side, side, 1]),
                      layer("Conv2D", filters=32, kernel_size=[3, 3], padding="same"), layer("Flatten"),
                      layer("Dense", units=10))


@pytest.mark.parametrize(("model", "batch_size", "backend"), [
    (example("digits_mlp.json"), 32, "jax"),
    (DIGITS_CONVNET, 32, "jax"),  # 8x8 x 32 = 2,048 positions a step: below CPU_CONV_TENSORFLOW_FROM
    (convnet(16), 32, "jax"),  # 8,192: JAX measured ahead
    (convnet(20), 32, "tensorflow"),  # 12,800: TensorFlow measured ahead
    (convnet(16), 250, "tensorflow"),  # 64,000: TensorFlow 3-5x
    (example("mnist_convnet.json"), 250, "tensorflow"),  # 28x28 x 250
    (example("mnist_convnet.json"), 8, "jax"),  # 6,272: JAX measured ahead
    (TEXT_LSTM, 64, "jax"),
])
def test_the_cpu_rule_on_the_measured_models(model: dict[str, Any], batch_size: int, backend: str) -> None:
    choice = auto_backend(model, live=BOTH_CPU, batch_size=batch_size)
    assert choice.backend == backend
    assert choice.reason.startswith("auto: ")


def test_on_a_gpu_auto_takes_jax_even_for_a_convnet() -> None:
    choice = auto_backend(example("mnist_convnet.json"), live={"tensorflow": "gpu", "jax": "gpu"}, batch_size=250)
    assert choice.backend == "jax" and "GPU" in choice.reason


def test_auto_uses_the_only_live_backend_and_the_default_when_none_is_live() -> None:
    assert auto_backend(example("mnist_convnet.json"), live={"jax": "cpu"}, batch_size=250).backend == "jax"
    assert auto_backend(example("digits_mlp.json"), live={"tensorflow": "cpu"}, batch_size=32).backend == "tensorflow"
    none_live = auto_backend(example("digits_mlp.json"), live={}, batch_size=32)
    assert none_live.backend == "tensorflow" and "no worker" in none_live.reason


def test_a_named_backend_must_be_live_unless_none_is() -> None:
    assert route("jax", example("digits_mlp.json"), {"tensorflow": "cpu"}, 32) is None
    assert route("jax", example("digits_mlp.json"), {}, 32).backend == "jax"  # type: ignore[union-attr]
    assert route("tensorflow", example("digits_mlp.json"), BOTH_CPU, 32).reason.startswith("requested")  # type: ignore[union-attr]


def test_a_job_run_in_process_says_why_it_runs_on_this_process_backend(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")  # the CPU rule, wherever the test runs
    mlp = example("digits_mlp.json")
    assert in_process("jax", mlp, "jax", 32) == "requested: the job asked for jax"
    assert in_process("auto", mlp, "jax", 32) == rule_backend(mlp, "cpu", 32).reason
    other = in_process("auto", mlp, "tensorflow", 32)
    assert "prefers jax" in other and "ran in-process (`lrrt run`, `lr_find`) on tensorflow" in other
    asked = in_process("jax", mlp, "tensorflow", 32)  # no longer claims the request was met
    assert asked.startswith("in-process: the job asked for jax") and "KERAS_BACKEND=jax" in asked


def test_a_worker_hidden_from_its_gpus_reports_the_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert device_kind() == "cpu"
