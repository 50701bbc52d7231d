"""The allow-list walk of an untrusted model JSON, run before Keras ever sees it.

Pure Python on purpose: the API imports it to reject a submission without TensorFlow, and the worker
runs it again (on the raw JSON and on the Keras-3 rewrite of Keras-2 JSON) before `model_from_json`.
Keras's own safe mode has had five bypasses since 2025 (module import, `get_file` gadget, safe-mode
switch-off, `TFSMLayer`, Lambda bytecode), so we never rely on it alone: every dict that names a
class (`class_name`) must be a built-in layer, initializer, regularizer, constraint or dtype policy on
the lists below, from a Keras built-in `module`, with no `registered_name` other than its own; every
activation given by name must be a built-in activation. Anything else is reported, all at once, in
`ModelRejected.extensions["disallowed"]`.

`estimate_params` predicts the parameter count from the config (shape propagation for the common
layers), so that a JSON asking for a 10^12-parameter layer is refused before any weight is allocated.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

from lrrt.problems import CapExceeded, ModelRejected

MODEL_CLASSES = frozenset({"Sequential", "Functional", "Model"})

LAYER_CLASSES = frozenset(
    {
        # core
        "InputLayer", "Dense", "EinsumDense", "Activation", "Dropout", "Flatten", "Reshape", "Permute",
        "RepeatVector", "Identity", "Masking", "Embedding", "Rescaling",
        # convolution
        "Conv1D", "Conv2D", "Conv3D", "Conv1DTranspose", "Conv2DTranspose", "Conv3DTranspose",
        "SeparableConv1D", "SeparableConv2D", "DepthwiseConv1D", "DepthwiseConv2D",
        # pooling
        "MaxPooling1D", "MaxPooling2D", "MaxPooling3D", "AveragePooling1D", "AveragePooling2D",
        "AveragePooling3D", "GlobalMaxPooling1D", "GlobalMaxPooling2D", "GlobalMaxPooling3D",
        "GlobalAveragePooling1D", "GlobalAveragePooling2D", "GlobalAveragePooling3D",
        # normalization
        "BatchNormalization", "LayerNormalization", "GroupNormalization", "UnitNormalization",
        # regularization
        "SpatialDropout1D", "SpatialDropout2D", "SpatialDropout3D", "GaussianNoise", "GaussianDropout",
        "AlphaDropout", "ActivityRegularization",
        # activation layers
        "ReLU", "LeakyReLU", "PReLU", "ELU", "Softmax",
        # reshaping
        "ZeroPadding1D", "ZeroPadding2D", "ZeroPadding3D", "Cropping1D", "Cropping2D", "Cropping3D",
        "UpSampling1D", "UpSampling2D", "UpSampling3D",
        # merging
        "Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum", "Concatenate", "Dot",
        # recurrent and attention
        "LSTM", "GRU", "SimpleRNN", "Bidirectional", "TimeDistributed",
        "MultiHeadAttention", "Attention", "AdditiveAttention",
        # preprocessing and augmentation that compute on tensors only (no vocabulary files, no lookups):
        # EfficientNet and ConvNeXt start with Normalization; image models often with Resizing/Random*
        "Normalization", "Resizing", "CenterCrop", "RandomFlip", "RandomRotation", "RandomTranslation",
        "RandomZoom", "RandomContrast", "RandomCrop", "RandomBrightness",
    }
)

#: Layers `keras.applications` defines for itself (not exported as `keras.layers`), by the one module
#: each may come from. Reviewed: LayerScale multiplies by a weight vector (ConvNeXt); CustomScaleLayer
#: computes x[0] + x[1] * scale (InceptionResNetV2). Neither takes a function, a path or an object.
APPLICATION_LAYERS: dict[str, str] = {
    "LayerScale": "keras.src.applications.convnext",
    "CustomScaleLayer": "keras.src.applications.inception_resnet_v2",
}

#: Operation nodes of a Functional graph (`x + y`, `keras.ops.relu(h)` serialize as the op's class from
#: its `keras.src.ops.*` module), by module. Reviewed for the Keras CVEs (DESIGN notes): each is a pure
#: tensor computation whose config holds only numbers, strings, shapes and dtypes. Never listed: ops
#: that take a function (`Cond`, `Map`, `Scan`, `WhileLoop`, `ForiLoop`, `Switch`, `VectorizedMap`,
#: `AssociativeScan`), build tensors from nothing (`Arange`, `Full`, ...), or have data-dependent shapes.
OPERATIONS: dict[str, frozenset[str]] = {
    "keras.src.ops.numpy": frozenset(
        {
            "Abs", "Absolute", "Add", "All", "Any", "Amax", "Amin", "Arccos", "Arcsin", "Arctan", "Arctan2",
            "Argmax", "Argmin", "Argsort", "Average", "BroadcastTo", "Ceil", "Clip", "Concatenate", "Cos",
            "Cosh", "Cumprod", "Cumsum", "Divide", "DivideNoNan", "Dot", "Einsum", "Equal", "Exp", "Exp2",
            "ExpandDims", "Expm1", "Flip", "Floor", "FloorDivide", "GetItem", "Greater", "GreaterEqual",
            "Hstack", "Less", "LessEqual", "Log", "Log10", "Log1p", "Log2", "Logaddexp", "LogicalAnd",
            "LogicalNot", "LogicalOr", "Matmul", "Max", "Maximum", "Mean", "Min", "Minimum", "Mod", "Moveaxis",
            "Multiply", "NanToNum", "Negative", "NotEqual", "OnesLike", "Pad", "Power", "Prod", "Ravel",
            "Reciprocal", "Repeat", "Reshape", "Roll", "Round", "Sign", "Sin", "Sinh", "Sort", "Split", "Sqrt",
            "Square", "Squeeze", "Stack", "Std", "Subtract", "Sum", "Swapaxes", "Take", "TakeAlongAxis", "Tan",
            "Tanh", "Tensordot", "Tile", "Transpose", "Tril", "Triu", "TrueDivide", "Var", "Vstack", "Where",
            "ZerosLike",
        }
    ),
    "keras.src.ops.nn": frozenset(
        {
            "AveragePool", "Celu", "DotProductAttention", "Elu", "Gelu", "Glu", "HardShrink", "HardSigmoid",
            "HardSilu", "HardTanh", "LayerNorm", "LeakyRelu", "LogSigmoid", "LogSoftmax", "MaxPool", "Moments",
            "Normalize", "OneHot", "RMSNorm", "Relu", "Relu6", "Selu", "Sigmoid", "Silu", "SoftShrink", "Softmax",
            "Softplus", "Softsign", "SparsePlus", "Sparsemax", "Squareplus", "TanhShrink", "Threshold",
        }
    ),
    "keras.src.ops.math": frozenset({"Erf", "Erfc", "Logsumexp", "Rsqrt"}),
    "keras.src.ops.core": frozenset({"Cast", "ConvertToTensor", "Slice", "StopGradient"}),
    "keras.src.ops.image": frozenset({"Resize"}),
}
#: How `GetItem` nodes (`x[:, 0]`, `x[..., 1:]`) serialize their index: plain values, no code.
INDEX_MARKERS = frozenset({"__slice__", "__ellipsis__"})

INITIALIZER_CLASSES = frozenset(
    {
        "Zeros", "Ones", "Constant", "RandomNormal", "RandomUniform", "TruncatedNormal", "GlorotUniform",
        "GlorotNormal", "HeUniform", "HeNormal", "LecunUniform", "LecunNormal", "Orthogonal",
        "Identity", "VarianceScaling",
    }
)
REGULARIZER_CLASSES = frozenset({"L1", "L2", "L1L2", "OrthogonalRegularizer"})
CONSTRAINT_CLASSES = frozenset({"MaxNorm", "MinMaxNorm", "NonNeg", "UnitNorm"})
#: `Policy` is tf.keras 2.x's name, rewritten by `legacy` to `DTypePolicy`.
DTYPE_POLICY_CLASSES = frozenset({"DTypePolicy", "FloatDTypePolicy", "Policy"})
#: Functional graphs reference tensors by this marker; it carries only shape, dtype and history.
KERAS_TENSOR = "__keras_tensor__"

ACTIVATION_NAMES = frozenset(
    {
        "linear", "relu", "relu6", "leaky_relu", "elu", "selu", "celu", "gelu", "glu", "silu", "swish",
        "mish", "sigmoid", "hard_sigmoid", "hard_silu", "hard_swish", "log_sigmoid", "softmax",
        "log_softmax", "softplus", "softsign", "sparse_plus", "squareplus", "tanh", "tanh_shrink",
        "hard_tanh", "exponential", "sparsemax", "soft_shrink", "hard_shrink", "threshold",
    }
)
#: Names Keras accepts for initializers/regularizers/constraints given as strings.
STRING_ALIASES = {
    "initializer": frozenset(
        {
            "zeros", "ones", "constant", "random_normal", "random_uniform", "truncated_normal",
            "glorot_uniform", "glorot_normal", "he_uniform", "he_normal", "lecun_uniform", "lecun_normal",
            "orthogonal", "identity", "variance_scaling",
        }
    ),
    "regularizer": frozenset({"l1", "l2", "l1_l2", "orthogonal_regularizer"}),
    "constraint": frozenset({"max_norm", "min_max_norm", "non_neg", "unit_norm"}),
}

#: Which `module` values may accompany a class of each kind (None: absent, as in Keras 2 JSON).
ALLOWED_MODULES: dict[str, frozenset[str | None]] = {
    "model": frozenset({None, "keras", "keras.models", "keras.src.models.functional",
                        "keras.src.models.sequential", "keras.src.models.model"}),
    "layer": frozenset({None, "keras.layers"}),
    "initializer": frozenset({None, "keras.initializers"}),
    "regularizer": frozenset({None, "keras.regularizers"}),
    "constraint": frozenset({None, "keras.constraints"}),
    "dtype": frozenset({None, "keras", "keras.dtype_policies"}),
    "tensor": frozenset({None}),
    "index": frozenset({None}),
}
KIND_OF_CLASS: dict[str, str] = {
    **{name: "layer" for name in LAYER_CLASSES},
    **{name: "initializer" for name in INITIALIZER_CLASSES - LAYER_CLASSES},
    **{name: "regularizer" for name in REGULARIZER_CLASSES},
    **{name: "constraint" for name in CONSTRAINT_CLASSES},
    **{name: "dtype" for name in DTYPE_POLICY_CLASSES},
    **{name: "model" for name in MODEL_CLASSES},
    **{name: "application layer" for name in APPLICATION_LAYERS},
    **{name: "index" for name in INDEX_MARKERS},
    KERAS_TENSOR: "tensor",
}
#: `Identity` is both a layer and an initializer; its module tells which.
DUAL_KIND = {"Identity": ("layer", "initializer")}

#: Named because a reviewer searching the code for them should find the reason they are refused.
NEVER_ALLOWED = frozenset(
    {"Lambda", "TFSMLayer", "TorchModuleWrapper", "JaxLayer", "FlaxLayer", "__lambda__", "function",
     "__function__", "TextVectorization", "StringLookup", "IntegerLookup"}
)


def check_model_json(obj: dict[str, Any], *, max_depth: int = 64, max_layers: int = 1200) -> None:
    """Raise `CapExceeded` or `ModelRejected` unless `obj` uses only allowed Keras built-ins.

    Runs no code from the payload and imports nothing: it only reads dicts, lists and strings.
    `compile_config` is refused unless empty (an uncompiled Functional model's `to_json()` carries
    `{}`), because Keras compiles from it, which deserializes losses and metrics.
    """
    if not isinstance(obj, dict):
        raise ModelRejected("the model must be a JSON object as returned by model.to_json()", disallowed=["<not an object>"])
    depth = json_depth(obj)
    if depth > max_depth:
        raise CapExceeded(f"the model JSON nests {depth} levels deep; the limit is {max_depth}",
                          cap="max_json_depth", limit=max_depth, value=depth)
    top = obj.get("class_name")
    if not isinstance(top, str) or top not in MODEL_CLASSES:
        raise ModelRejected(
            f"the top-level class must be one of {sorted(MODEL_CLASSES)}, got {top!r}",
            disallowed=[_describe(top)],
        )
    layers = count_layers(obj)
    if layers > max_layers:
        raise CapExceeded(f"the model has {layers} layers; the limit is {max_layers}",
                          cap="max_layers", limit=max_layers, value=layers)
    problems = sorted(set(_problems(obj)))
    if problems:
        raise ModelRejected(
            "the model uses classes or settings outside the allow-list of built-in Keras layers: "
            + ", ".join(problems),
            disallowed=problems,
        )


def json_depth(value: Any) -> int:
    """Nesting depth of dicts and lists, iteratively (a hostile JSON must not hit Python's recursion limit)."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            deepest = max(deepest, depth)
            stack.extend((child, depth + 1) for child in item.values())
        elif isinstance(item, list):
            deepest = max(deepest, depth)
            stack.extend((child, depth + 1) for child in item)
    return deepest


def count_layers(obj: dict[str, Any]) -> int:
    """Layers in the model, nested models' layers included (each nested model counts once too)."""
    return sum(1 for node, _ in _walk(obj) if _kind(node) in ("layer", "model", "operation", "application layer")) - 1


def layer_classes(obj: dict[str, Any]) -> set[str]:
    """Every class name the model JSON uses (layers of nested models included), for rules that look at a model's kind."""
    return {node["class_name"] for node, _ in _walk(obj) if isinstance(node.get("class_name"), str)}


def input_shapes(obj: dict[str, Any]) -> list[tuple[int | None, ...]]:
    """The declared input shapes (batch dimension first) of the model's `InputLayer`s, where the JSON gives them."""
    return [shape for node, _ in _walk(obj) if node.get("class_name") == "InputLayer"
            for shape in [_build_shape(node)] if shape is not None]


def _kind(node: dict[str, Any]) -> str | None:
    """The allow-list kind of a node's class; None for unknown classes and non-string class names
    (hostile JSON puts lists and objects there, which must be reported, not crash a lookup)."""
    name = node.get("class_name")
    if not isinstance(name, str):
        return None
    module = node.get("module")
    if isinstance(module, str) and module in OPERATIONS:  # hostile JSON puts lists there: never hash them
        return "operation"
    return KIND_OF_CLASS.get(name)


def _walk(value: Any, key: str = "") -> Iterator[tuple[dict[str, Any], str]]:
    """Every dict in the JSON with the key it sits under (iterative: depth is capped, but be safe)."""
    stack: list[tuple[Any, str]] = [(value, key)]
    while stack:
        item, where = stack.pop()
        if isinstance(item, dict):
            yield item, where
            stack.extend((child, k) for k, child in item.items())
        elif isinstance(item, list):
            stack.extend((child, where) for child in item)


def _problems(obj: dict[str, Any]) -> Iterator[str]:
    for node, where in _walk(obj):
        yield from _class_problems(node)
        for key, value in node.items():
            if isinstance(value, str):
                yield from _string_problems(key, value)
        compile_config = node.get("compile_config")
        if compile_config not in (None, {}):
            yield "compile_config"
        if where == "activation" and "class_name" in node:
            yield f"activation object {_describe(node.get('class_name'))}"
    for node, _ in _walk(obj):
        if "module" in node and "class_name" not in node:
            yield f"module {node['module']!r}"


def _class_problems(node: dict[str, Any]) -> Iterator[str]:
    if "class_name" not in node:
        return
    name = node["class_name"]
    module = node.get("module")
    if isinstance(module, str) and module in OPERATIONS:  # an operation node: only the reviewed ops of its module
        if not isinstance(name, str) or name in NEVER_ALLOWED or name not in OPERATIONS[module]:
            yield f"operation {_describe(name)} from module {module!r}"
            return
    elif not isinstance(name, str) or name in NEVER_ALLOWED or name not in KIND_OF_CLASS:
        yield _describe(name)
        return
    elif name in APPLICATION_LAYERS:
        if module != APPLICATION_LAYERS[name]:
            yield f"{name} from module {module!r}"
    else:
        kinds = DUAL_KIND.get(name, (KIND_OF_CLASS[name],))
        if not (module is None or isinstance(module, str)) or not any(module in ALLOWED_MODULES[kind] for kind in kinds):
            yield f"{name} from module {module!r}"
    registered = node.get("registered_name")
    if registered not in (None, name):
        yield f"{name} registered as {registered!r}"
    config = node.get("config", {})
    if config is not None and not isinstance(config, dict):
        yield f"{name} with a non-object config"
    elif isinstance(config, dict) and config.get("quantization_config") is not None:
        yield f"{name} with quantization_config"
    if name in MODEL_CLASSES and isinstance(config, dict):
        layers = config.get("layers", [])
        if not isinstance(layers, list) or not all(isinstance(layer, dict) for layer in layers):
            yield f"{name} whose layers are not a list of layer objects"


def _string_problems(key: str, value: str) -> Iterator[str]:
    """Strings Keras resolves to objects by name: activations, and initializers & co given by alias."""
    if key in ("activation", "recurrent_activation") and value not in ACTIVATION_NAMES:
        yield f"activation {value!r}"
    for kind, aliases in STRING_ALIASES.items():
        if key.endswith("_" + kind) and _snake(value) not in aliases and value not in _classes_of(kind):
            yield f"{kind} {value!r}"
    if key == "module" and not (value == "keras" or value.startswith("keras.")):
        yield f"module {value!r}"


def _classes_of(kind: str) -> frozenset[str]:
    return frozenset(name for name, k in KIND_OF_CLASS.items() if k == kind)


def _snake(name: str) -> str:
    return "".join("_" + c.lower() if c.isupper() else c for c in name).lstrip("_")


def _describe(name: Any) -> str:
    return name if isinstance(name, str) else repr(name)


# --------------------------------------------------------------------------- parameter estimate

Shape = tuple[int | None, ...]


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
    except (KeyError, TypeError, ValueError, IndexError, ZeroDivisionError, OverflowError, AttributeError):
        return None  # a config this estimate does not understand: the worker counts after building


def check_params(obj: dict[str, Any], *, max_params: int) -> None:
    """Raise `CapExceeded` when the estimate (or, failing one, the certain lower bound) is over the cap."""
    estimate = estimate_params(obj)
    known = estimate if estimate is not None else lower_bound_params(obj)
    if known > max_params:
        raise CapExceeded(
            f"the model would have {'' if estimate is not None else 'at least '}{known:,} parameters; "
            f"the limit is {max_params:,}. Use a smaller model.",
            cap="max_params", limit=max_params, value=known,
        )


def lower_bound_params(obj: dict[str, Any]) -> int:
    """Parameters that are certain from configs alone (Embedding tables, Dense units); used when the estimate is None."""
    total = 0
    for node, _ in _walk(obj):
        raw = node.get("config")
        config: dict[str, Any] = raw if isinstance(raw, dict) else {}
        name = node.get("class_name")
        if name == "Embedding":
            total += _int(config.get("input_dim")) * _int(config.get("output_dim"))
        elif name == "Dense":
            total += _int(config.get("units"))
    return total


def _int(value: Any) -> int:
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) else 0


