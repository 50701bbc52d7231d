"""How many parameters a model JSON asks for, predicted from its config before any weight exists.

So that a JSON asking for a 10^12-parameter layer is refused (`max_params`) before the worker allocates
anything, and so that routing can name the model's size. Pure Python, like the allow-list: it reads
dicts, lists and numbers, and gives up (None) rather than guess.
"""

from __future__ import annotations

import math
from typing import Any

from lrrt.vetting.allowlist import MODEL_CLASSES, kind_of
from lrrt.vetting.shapes import Shape, declared_shape, known_dims


def estimate_params(obj: dict[str, Any]) -> int | None:
    """Predict trainable + non-trainable parameters from the config alone, or None when it cannot tell.

    Shapes come from each layer's `build_config.input_shape` (Keras 3 writes it for every built
    layer) or are propagated through a Sequential stack from its `InputLayer` / `batch_input_shape`.
    Layers whose weights do not depend on the input (Embedding) count even when shapes are unknown.
    The estimate is exact for the layers below and None as soon as a weight-bearing layer's input is
    unknown or its kind is not modelled; the worker then checks the count after building instead.
    """
    try:
        return _estimate_model(obj, None)
    except (KeyError, TypeError, ValueError, IndexError, ZeroDivisionError, OverflowError, AttributeError, RecursionError):
        return None  # a config this estimate does not understand: the worker counts after building


def certain_params(node: dict[str, Any]) -> int:
    """Parameters one node certainly has from its config alone (an Embedding's table, a Dense layer's units):
    summed over the model, the lower bound the cap is checked against when `estimate_params` cannot tell."""
    raw = node.get("config")
    config: dict[str, Any] = raw if isinstance(raw, dict) else {}
    name = node.get("class_name")
    if name == "Embedding":
        return _int(config.get("input_dim")) * _int(config.get("output_dim"))
    if name == "Dense":
        return _int(config.get("units"))
    return 0


def _int(value: Any) -> int:
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) else 0


def _estimate_model(obj: dict[str, Any], shape: Shape | None) -> int | None:
    layers = obj["config"]["layers"]
    sequential = obj["class_name"] == "Sequential"
    total = 0
    for layer in layers:
        given = declared_shape(layer)
        inbound = given if given is not None else (shape if sequential else None)
        if layer.get("class_name") in MODEL_CLASSES:
            count = _estimate_model(layer, inbound)
            out = None
        else:
            count, out = _layer_params(layer, inbound)
        if count is None:
            return None
        total += count
        shape = out
    return total


_PASS_THROUGH = frozenset(
    {"Activation", "Dropout", "SpatialDropout1D", "SpatialDropout2D", "SpatialDropout3D", "GaussianNoise",
     "GaussianDropout", "AlphaDropout", "ActivityRegularization", "ReLU", "LeakyReLU", "ELU", "Softmax",
     "Identity", "Masking", "Rescaling", "UnitNormalization", "InputLayer"}
)
#: Layers with no weights whose output shape is not modelled (propagation stops, counting goes on).
_NO_WEIGHTS = frozenset({"Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum", "Concatenate", "Dot",
                         "Permute", "RepeatVector", "ZeroPadding1D", "ZeroPadding2D", "ZeroPadding3D",
                         "Cropping1D", "Cropping2D", "Cropping3D", "UpSampling1D", "UpSampling2D", "UpSampling3D"})
_CONV = frozenset({"Conv1D", "Conv2D", "Conv3D"})
#: Weightless layers that change the shape in ways the estimate does not follow.
_NO_WEIGHTS_RESHAPING = frozenset({"CustomScaleLayer", "Resizing", "CenterCrop", "RandomCrop", "RandomZoom",
                                   "RandomRotation", "RandomTranslation", "RandomFlip", "RandomContrast",
                                   "RandomBrightness"})


