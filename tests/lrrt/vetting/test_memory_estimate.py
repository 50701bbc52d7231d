"""The memory guard at submission (`lrrt.vetting.memory`, `lrrt.vetting.estimate`): issue 20's two memory
bombs are refused from the JSON alone with the estimate, the limit and the largest batch that fits; the
walk's parameter and activation counts agree with what Keras builds; the optimizer slots agree with
Keras's own optimizer variables; hostile JSON is described, never raised on."""

from __future__ import annotations

import copy
import json
import math
from typing import Any

import pytest

from lrrt.problems import CapExceeded
from lrrt.settings import Settings
from lrrt.vetting.estimate import estimate
from lrrt.vetting.memory import ACTIVATION_FACTOR, BYTES_PER_VALUE, slots
from lrrt.vetting.vet import check_memory_on_rows, job_memory, vet_spec
from tests.keras_models import digits_bomb, layer, make_spec

CAPS = Settings()


RESIZING = digits_bomb(layer("Resizing", height=8192, width=8192, name="big"))
UPSAMPLING = digits_bomb(layer("UpSampling2D", size=300, name="big"))


@pytest.mark.parametrize("model, side", [(RESIZING, 8192), (UPSAMPLING, 2400)], ids=["resizing", "upsampling"])
def test_the_memory_bombs_are_refused_with_the_estimate_and_the_batch_that_fits(model: dict[str, Any], side: int) -> None:
    spec = make_spec(model, optimizers=[{"name": "adam"}], batch_size=64)
    footprint = spec.model_summary.footprint
    assert footprint is not None and footprint.complete and footprint.params == 90
    per_sample = 8 * 8 + side * side + (side - 2) ** 2 * 4 + 4 + 10  # reshape, blow-up, conv, pooling, softmax
    assert footprint.activations == per_sample
    with pytest.raises(CapExceeded) as refused:
        vet_spec(spec, CAPS, dataset=False)
    problem = refused.value.extensions
    activations = per_sample * 64 * BYTES_PER_VALUE * ACTIVATION_FACTOR
    assert problem["cap"] == "memory_limit_bytes" and problem["limit"] == CAPS.memory_limit_bytes
    assert problem["estimate"]["activations"] == activations
    assert problem["value"] == activations + 90 * BYTES_PER_VALUE * (1 + 1 + 2)  # weights, gradients, Adam's 2 slots
    fits = problem["largest_batch_size"]
    assert fits == (CAPS.memory_limit_bytes - 90 * 16) // (per_sample * BYTES_PER_VALUE * ACTIVATION_FACTOR) < 64
    assert f"largest batch size that fits is {fits}" in str(refused.value) and "GiB" in str(refused.value)
    if fits:  # the batch the problem offers is admitted, one more is not
        vet_spec(make_spec(model, optimizers=[{"name": "adam"}], batch_size=fits), CAPS, dataset=False)
        with pytest.raises(CapExceeded):
            vet_spec(make_spec(model, optimizers=[{"name": "adam"}], batch_size=fits + 1), CAPS, dataset=False)


def test_a_model_over_the_limit_at_any_batch_is_told_so() -> None:
    spec = make_spec(optimizers=[{"name": "adam"}])
    with pytest.raises(CapExceeded) as refused:
        vet_spec(spec, Settings(memory_limit_bytes=1000), dataset=False)
    assert refused.value.extensions["largest_batch_size"] == 0 and "No batch size fits" in str(refused.value)


def test_the_hungriest_arm_counts() -> None:
    spec = make_spec(optimizers=[{"name": "sgd"}, {"name": "adam", "params": {"amsgrad": True}}])
    memory = job_memory(spec, spec.model_summary.footprint, 0)
    assert memory is not None and memory.optimizer_slots == 3 * memory.weights


def test_slots_agree_with_keras_optimizer_variables() -> None:
    import keras
    import numpy as np

    weights = [keras.Variable(np.zeros((10, 20), "float32")), keras.Variable(np.zeros((20,), "float32"))]
    cases = [("sgd", {}), ("sgd", {"momentum": 0.9}), ("adam", {}), ("adam", {"amsgrad": True}), ("adamw", {}),
             ("rmsprop", {}), ("rmsprop", {"momentum": 0.9, "centered": True}), ("adagrad", {}), ("adadelta", {}),
             ("adamax", {}), ("nadam", {}), ("ftrl", {}), ("lion", {}), ("adam", {"use_ema": True})]
    for name, params in cases:
        optimizer = type(keras.optimizers.get(name))(**params)
        optimizer.build(weights)
        per_weight = sum(math.prod(v.shape) for v in optimizer.variables) // 220  # scalars (iterations) round away
        assert slots(name, params) == per_weight, (name, params)


