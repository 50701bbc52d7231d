"""What one layer (or operation node) of a model JSON makes of its input shapes: its parameters and its
output shapes, from its config alone (`rule`).

The graph walk (`lrrt.vetting.estimate`) applies `rule` to every layer call, so the parameter count and
the activation sizes come from one place. Shapes are channels-last, batch first, None where unknown; a
rule keeps every dimension it can and leaves the rest None, so one unknown size never hides the others
(a `Resizing(8192, 8192)` after an unmodelled layer still reads as 8192 x 8192 x ?). Parameters are None
as soon as a weight-bearing layer's input width is unknown or its kind is not modelled.

Pure Python on untrusted configs: a rule may raise (a string where a number goes, a zero stride); the walk
catches that and treats the layer as not modelled. Nothing here allocates anything sized by the JSON.
"""

from __future__ import annotations

import math
from typing import Any

from lrrt.vetting.allowlist import kind_of
from lrrt.vetting.shapes import Shape

#: (parameters or None, one shape per output; a None shape: not modelled).
Rule = tuple[int | None, list[Shape | None]]

#: Layers without weights whose output has their input's shape (augmentation included: Random* layers
#: keep shapes; CenterCrop/RandomCrop/Resizing do not and have rules of their own).
_SAME_SHAPE = frozenset(
    {"Activation", "Dropout", "SpatialDropout1D", "SpatialDropout2D", "SpatialDropout3D", "GaussianNoise",
     "GaussianDropout", "AlphaDropout", "ActivityRegularization", "ReLU", "LeakyReLU", "ELU", "Softmax",
     "Identity", "Masking", "Rescaling", "UnitNormalization", "InputLayer", "RandomFlip", "RandomRotation",
     "RandomTranslation", "RandomZoom", "RandomContrast", "RandomBrightness"}
)
#: Element-wise merges: the broadcast of their inputs (CustomScaleLayer: x[0] + x[1] * scale).
_MERGES = frozenset({"Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum", "CustomScaleLayer"})
_CONV = frozenset({"Conv1D", "Conv2D", "Conv3D"})
_CONV_TRANSPOSE = frozenset({"Conv1DTranspose", "Conv2DTranspose", "Conv3DTranspose"})
_RECURRENT_GATES = {"SimpleRNN": 1, "GRU": 3, "LSTM": 4}

#: Operation nodes whose output is the broadcast of their tensor inputs (element-wise maths, activations).
_ELEMENTWISE_OPS = frozenset(
    {"Abs", "Absolute", "Add", "Arccos", "Arcsin", "Arctan", "Arctan2", "Ceil", "Clip", "Cos", "Cosh", "Cumprod",
     "Cumsum", "Divide", "DivideNoNan", "Equal", "Exp", "Exp2", "Expm1", "Flip", "Floor", "FloorDivide", "Greater",
     "GreaterEqual", "Less", "LessEqual", "Log", "Log10", "Log1p", "Log2", "Logaddexp", "LogicalAnd", "LogicalNot",
     "LogicalOr", "Maximum", "Minimum", "Mod", "Multiply", "NanToNum", "Negative", "NotEqual", "OnesLike", "Power",
     "Reciprocal", "Roll", "Round", "Sign", "Sin", "Sinh", "Sort", "Argsort", "Sqrt", "Square", "Subtract", "Tan",
     "Tanh", "Tril", "Triu", "TrueDivide", "ZerosLike", "Celu", "Elu", "Gelu", "HardShrink", "HardSigmoid",
     "HardSilu", "HardTanh", "LayerNorm", "LeakyRelu", "LogSigmoid", "LogSoftmax", "Normalize", "RMSNorm", "Relu",
     "Relu6", "Selu", "Sigmoid", "Silu", "SoftShrink", "Softmax", "Softplus", "Softsign", "SparsePlus", "Sparsemax",
     "Squareplus", "TanhShrink", "Threshold", "Erf", "Erfc", "Rsqrt", "Cast", "ConvertToTensor", "StopGradient"}
)
_REDUCING_OPS = frozenset({"Mean", "Max", "Min", "Sum", "Prod", "Amax", "Amin", "All", "Any", "Std", "Var",
                           "Logsumexp", "Argmax", "Argmin"})