def _layer_params(layer: dict[str, Any], shape: Shape | None) -> tuple[int | None, Shape | None]:
    """(parameters, output shape) of one layer; output None when not modelled (stops propagation)."""
    name = layer.get("class_name")
    c = layer.get("config", {})
    if kind_of(layer) == "operation" or name in _NO_WEIGHTS_RESHAPING:
        return 0, None
    if name == "LayerScale":
        return int(c["projection_dim"]), shape
    if name == "Embedding":
        return int(c["input_dim"]) * int(c["output_dim"]), None
    if name in _PASS_THROUGH:
        return 0, shape
    if name in _NO_WEIGHTS:
        return 0, None
    if name == "Reshape":
        return 0, (None, *c["target_shape"])
    if isinstance(name, str) and "Pooling" in name:
        return 0, _pool_shape(name, c, shape)
    if shape is None:
        return None, None
    if name == "Flatten":
        row = known_dims(shape[1:])
        return 0, (shape[0], None if row is None else math.prod(row))
    if shape[-1] is None or c.get("data_format") == "channels_first":
        return None, None
    features = int(shape[-1])
    if name == "Dense":
        units = int(c["units"])
        return features * units + (units if c.get("use_bias", True) else 0), (*shape[:-1], units)
    if name in _CONV or name in {"Conv1DTranspose", "Conv2DTranspose", "Conv3DTranspose"}:
        kernel = _kernel_volume(name, c["kernel_size"])
        filters = int(c["filters"])
        groups = int(c.get("groups", 1) or 1)
        out = _window_shape(shape, c["kernel_size"], c.get("strides", 1), c.get("padding", "valid"),
                            c.get("dilation_rate", 1), filters) if name in _CONV else None
        return kernel * (features // groups) * filters + (filters if c.get("use_bias", True) else 0), out
    if name in ("DepthwiseConv1D", "DepthwiseConv2D", "SeparableConv1D", "SeparableConv2D"):
        kernel = _kernel_volume(name, c["kernel_size"])
        depth = features * int(c.get("depth_multiplier", 1) or 1)
        if name.startswith("Depthwise"):
            return kernel * depth + (depth if c.get("use_bias", True) else 0), None
        filters = int(c["filters"])
        return kernel * depth + depth * filters + (filters if c.get("use_bias", True) else 0), None
    if name == "Normalization":
        if c.get("mean") is not None and c.get("variance") is not None:
            return 0, shape  # given statistics are constants, not weights
        axis = c.get("axis", -1)
        if axis not in (-1, [-1], len(shape) - 1, [len(shape) - 1]):
            return None, None
        return 2 * features + 1, shape  # mean, variance and the sample count, kept as weights for adapt()
    if name == "BatchNormalization":
        return (2 + bool(c.get("center", True)) + bool(c.get("scale", True))) * features, shape
    if name in ("LayerNormalization", "GroupNormalization"):
        return 2 * features, shape
    if name == "PReLU":
        return math.prod(d for d in shape[1:] if d is not None), shape
    return None, None


def _pool_shape(name: str, c: dict[str, Any], shape: Shape | None) -> Shape | None:
    if shape is None or c.get("data_format") == "channels_first":
        return None
    if name.startswith("Global"):
        return None if c.get("keepdims") else (shape[0], shape[-1])
    pool = c.get("pool_size", 2)
    return _window_shape(shape, pool, c.get("strides") or pool, c.get("padding", "valid"), 1, shape[-1])


def _window_shape(shape: Shape, kernel: Any, strides: Any, padding: str, dilation: Any, channels: int | None) -> Shape:
    """Output shape of a channels-last sliding window (convolution or pooling)."""
    spatial = shape[1:-1]
    kernels, stride, dil = (_ints(v) * (len(spatial) if not isinstance(v, list) else 1) for v in (kernel, strides, dilation))
    out: list[int | None] = []
    for size, k, s, d in zip(spatial, kernels, stride, dil):
        if size is None:
            out.append(None)
        elif padding == "same":
            out.append(-(-size // s))
        else:
            out.append((size - (k - 1) * d - 1) // s + 1)
    return (shape[0], *out, channels)


def _kernel_volume(name: str, kernel_size: Any) -> int:
    """Weights per input and output channel of a convolution's kernel. Keras writes `kernel_size` as a
    list; a hand-written JSON may give one int, which means that size along each of the layer's axes."""
    if isinstance(kernel_size, list):
        return math.prod(_ints(kernel_size))
    rank = int(name[name.rindex("D") - 1])  # Conv2D, DepthwiseConv1D, Conv3DTranspose: the digit before the last D
    return int(kernel_size) ** rank


def _ints(value: Any) -> list[int]:
    return [int(v) for v in value] if isinstance(value, list) else [int(value)]
