"""The one walk of a model JSON (`lrrt.vetting.summary`): what it reports agrees with the JSON read
directly, and it describes anything, including JSON the allow-list refuses."""

from __future__ import annotations

import copy
from typing import Any

from lrrt.vetting.estimate import estimate
from lrrt.vetting.summary import summarize

#: `kernel_size` as one int, as a hand-written JSON may give it (Keras writes a list): it means 3x3 here.
CONV: dict[str, Any] = {
    "module": "keras", "class_name": "Sequential", "registered_name": None,
    "config": {"name": "conv", "layers": [
        {"module": "keras.layers", "class_name": "InputLayer", "registered_name": None,
         "config": {"name": "in", "batch_shape": [None, 8, 8, 1]}},
        {"module": "keras.layers", "class_name": "Conv2D", "registered_name": None,
         "config": {"name": "c", "filters": 4, "kernel_size": 3, "activation": "relu"}},
        {"module": "keras.layers", "class_name": "Flatten", "registered_name": None, "config": {"name": "f"}},
        {"module": "keras.layers", "class_name": "Dense", "registered_name": None,
         "config": {"name": "o", "units": 10, "activation": "softmax"}},
    ]},
}


def test_a_sequential_model_summarized() -> None:
    summary = summarize(CONV)
    assert summary.is_object and summary.disallowed_top is None and summary.disallowed == ()
    assert summary.depth == 6  # model, config, layers, a layer, its config, batch_shape
    assert summary.layers == 4
    assert summary.classes == {"Sequential", "InputLayer", "Conv2D", "Flatten", "Dense"}
    assert summary.input_shapes == ((None, 8, 8, 1),)
    conv, dense = 3 * 3 * 1 * 4 + 4, 6 * 6 * 4 * 10 + 10
    assert summary.params == estimate(CONV).params == conv + dense
    assert summary.certain_params == 10  # Dense units: all the configs alone make certain


def test_nested_models_count_their_layers_and_once_themselves() -> None:
    outer = copy.deepcopy(CONV)
    outer["config"]["layers"].insert(1, copy.deepcopy(CONV))
    assert summarize(outer).layers == 4 + 1 + 4


def test_what_the_allow_list_refuses_is_described_not_raised() -> None:
    hostile = copy.deepcopy(CONV)
    hostile["config"]["layers"][1] = {"class_name": "Lambda", "config": ["not", "an", "object"], "module": ["x"]}
    hostile["config"]["layers"][0]["config"] = "not an object"  # an InputLayer whose shape cannot be read
    summary = summarize(hostile)
    assert "Lambda" in summary.disallowed
    assert summary.input_shapes == ()
    for value in ([[[]]], "text", 3, None):
        described = summarize(value)
        assert not described.is_object and described.params is None
    assert summarize([[[]]]).depth == 3
    assert summarize({"class_name": "Dense"}).disallowed_top == "Dense"