def _estimate_model(obj: dict[str, Any], shape: Shape | None) -> int | None:
    layers = obj["config"]["layers"]
    sequential = obj["class_name"] == "Sequential"
    total = 0
    for layer in layers:
        given = _build_shape(layer)
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


def _build_shape(layer: dict[str, Any]) -> Shape | None:
    config = layer.get("config", {})
    for key in ("batch_shape", "batch_input_shape"):
        if isinstance(config.get(key), list):
            return tuple(config[key])
    build = layer.get("build_config") or {}
    shape = build.get("input_shape")
    if isinstance(shape, list) and shape and all(d is None or isinstance(d, int) for d in shape):
        return tuple(shape)
    return None


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
    if _kind(layer) == "operation" or name in _NO_WEIGHTS_RESHAPING:
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
        kernel = math.prod(_ints(c["kernel_size"]))
        filters = int(c["filters"])
        groups = int(c.get("groups", 1) or 1)
        out = _window_shape(shape, c["kernel_size"], c.get("strides", 1), c.get("padding", "valid"),
                            c.get("dilation_rate", 1), filters) if name in _CONV else None
        return kernel * (features // groups) * filters + (filters if c.get("use_bias", True) else 0), out
    if name in ("DepthwiseConv1D", "DepthwiseConv2D", "SeparableConv1D", "SeparableConv2D"):
        kernel = math.prod(_ints(c["kernel_size"]))
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


def known_dims(dims: Shape) -> tuple[int, ...] | None:
    """`dims` when every one is known, else None (a None dimension: not modelled here, any size in a target)."""
    known = tuple(d for d in dims if d is not None)
    return known if len(known) == len(dims) else None


def _ints(value: Any) -> list[int]:
    return [int(v) for v in value] if isinstance(value, list) else [int(value)]
