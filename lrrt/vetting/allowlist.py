"""The allow-list of what an untrusted model JSON may name, checked before Keras ever sees it.

Pure Python on purpose: the API imports it to reject a submission without TensorFlow, and the worker
runs it again (on the raw JSON and on the Keras-3 rewrite of Keras-2 JSON) before `model_from_json`.
Keras's own safe mode has had five bypasses since 2025 (module import, `get_file` gadget, safe-mode
switch-off, `TFSMLayer`, Lambda bytecode), so we never rely on it alone: every dict that names a
class (`class_name`) must be a built-in layer, initializer, regularizer, constraint or dtype policy on
the lists below, from a Keras built-in `module`, with no `registered_name` other than its own; every
activation given by name must be a built-in activation. Anything else is reported, all at once, in
`ModelRejected.extensions["disallowed"]`.

This module holds the lists and the rule for one dict (`node_problems`); `lrrt.vetting.summary` walks
the JSON once and applies it to every dict, and `lrrt.vetting.vet` turns the findings into a verdict.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

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


def kind_of(node: dict[str, Any]) -> str | None:
    """The allow-list kind of a node's class (`layer`, `operation`, `initializer`, ...); None for unknown
    classes and non-string class names (hostile JSON puts lists and objects there, which must be
    reported, not crash a lookup)."""
    name = node.get("class_name")
    if not isinstance(name, str):
        return None
    module = node.get("module")
    if isinstance(module, str) and module in OPERATIONS:  # hostile JSON puts lists there: never hash them
        return "operation"
    return KIND_OF_CLASS.get(name)


def disallowed_top_class(obj: dict[str, Any]) -> str | None:
    """The top-level class as a problem names it when it is not a model class (Sequential, Functional,
    Model), else None: a layer or anything else at the top is not a model `model_from_json` should see."""
    top = obj.get("class_name")
    return None if isinstance(top, str) and top in MODEL_CLASSES else describe(top)


def node_problems(node: dict[str, Any], where: str) -> Iterator[str]:
    """Everything outside the allow-list in one dict of the JSON (`where`: the key it sits under, "" at
    the top, whose `compile_config` the walk hands to `lrrt.vetting.compiled.problems`; a nested model
    carrying one is refused: Keras writes none there).

    Reads only this dict's own keys; the caller walks the JSON (`lrrt.vetting.summary`) and reports
    every problem of every dict at once.
    """
    yield from _class_problems(node)
    for key, value in node.items():
        if isinstance(value, str):
            yield from _string_problems(key, value)
    if where and node.get("compile_config") not in (None, {}):  # the top level's is read by `lrrt.vetting.compiled`
        yield "compile_config of a nested model (Keras compiles from it: save the inner model uncompiled)"
    if where == "activation" and "class_name" in node:
        yield f"activation object {describe(node.get('class_name'))}"
    if "module" in node and "class_name" not in node:
        yield f"module {node['module']!r}"


def _class_problems(node: dict[str, Any]) -> Iterator[str]:
    if "class_name" not in node:
        return
    name = node["class_name"]
    module = node.get("module")
    if isinstance(module, str) and module in OPERATIONS:  # an operation node: only the reviewed ops of its module
        if not isinstance(name, str) or name in NEVER_ALLOWED or name not in OPERATIONS[module]:
            yield f"operation {describe(name)} from module {module!r}"
            return
    elif not isinstance(name, str) or name in NEVER_ALLOWED or name not in KIND_OF_CLASS:
        yield describe(name)
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


def describe(name: Any) -> str:
    """A class name as a problem names it (hostile JSON puts non-strings there)."""
    return name if isinstance(name, str) else repr(name)
