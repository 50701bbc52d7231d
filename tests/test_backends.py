"""The backend rule (`worker.core.backends`): queues, `auto` and the reasons results give, on the models
`bench/peers.py` measured it on."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from worker.core.backends import auto_backend, backend_reason, device_kind, model_kind, queue_for, route, rule_backend

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
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


@pytest.mark.parametrize(("model", "backend"), [
    (example("digits_mlp.json"), "jax"),
    (DIGITS_CONVNET, "jax"),  # 8x8 inputs: below CPU_CONV_TENSORFLOW_FROM
    (example("mnist_convnet.json"), "tensorflow"),  # 28x28
    (TEXT_LSTM, "jax"),
])
def test_the_cpu_rule_on_the_measured_models(model: dict[str, Any], backend: str) -> None:
    choice = auto_backend(model, live=BOTH_CPU)
    assert choice.backend == backend
    assert choice.reason.startswith("auto: ")


def test_on_a_gpu_auto_takes_jax_even_for_a_convnet() -> None:
    choice = auto_backend(example("mnist_convnet.json"), live={"tensorflow": "gpu", "jax": "gpu"})
    assert choice.backend == "jax" and "GPU" in choice.reason


def test_auto_uses_the_only_live_backend_and_the_default_when_none_is_live() -> None:
    assert auto_backend(example("mnist_convnet.json"), live={"jax": "cpu"}).backend == "jax"
    assert auto_backend(example("digits_mlp.json"), live={"tensorflow": "cpu"}).backend == "tensorflow"
    none_live = auto_backend(example("digits_mlp.json"), live={})
    assert none_live.backend == "tensorflow" and "no worker" in none_live.reason


def test_a_named_backend_must_be_live_unless_none_is() -> None:
    assert route("jax", example("digits_mlp.json"), {"tensorflow": "cpu"}) is None
    assert route("jax", example("digits_mlp.json"), {}).backend == "jax"  # type: ignore[union-attr]
    assert route("tensorflow", example("digits_mlp.json"), BOTH_CPU).reason.startswith("requested")  # type: ignore[union-attr]


def test_the_reason_a_result_gives_matches_the_choice() -> None:
    mlp = example("digits_mlp.json")
    assert backend_reason("jax", mlp, "jax", "CPU:0") == "requested: the job asked for jax"
    assert backend_reason("auto", mlp, "jax", "CPU:0") == rule_backend(mlp, "cpu").reason
    fallback = backend_reason("auto", mlp, "tensorflow", "CPU:0")
    assert "prefers jax" in fallback and "no live jax worker" in fallback and "in-process (`lrrt run`" in fallback


def test_a_worker_hidden_from_its_gpus_reports_the_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert device_kind() == "cpu"