def rule(node: dict[str, Any], inputs: list[Shape | None]) -> Rule:
    """Parameters and output shapes of one call of `node` on tensors of `inputs` shapes."""
    raw = node.get("config")
    c: dict[str, Any] = raw if isinstance(raw, dict) else {}
    name = node.get("class_name")
    x = inputs[0] if inputs else None
    if kind_of(node) == "operation":
        return 0, [_operation(str(name), c, inputs)]
    if name in _SAME_SHAPE:
        return 0, [x]
    if name in _MERGES:
        return 0, [broadcast(inputs)]
    if name == "LayerScale":
        return int(c["projection_dim"]), [x]
    if name == "Embedding":
        return int(c["input_dim"]) * int(c["output_dim"]), [None if x is None else (*x, int(c["output_dim"]))]
    if name in _RESHAPING:
        return 0, [None if x is None else _RESHAPING[name](c, x)]
    if name == "Concatenate":
        return 0, [_concatenate(inputs, int(c.get("axis", -1)))]
    if isinstance(name, str) and "Pooling" in name:
        return 0, [None if x is None else _pool_shape(name, c, x)]
    if x is None or c.get("data_format") == "channels_first":
        return None, [None]
    return _weighted(str(name), c, x, inputs)


def _weighted(name: str, c: dict[str, Any], x: Shape, inputs: list[Shape | None]) -> Rule:
    """Layers whose weights depend on the input's last dimension (None parameters while it is unknown)."""
    features = x[-1]
    bias = bool(c.get("use_bias", True))
    if name == "Dense":
        units = int(c["units"])
        return _times(features, units, bias * units), [(*x[:-1], units)]
    if name in _CONV or name in _CONV_TRANSPOSE:
        filters, groups = int(c["filters"]), int(c.get("groups", 1) or 1)
        kernel = _kernel_volume(name, c["kernel_size"])
        out = (_window_shape(x, c["kernel_size"], c.get("strides", 1), c.get("padding", "valid"), c.get("dilation_rate", 1),
                             filters) if name in _CONV else _transpose_shape(x, c, filters))
        return _times(None if features is None else kernel * (features // groups), filters, bias * filters), [out]
    if name in ("DepthwiseConv1D", "DepthwiseConv2D", "SeparableConv1D", "SeparableConv2D"):
        kernel = _kernel_volume(name, c["kernel_size"])
        multiplier = int(c.get("depth_multiplier", 1) or 1)
        depth = None if features is None else features * multiplier
        window = _window_shape(x, c["kernel_size"], c.get("strides", 1), c.get("padding", "valid"),
                               c.get("dilation_rate", 1), depth)
        if name.startswith("Depthwise"):
            return _times(depth, kernel, bias * (depth or 0)), [window]
        filters = int(c["filters"])
        pointwise = _times(depth, filters, bias * filters)
        return None if depth is None or pointwise is None else kernel * depth + pointwise, [(*window[:-1], filters)]
    if name == "Normalization":
        if c.get("mean") is not None and c.get("variance") is not None:
            return 0, [x]  # given statistics are constants, not weights
        axis = c.get("axis", -1)
        if axis not in (-1, [-1], len(x) - 1, [len(x) - 1]):
            return None, [x]
        return _times(features, 2, 1), [x]  # mean, variance and the sample count, kept as weights for adapt()
    if name == "BatchNormalization":
        return _times(features, 2 + bool(c.get("center", True)) + bool(c.get("scale", True)), 0), [x]
    if name in ("LayerNormalization", "GroupNormalization"):
        return _times(features, 2, 0), [x]
    if name == "PReLU":
        return (None if None in x[1:] else math.prod(d for d in x[1:] if d is not None)), [x]
    if name in _RECURRENT_GATES:
        return _recurrent(name, c, x)
    if name == "Bidirectional":
        inner = c["layer"]
        params, outs = _recurrent(str(inner["class_name"]), inner["config"], x)
        first = outs[0]
        units = int(inner["config"]["units"])
        width = first if first is None or c.get("merge_mode", "concat") != "concat" else (*first[:-1], 2 * units)
        return None if params is None else 2 * params, [width]
    if name == "MultiHeadAttention":
        return _attention(c, inputs)
    if name in ("Attention", "AdditiveAttention"):
        scale = int(bool(c.get("use_scale"))) * (features or 0 if name == "AdditiveAttention" else 1)
        return scale, [x]
    return None, [None]


def kept(node: dict[str, Any], inputs: list[Shape | None]) -> int:
    """Elements per sample a layer keeps for the backward pass besides its outputs, where that is most of
    its memory: a recurrent layer's gates and cell state at every timestep, an attention layer's
    projections and its heads x queries x keys scores (before and after the softmax). Unknown sizes count as 1."""
    raw = node.get("config")
    c: dict[str, Any] = raw if isinstance(raw, dict) else {}
    name = node.get("class_name")
    x = inputs[0] if inputs else None
    if x is None or len(x) < 3:
        return 0
    if name == "Bidirectional":
        return 2 * kept(c["layer"], inputs)
    if name in _RECURRENT_GATES:
        return (x[1] or 1) * int(c["units"]) * (_RECURRENT_GATES[str(name)] + 2)
    if name == "MultiHeadAttention":
        queries = math.prod(d or 1 for d in x[1:-1])
        key = inputs[1] if len(inputs) > 1 and inputs[1] is not None else x
        keys = math.prod(d or 1 for d in key[1:-1])
        heads, key_dim = int(c["num_heads"]), int(c["key_dim"])
        value_dim = int(c.get("value_dim") or key_dim)
        return heads * (2 * queries * keys + queries * key_dim + keys * (key_dim + value_dim) + queries * value_dim)
    return 0


def _recurrent(name: str, c: dict[str, Any], x: Shape) -> Rule:
    """SimpleRNN, GRU (reset_after: two biases per gate) and LSTM: parameters and outputs (state too)."""
    units, gates = int(c["units"]), _RECURRENT_GATES[name]
    biases = gates * units * (2 if name == "GRU" and c.get("reset_after", True) else 1) * bool(c.get("use_bias", True))
    params = _times(None if x[-1] is None else x[-1] + units, gates * units, biases)
    sequence = (x[0], x[1], units) if c.get("return_sequences") else (x[0], units)
    states = [(x[0], units)] * ((2 if name == "LSTM" else 1) if c.get("return_state") else 0)
    return params, [sequence, *states]


def _attention(c: dict[str, Any], inputs: list[Shape | None]) -> Rule:
    """MultiHeadAttention(query, value[, key]): four projections; the output has the query's shape with
    `output_shape` (or the query's width) last."""
    query = inputs[0]
    value = inputs[1] if len(inputs) > 1 else query
    key = inputs[2] if len(inputs) > 2 else value
    if query is None or value is None or key is None:
        return None, [None]
    heads, key_dim = int(c["num_heads"]), int(c["key_dim"])
    value_dim = int(c.get("value_dim") or key_dim)
    out = c.get("output_shape")
    width = query[-1] if out is None else (int(out) if not isinstance(out, list) else math.prod(_ints(out)))
    bias = bool(c.get("use_bias", True))
    parts = [_times(query[-1], heads * key_dim, bias * heads * key_dim), _times(key[-1], heads * key_dim, bias * heads * key_dim),
             _times(value[-1], heads * value_dim, bias * heads * value_dim),
             _times(width, heads * value_dim, bias * (width or 0))]
    return (None if None in parts else sum(p for p in parts if p is not None)), [(*query[:-1], width)]


def _times(features: int | None, per_feature: int, extra: int) -> int | None:
    """`features * per_feature + extra` weights, None while `features` is unknown."""
    return None if features is None else int(features) * per_feature + extra


def broadcast(shapes: list[Shape | None]) -> Shape | None:
    """NumPy broadcasting of known shapes (None when no input shape is known); unknown dimensions stay None
    unless another input fixes them."""
    known = [s for s in shapes if s is not None]
    if not known:
        return None
    rank = max(len(s) for s in known)
    out: list[int | None] = []
    for axis in range(rank):
        dims = [s[axis - rank + len(s)] for s in known if axis - rank + len(s) >= 0]
        sizes = [d for d in dims if d is not None and d != 1]
        out.append(max(sizes) if sizes else (1 if dims and all(d == 1 for d in dims) else None))
    return tuple(out)


def _operation(name: str, c: dict[str, Any], inputs: list[Shape | None]) -> Shape | None:
    if name in _ELEMENTWISE_OPS:
        return broadcast(inputs)
    x = inputs[0] if inputs else None
    if x is None:
        return None
    if name in _REDUCING_OPS:
        axis = c.get("axis")
        axes = set(range(len(x))) if axis is None else {a % len(x) for a in _ints(axis)}
        return tuple((1 if c.get("keepdims") else None) if i in axes else d
                     for i, d in enumerate(x) if c.get("keepdims") or i not in axes) or (1,)
    if name == "ExpandDims":
        axis = int(c["axis"]) % (len(x) + 1)
        return (*x[:axis], 1, *x[axis:])
    if name == "Concatenate":
        return _concatenate(inputs, int(c.get("axis", 0)))
    return None


def _concatenate(inputs: list[Shape | None], axis: int) -> Shape | None:
    """Inputs joined along `axis`: its size is the sum (None if any is unknown), the rest as the first's."""
    known = [s for s in inputs if s is not None]
    if not known:
        return None
    first = known[0]
    axis %= len(first)
    sizes = [s[axis] for s in known]
    total = None if len(known) < len(inputs) or None in sizes else sum(d for d in sizes if d is not None)
    return (*first[:axis], total, *first[axis + 1:])


def _resize(c: dict[str, Any], x: Shape) -> Shape:
    return (x[0], int(c["height"]), int(c["width"]), *x[3:])


def _reshape(c: dict[str, Any], x: Shape) -> Shape:
    target = _ints(c["target_shape"])
    if -1 in target:
        known = math.prod(t for t in target if t != -1)
        size = None if None in x[1:] or not known else math.prod(d for d in x[1:] if d is not None) // known
        return (x[0], *(size if t == -1 else t for t in target))
    return (x[0], *target)


def _flatten(c: dict[str, Any], x: Shape) -> Shape:
    return (x[0], None if None in x[1:] else math.prod(d for d in x[1:] if d is not None))


def _permute(c: dict[str, Any], x: Shape) -> Shape:
    return (x[0], *(x[int(d)] for d in _ints(c["dims"])))


def _repeat(c: dict[str, Any], x: Shape) -> Shape:
    return (x[0], int(c["n"]), *x[1:])


def _pads(value: Any, rank: int) -> list[int]:
    """Total padding (or cropping) per spatial axis: an int, one int per axis, or (before, after) per axis."""
    if not isinstance(value, list):
        return [2 * int(value)] * rank
    if value and isinstance(value[0], list):
        return [sum(_ints(pair)) for pair in value]
    return [sum(_ints(value))] if rank == 1 else [2 * int(v) for v in value]


def _grow(c: dict[str, Any], x: Shape, key: str, sign: int) -> Shape:
    spatial = x[1:-1]
    amounts = _pads(c[key], len(spatial))
    return (x[0], *(None if d is None else d + sign * a for d, a in zip(spatial, amounts)), x[-1])


def _upsample(c: dict[str, Any], x: Shape) -> Shape:
    spatial = x[1:-1]
    size = c.get("size", 2)
    factors = _ints(size) if isinstance(size, list) else [int(size)] * len(spatial)
    return (x[0], *(None if d is None else d * f for d, f in zip(spatial, factors)), x[-1])


_RESHAPING = {
    "Resizing": _resize, "CenterCrop": _resize, "RandomCrop": _resize, "Reshape": _reshape, "Flatten": _flatten,
    "Permute": _permute, "RepeatVector": _repeat, "UpSampling1D": _upsample, "UpSampling2D": _upsample,
    "UpSampling3D": _upsample,
    **{f"ZeroPadding{n}D": lambda c, x: _grow(c, x, "padding", 1) for n in (1, 2, 3)},
    **{f"Cropping{n}D": lambda c, x: _grow(c, x, "cropping", -1) for n in (1, 2, 3)},
}


def _pool_shape(name: str, c: dict[str, Any], x: Shape) -> Shape | None:
    if c.get("data_format") == "channels_first":
        return None
    if name.startswith("Global"):
        return (x[0], *([1] * (len(x) - 2)), x[-1]) if c.get("keepdims") else (x[0], x[-1])
    pool = c.get("pool_size", 2)
    return _window_shape(x, pool, c.get("strides") or pool, c.get("padding", "valid"), 1, x[-1])


def _window_shape(x: Shape, kernel: Any, strides: Any, padding: str, dilation: Any, channels: int | None) -> Shape:
    """Output shape of a channels-last sliding window (convolution or pooling)."""
    spatial = x[1:-1]
    kernels, stride, dil = (_ints(v) * (len(spatial) if not isinstance(v, list) else 1) for v in (kernel, strides, dilation))
    out: list[int | None] = []
    for size, k, s, d in zip(spatial, kernels, stride, dil):
        if size is None:
            out.append(None)
        elif padding == "same":
            out.append(-(-size // s))
        else:
            out.append((size - (k - 1) * d - 1) // s + 1)
    return (x[0], *out, channels)


def _transpose_shape(x: Shape, c: dict[str, Any], filters: int) -> Shape:
    """Output shape of a channels-last transposed convolution (no output_padding: Keras's default)."""
    spatial = x[1:-1]
    kernels, stride = (_ints(v) * (len(spatial) if not isinstance(v, list) else 1)
                       for v in (c["kernel_size"], c.get("strides", 1)))
    same = c.get("padding", "valid") == "same"
    return (x[0], *(None if d is None else d * s if same else d * s + max(k - s, 0)
                    for d, k, s in zip(spatial, kernels, stride)), filters)


def _kernel_volume(name: str, kernel_size: Any) -> int:
    """Weights per input and output channel of a convolution's kernel. Keras writes `kernel_size` as a
    list; a hand-written JSON may give one int, which means that size along each of the layer's axes."""
    if isinstance(kernel_size, list):
        return math.prod(_ints(kernel_size))
    rank = int(name[name.rindex("D") - 1])  # Conv2D, DepthwiseConv1D, Conv3DTranspose: the digit before the last D
    return int(kernel_size) ** rank


def _ints(value: Any) -> list[int]:
    return [int(v) for v in value] if isinstance(value, list) else [int(value)]
