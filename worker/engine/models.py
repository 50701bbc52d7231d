"""Build a Keras model from untrusted JSON: allow-list, Keras 2 rewrite, safe-mode deserialization, caps.

Three layers of defence, in order: our allow-list walk (on the JSON as submitted and on its Keras 3
rewrite), the parameter estimate (so a 10^12-parameter layer is refused before any weight exists),
and Keras's own safe mode, which is passed explicitly and never switched off. The parameter count
after the build is a backstop for the layers the estimate cannot model.
"""

from __future__ import annotations

import copy
from typing import Any

import keras

from worker.core.allowlist import check_model_json, check_params
from worker.core.problems import CapExceeded, EngineError, ModelInvalid
from worker.core.legacy import to_keras3
from worker.core.settings import Settings

MIXED_POLICY = {"module": "keras", "class_name": "DTypePolicy", "config": {"name": "mixed_float16"}, "registered_name": None}


def vet_model_json(model_json: dict[str, Any], caps: Settings) -> dict[str, Any]:
    """The Keras 3 config to build, after every check that needs no Keras; raises EngineError subclasses."""
    check_model_json(model_json, max_depth=caps.max_json_depth, max_layers=caps.max_layers)
    config = to_keras3(model_json)
    check_model_json(config, max_depth=caps.max_json_depth, max_layers=caps.max_layers)
    config.pop("compile_config", None)  # empty (checked above); Keras would compile from it
    check_params(config, max_params=caps.max_params)
    return config


def build_model(config: dict[str, Any], caps: Settings, *, mixed_precision: bool = False) -> keras.Model:
    """Deserialize a vetted config (see `vet_model_json`) with safe mode on and check its size."""
    if mixed_precision:
        config = with_mixed_precision(config)
    try:
        model = keras.saving.deserialize_keras_object(config, safe_mode=True)
    except EngineError:
        raise
    except Exception as exc:  # Keras raises ValueError, TypeError, KeyError... for bad configs
        raise ModelInvalid(f"Keras could not build the model: {type(exc).__name__}: {_short(exc)}") from None
    if not isinstance(model, keras.Model):
        raise ModelInvalid("the JSON did not describe a Keras model")
    if not model.built or not model.inputs:
        raise ModelInvalid("the model has no input shape: start it with an InputLayer (keras.Input) so it can be built")
    params = model.count_params()
    if params > caps.max_params:
        raise CapExceeded(f"the model has {params:,} parameters; the limit is {caps.max_params:,}",
                          cap="max_params", limit=caps.max_params, value=params)
    return model


def with_mixed_precision(config: dict[str, Any]) -> dict[str, Any]:
    """Every layer under mixed_float16 except inputs and the model's last layer, which stays float32.

    A float32 output keeps softmax and the loss numerically stable (Keras's mixed-precision guide).
    Done on the JSON because each layer's serialized `dtype` overrides the global policy.
    """
    config = copy.deepcopy(config)
    layers = config.get("config", {}).get("layers", [])
    for layer in layers[:-1]:
        if isinstance(layer, dict) and layer.get("class_name") != "InputLayer" and isinstance(layer.get("config"), dict):
            layer["config"]["dtype"] = copy.deepcopy(MIXED_POLICY)
    return config


def input_spec(model: keras.Model) -> tuple[tuple[int | None, ...], str]:
    """Shape (batch axis included) and dtype of the model's single input."""
    if len(model.inputs) != 1:
        raise ModelInvalid(f"the model has {len(model.inputs)} inputs; a range test needs exactly one")
    tensor = model.inputs[0]
    return tuple(tensor.shape), str(tensor.dtype)


def _short(exc: BaseException, limit: int = 400) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."
