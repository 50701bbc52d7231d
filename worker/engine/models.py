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

from lrrt.problems import CapExceeded, EngineError, ModelInvalid
from lrrt.settings import Settings
from worker.engine.data import TensorSpec
from worker.engine.faults import explained_by_request

MIXED_POLICY = {"module": "keras", "class_name": "DTypePolicy", "config": {"name": "mixed_float16"}, "registered_name": None}


def build_model(config: dict[str, Any], caps: Settings, *, mixed_precision: bool = False) -> keras.Model:
    """Deserialize a vetted config (`lrrt.vetting.vet.vet_model_json`) with safe mode on and check its size.

    Keras consumes a Functional config in place while it deserializes it (the next build of the same
    dict would see `'config': {}`), so every build works on its own deep copy.
    """
    config = with_mixed_precision(config) if mixed_precision else copy.deepcopy(config)
    try:
        model = keras.saving.deserialize_keras_object(config, safe_mode=True)
    except EngineError:
        raise
    except Exception as exc:
        if not explained_by_request(exc):  # our stack failing (an import, XLA): `internal`, never the user's JSON
            raise
        detail = f"Keras could not build the model: {type(exc).__name__}: {_short(exc)}"
        raise ModelInvalid(detail, errors=[{"in": "body", "pointer": "/model", "type": "model", "message": detail}]) from None
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


def input_specs(model: keras.Model) -> list[TensorSpec]:
    """Name, shape (batch axis included) and dtype of each model input, in the model's order."""
    return [TensorSpec(_tensor_name(t), tuple(t.shape), str(t.dtype)) for t in model.inputs]


def output_specs(model: keras.Model) -> list[TensorSpec]:
    """Name (the output layer's, which a loss object and `y_<name>` arrays use) and shape of each output."""
    names = list(getattr(model, "output_names", None) or [_tensor_name(t) for t in model.outputs])
    return [TensorSpec(name, tuple(t.shape), str(t.dtype)) for name, t in zip(names, model.outputs)]


def _tensor_name(tensor: keras.KerasTensor) -> str:
    """The name of the layer that made a symbolic tensor (`keras.Input(name=...)` for inputs)."""
    history = getattr(tensor, "_keras_history", None)
    layer = getattr(history, "operation", None) if history is not None else None
    return str(getattr(layer, "name", None) or tensor.name)


def _short(exc: BaseException, limit: int = 400) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."