def test_the_walk_counts_what_keras_builds() -> None:
    import keras

    from tests.zoo.models import augmented, keras_activations, transformer_block, two_inputs, two_outputs

    layers = keras.layers
    convnet = keras.Sequential([keras.Input((28, 28, 1)), layers.ZeroPadding2D(2), layers.Conv2D(8, 3, strides=2),
                                layers.UpSampling2D(3), layers.Cropping2D(((1, 2), (3, 4))), layers.Resizing(20, 24),
                                layers.SeparableConv2D(6, 3, padding="same"), layers.Conv2DTranspose(4, 3, strides=2),
                                layers.Flatten(), layers.Dense(5)])
    for model in (convnet, augmented(), two_inputs(), two_outputs(),
                  keras.applications.MobileNetV2(weights=None, input_shape=(32, 32, 3), classes=4)):
        footprint = estimate(json.loads(model.to_json()))
        assert footprint is not None and footprint.complete
        assert (footprint.params, footprint.activations) == (model.count_params(), keras_activations(model)), model.name
    for model in (transformer_block(),):  # attention keeps its scores and projections besides its output
        footprint = estimate(json.loads(model.to_json()))
        assert footprint is not None and footprint.params == model.count_params()
        assert footprint.activations > keras_activations(model)


def test_open_sizes_are_a_floor_and_the_dataset_rows_fill_them() -> None:
    import keras

    text = keras.Sequential([keras.Input((None,), dtype="int32"), keras.layers.Embedding(1000, 64),
                             keras.layers.LSTM(64, return_sequences=True), keras.layers.GlobalAveragePooling1D(),
                             keras.layers.Dense(2, activation="softmax")])
    spec = make_spec(json.loads(text.to_json()), optimizers=[{"name": "adam"}], batch_size=64)
    footprint = spec.model_summary.footprint
    assert footprint is not None and not footprint.complete and footprint.params == text.count_params()
    config = vet_spec(spec, CAPS, dataset=False)  # the floor (one timestep) fits: admitted
    check_memory_on_rows(spec, config, {"x": [100, 50], "y": [100]}, CAPS)  # 50 tokens a row fit too
    with pytest.raises(CapExceeded) as refused:
        check_memory_on_rows(spec, config, {"x": [100, 200_000], "y": [100]}, CAPS)
    assert refused.value.extensions["estimate"]["complete"] is True


HOSTILE_LAYERS = [
    layer("Conv2D", filters=4, kernel_size=[3, 3], strides=[0, 0], name="zero stride"),
    layer("Conv2D", filters="many", kernel_size="big", name="strings"),
    layer("Cropping2D", cropping=[[900, 900], [900, 900]], name="crops more than there is"),
    layer("Reshape", target_shape=[1] * 100_000, name="rank 100000"),
    layer("Reshape", target_shape=[-1, -1], name="two unknowns"),
    layer("UpSampling2D", size={"a": 1}, name="object size"),
    layer("Concatenate", axis=99, name="axis out of range"),
    {"class_name": "Dense", "config": None, "inbound_nodes": "x"},
    {"class_name": "Sequential", "config": {"layers": "not a list"}},
]


@pytest.mark.parametrize("bad", HOSTILE_LAYERS, ids=lambda bad: str(bad["config"] and bad["config"].get("name")))
def test_hostile_layers_are_described_never_raised(bad: dict[str, Any]) -> None:
    model = digits_bomb(bad)
    footprint = estimate(model)
    assert footprint is None or footprint.activations >= 64
    functional = {"class_name": "Functional", "config": {"layers": [
        {"class_name": "InputLayer", "name": "in", "config": {"batch_shape": [None, 8, 8, 1]}, "inbound_nodes": []},
        {**copy.deepcopy(bad), "name": "bad", "inbound_nodes": [{"args": [{"class_name": "__keras_tensor__", "config": {
            "shape": "huge", "keras_history": ["in", 7, ["x"]]}}]}]},
    ], "input_layers": [["in", 0, 0]], "output_layers": ["bad", 0, 0]}}
    estimate(functional)


def test_mixed_precision_halves_the_activations_only() -> None:
    plain, mixed = (job_memory(spec, spec.model_summary.footprint, 0) for spec in (
        make_spec(UPSAMPLING, optimizers=[{"name": "adam"}]), make_spec(UPSAMPLING, optimizers=[{"name": "adam"}],
                                                                         mixed_precision=True)))
    assert plain is not None and mixed is not None
    assert mixed.activations * 2 == plain.activations and mixed.weights == plain.weights == 90 * 4


def test_nested_shared_models_cannot_make_the_walk_explode() -> None:
    """Each level calls the model below it 50 times: 50^6 layer calls if followed; the walk stops at
    MAX_CALLS with the floor it has, marked incomplete."""
    from lrrt.vetting.estimate import MAX_CALLS

    tensor = {"class_name": "__keras_tensor__", "config": {"shape": [None, 4], "keras_history": ["in", 0, 0]}}
    model: dict[str, Any] = layer("Dense", units=4, name="inner")
    model["inbound_nodes"] = [{"args": [tensor]}] * 50
    for _ in range(6):
        model = {"class_name": "Functional", "name": "inner", "config": {"layers": [
            {"class_name": "InputLayer", "name": "in", "config": {"batch_shape": [None, 4]}, "inbound_nodes": []},
            model], "input_layers": [["in", 0, 0]], "output_layers": [["inner", 0, 0]]}, "inbound_nodes": [{"args": [tensor]}] * 50}
    footprint = estimate(model)
    assert footprint is not None and not footprint.complete and footprint.params is None
    assert 4 * MAX_CALLS // 2 <= footprint.activations <= 4 * MAX_CALLS
