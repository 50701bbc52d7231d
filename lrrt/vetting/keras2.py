"""Rewrite Keras 2 / tf.keras 2.x `to_json()` output onto Keras 3 names and fields.

Keras 3.15's `model_from_json` refuses tf.keras 2.12 and 2.15 JSON as it is ("Could not locate class
'Sequential'"): the objects lack `module`, inputs are declared by `batch_input_shape` on the first
layer, `Model` was the Functional class name, and a few layer arguments were removed. This module
maps those onto Keras 3 without importing Keras (pure dict surgery, safe on untrusted input: it only
copies and renames). The allow-list check runs on its output as well as on its input.
"""

from __future__ import annotations

import copy
from typing import Any

#: Keras 2 layer arguments that Keras 3 no longer accepts, dropped when present.
REMOVED_ARGS: dict[str, frozenset[str]] = {
    "BatchNormalization": frozenset({"renorm", "renorm_clipping", "renorm_momentum", "fused", "virtual_batch_size", "adjustment"}),
    "Embedding": frozenset({"input_length"}),
    "LSTM": frozenset({"time_major", "implementation"}),
    "GRU": frozenset({"time_major", "implementation"}),
    "SimpleRNN": frozenset({"time_major"}),
}
#: Layers whose `axis` Keras 2 serialized as a one-element list after build and Keras 3 wants as an int.
SINGLE_AXIS = frozenset({"BatchNormalization"})
#: Layers whose `input_dim` is a size of their own (the vocabulary), not a declaration of the input shape.
VOCABULARY_LAYERS = frozenset({"Embedding"})
#: Arguments every Keras 2 layer could carry to declare its input; Keras 3 wants an InputLayer.
INPUT_ARGS = ("batch_input_shape", "input_shape", "input_dim")
OBJECT_MODULES = {
    "_initializer": "keras.initializers",
    "_regularizer": "keras.regularizers",
    "_constraint": "keras.constraints",
}


def is_legacy(obj: dict[str, Any]) -> bool:
    """Keras 2 JSON: a 2.x `keras_version`, no `module` on the model, or inputs given the Keras 2 way."""
    version = str(obj.get("keras_version", ""))
    if version.startswith(("2.", "1.")):
        return True
    if "module" not in obj or obj.get("class_name") == "Model":
        return True
    layers = obj.get("config", {}).get("layers", []) if isinstance(obj.get("config"), dict) else []
    return any(isinstance(layer, dict) and any(k in layer.get("config", {}) for k in INPUT_ARGS) for layer in layers)


def to_keras3(obj: dict[str, Any]) -> dict[str, Any]:
    """A Keras 3 model JSON equivalent to `obj` (returned unchanged, as a copy, when it is already Keras 3)."""
    model = copy.deepcopy(obj)
    if is_legacy(obj):
        _rewrite_model(model)
    return model


def _rewrite_model(model: dict[str, Any]) -> None:
    for key in ("keras_version", "backend"):
        model.pop(key, None)
    if model.get("class_name") == "Model":
        model["class_name"] = "Functional"
    if model.get("class_name") == "Functional":
        model.setdefault("module", "keras.src.models.functional")
        model.setdefault("registered_name", "Functional")
    else:
        model.setdefault("module", "keras")
        model.setdefault("registered_name", None)
    config = model.get("config")
    if not isinstance(config, dict) or not isinstance(config.get("layers"), list):
        return
    _rewrite_dtype(config)
    layers: list[Any] = []
    for layer in config["layers"]:
        if not isinstance(layer, dict):
            layers.append(layer)
            continue
        if layer.get("class_name") in ("Sequential", "Functional", "Model"):
            _rewrite_model(layer)
            layers.append(layer)
            continue
        input_layer = _rewrite_layer(layer, first=not layers, sequential=model.get("class_name") == "Sequential")
        if input_layer is not None:
            layers.append(input_layer)
        layers.append(layer)
    config["layers"] = layers


def _rewrite_layer(layer: dict[str, Any], *, first: bool, sequential: bool) -> dict[str, Any] | None:
    """Rewrite one layer in place; return the InputLayer a Keras 2 Sequential declared implicitly, if any."""
    name = layer.get("class_name")
    layer.setdefault("module", "keras.layers")
    layer.setdefault("registered_name", None)
    config = layer.get("config")
    if not isinstance(config, dict):
        return None
    _rewrite_dtype(config)
    batch_shape = _batch_shape(config, name)  # before REMOVED_ARGS drops Embedding's input_length
    for key in REMOVED_ARGS.get(str(name), ()):
        config.pop(key, None)
    axis = config.get("axis")
    if name in SINGLE_AXIS and isinstance(axis, list) and len(axis) == 1:
        config["axis"] = axis[0]
    for key, value in config.items():
        suffix = next((s for s in OBJECT_MODULES if key.endswith(s)), None)
        if suffix and isinstance(value, dict) and "class_name" in value:
            value.setdefault("module", OBJECT_MODULES[suffix])
            value.setdefault("registered_name", None)
        if key in ("layer", "cell", "forward_layer", "backward_layer") and isinstance(value, dict):
            _rewrite_layer(value, first=False, sequential=False)
    for key in INPUT_ARGS:
        if not (key == "input_dim" and name in VOCABULARY_LAYERS):  # Embedding's input_dim is its vocabulary
            config.pop(key, None)
    if name == "InputLayer":
        if batch_shape is not None:
            config["batch_shape"] = batch_shape
        return None
    if batch_shape is not None and first and sequential:
        return {
            "module": "keras.layers",
            "class_name": "InputLayer",
            "config": {"batch_shape": batch_shape,
                       "dtype": "int32" if name in VOCABULARY_LAYERS else _input_dtype(config.get("dtype")),
                       "name": f"{config.get('name', 'layer')}_input"},
            "registered_name": None,
        }
    return None


def _batch_shape(config: dict[str, Any], name: Any = None) -> list[Any] | None:
    if name in VOCABULARY_LAYERS:  # input_dim is the vocabulary; input_length (removed in Keras 3) the shape
        length = config.get("input_length")
        if isinstance(config.get("batch_input_shape"), list):
            return list(config["batch_input_shape"])
        return [None, length] if isinstance(length, int) else None
    if isinstance(config.get("batch_input_shape"), list):
        return list(config["batch_input_shape"])
    if isinstance(config.get("batch_shape"), list):
        return list(config["batch_shape"])
    if isinstance(config.get("input_shape"), list):
        return [None, *config["input_shape"]]
    if isinstance(config.get("input_dim"), int):
        return [None, config["input_dim"]]
    return None


def _rewrite_dtype(config: dict[str, Any]) -> None:
    """tf.keras 2.x mixed-precision `Policy` objects become Keras 3 `DTypePolicy` objects."""
    dtype = config.get("dtype")
    if isinstance(dtype, dict) and dtype.get("class_name") == "Policy":
        config["dtype"] = {"module": "keras", "class_name": "DTypePolicy",
                           "config": {"name": _dtype_name(dtype)}, "registered_name": None}


def _dtype_name(dtype: Any) -> str | None:
    if isinstance(dtype, str):
        return dtype
    if isinstance(dtype, dict) and isinstance(dtype.get("config"), dict):
        name = dtype["config"].get("name")
        return name if isinstance(name, str) else None
    return None


def _input_dtype(layer_dtype: Any) -> str:
    """The dtype of an implicit input: the layer's variable dtype (float32 under a mixed policy)."""
    name = _dtype_name(layer_dtype)
    return "float32" if not name or name.startswith("mixed") else name
