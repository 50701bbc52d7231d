"""What a model JSON will weigh, predicted from its config before any weight or activation exists.

One walk over the model's graph (Sequential stacks and Functional `inbound_nodes`, nested models
included) applies each layer's rule (`lrrt.vetting.layers.rule`) to the shapes that reach it, and gives
both numbers the checks need: the parameter count (the `max_params` sanity bound, routing) and the
activation elements one sample produces (the memory guard, `lrrt.vetting.memory`). So a JSON asking for
a 10^12-parameter layer, or a 90-parameter model that upsamples to 8192 x 8192, is refused before the
worker allocates anything.

Shapes are what the walk itself propagates from the model's inputs (what Keras will compute when it
rebuilds the model), never what the JSON claims a layer receives, except where the walk cannot tell: a
layer without a rule, or an input declared with None sizes. Then it falls back to the shapes the JSON
declares (`build_config`, the `__keras_tensor__` shapes in `inbound_nodes`), and where those are missing
too, the layer's output counts with its unknown dimensions at 1 and the footprint is marked incomplete:
a lower bound, which can still refuse, and which admits the rest to the worker's own memory limit.

Pure Python and total: it reads dicts, lists and numbers, and gives up (None) on a JSON it cannot read.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from lrrt.vetting.allowlist import KERAS_TENSOR, MODEL_CLASSES
from lrrt.vetting.layers import kept, rule
from lrrt.vetting.shapes import Shape, declared_shape

#: Shapes with more dimensions than this are not modelled (a hostile JSON could make every rule copy a
#: million-long tuple); Keras itself supports far fewer.
MAX_RANK = 16
#: Layer calls one walk follows at most. A nested model called k times is walked k times, so nesting
#: such calls multiplies (k^depth); past this the walk stops and what it counted so far is a floor.
MAX_CALLS = 100_000
#: Problems a rule raises on a config it cannot read: the layer is then not modelled.
_UNREADABLE = (KeyError, TypeError, ValueError, IndexError, ZeroDivisionError, OverflowError, AttributeError)


@dataclass(frozen=True)
class Footprint:
    """What the walk predicts for one model."""

    #: Trainable + non-trainable parameters; None when some weight-bearing layer is not modelled.
    params: int | None
    #: Elements of every layer call's output for one sample (batch dimension left out), summed, plus what
    #: recurrent and attention layers keep inside (`lrrt.vetting.layers.kept`): what a training step keeps
    #: for the backward pass. Unknown dimensions count as 1 (`complete` is then False).
    activations: int
    #: Whether every layer call's output shape was known in full, so `activations` is exact, not a floor.
    complete: bool


class _Exhausted(Exception):
    """The walk reached MAX_CALLS."""


@dataclass
class _Tally:
    params: int = 0
    params_known: bool = True
    activations: int = 0
    complete: bool = True
    calls: int = 0

    def add(self, params: int | None, outputs: list[Shape | None]) -> None:
        if params is None:
            self.params_known = False
        else:
            self.params += params
        for shape in outputs:
            if shape is None or None in shape[1:]:
                self.complete = False
            if shape is not None:
                self.activations += math.prod(max(d, 0) if d is not None else 1 for d in shape[1:])


def estimate(obj: dict[str, Any], inputs: Mapping[str, Shape] | None = None) -> Footprint | None:
    """The footprint of model JSON `obj`, or None when its structure cannot be read at all.

    `inputs` overrides the shapes of named input layers (batch first): a dataset's row shapes fill in
    the sizes a model leaves open (a variable sequence length).
    """
    tally = _Tally()
    try:
        _model(obj, None, tally, dict(inputs or {}))
    except _Exhausted:
        tally.params_known = tally.complete = False
    except (*_UNREADABLE, RecursionError):
        return None  # not a model structure this walk understands: the worker counts after building
    return Footprint(params=tally.params if tally.params_known else None, activations=tally.activations,
                     complete=tally.complete)


def certain_params(node: dict[str, Any]) -> int:
    """Parameters one node certainly has from its config alone (an Embedding's table, a Dense layer's units):
    summed over the model, the lower bound the cap is checked against when `estimate` cannot tell."""
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


def _model(obj: dict[str, Any], given: list[Shape | None] | None, tally: _Tally,
           overrides: dict[str, Shape]) -> list[Shape | None]:
    """Walk one model (top level or nested, called on `given` input shapes); returns its output shapes."""
    body = obj["config"]
    layers = body["layers"]
    if obj["class_name"] == "Sequential":
        return _sequential(layers, given[0] if given else None, tally, overrides)
    return _functional(body, layers, given, tally, overrides)


def _sequential(layers: list[Any], shape: Shape | None, tally: _Tally,
                overrides: dict[str, Shape]) -> list[Shape | None]:
    for index, layer in enumerate(layers):
        if layer.get("class_name") == "InputLayer":
            shape = _input_shape(layer, shape, overrides, first=index == 0)
            continue
        if index == 0 and shape is None:
            shape = overrides.get("", declared_shape(layer))  # a Sequential without an InputLayer
        shape = _call(layer, [shape if shape is not None else declared_shape(layer)], tally, first=True)[0]
    return [shape]


def _functional(body: dict[str, Any], layers: list[Any], given: list[Shape | None] | None, tally: _Tally,
                overrides: dict[str, Shape]) -> list[Shape | None]:
    # outputs[layer name][node index][tensor index]
    outputs: dict[str, list[list[Shape | None]]] = {}
    input_names = [ref[0] for ref in _refs(body.get("input_layers"))]
    for layer in layers:
        name = layer.get("name", (layer.get("config") or {}).get("name"))
        nodes = layer.get("inbound_nodes")
        if not isinstance(name, str) or not isinstance(nodes, list):
            tally.params_known = tally.complete = False  # a layer Keras could not place either: not counted
            continue
        if layer.get("class_name") == "InputLayer":
            position = input_names.index(name) if name in input_names else -1
            passed = given[position] if given is not None and 0 <= position < len(given) else None
            outputs[name] = [[_input_shape(layer, passed, overrides, first=True)]]
            continue
        calls: list[list[Shape | None]] = []
        for node_index, node in enumerate(nodes):
            shapes = [_resolve(ref, shape, outputs) for ref, shape in _tensors(node)]
            if len(shapes) == 1 and shapes[0] is None:
                shapes = [declared_shape(layer)]  # the input shape its build_config declares
            calls.append(_call(layer, shapes, tally, first=node_index == 0))
        outputs[name] = calls
    return [_lookup(outputs, ref) for ref in _refs(body.get("output_layers"))]


def _call(layer: dict[str, Any], inputs: list[Shape | None], tally: _Tally, *, first: bool) -> list[Shape | None]:
    """One call of `layer`: counts its parameters on its first call only (a shared layer's weights exist
    once), its outputs on every call, and returns the output shapes."""
    tally.calls += 1
    if tally.calls > MAX_CALLS:
        raise _Exhausted
    if layer.get("class_name") in MODEL_CLASSES:
        before = tally.params, tally.params_known
        try:
            outs = _model(layer, inputs, tally, {})  # dataset rows fill the outer model's inputs only
        except _UNREADABLE:  # _Exhausted goes on up: the whole walk stops
            tally.params_known = tally.complete = False
            outs = [None]
        if not first:
            tally.params, tally.params_known = before  # a nested model called again: same weights
        return outs
    try:
        params, outs = rule(layer, inputs)
        tally.activations += kept(layer, inputs)
    except _UNREADABLE:
        params, outs = None, [None]
    outs = [s if s is not None and len(s) <= MAX_RANK else None for s in outs]
    tally.add(params if first else 0, outs)
    return outs


def _input_shape(layer: dict[str, Any], passed: Shape | None, overrides: dict[str, Shape], *, first: bool) -> Shape | None:
    """An input layer's shape: a dataset's row shape for it (by name; "" for a Sequential's one input),
    else the shape a caller passes (a nested model), else the one it declares."""
    name = layer.get("name", (layer.get("config") or {}).get("name"))
    override = overrides.get(name) if isinstance(name, str) else None
    if override is None and first:
        override = overrides.get("")
    return override if override is not None else passed if passed is not None else declared_shape(layer)


def _tensors(node: Any) -> Iterator[tuple[Any, Any]]:
    """(keras_history reference, declared shape) of each tensor a call receives, in order: positional args
    (lists flattened), then the attention layers' `query`/`value`/`key` keywords; masks and flags are not
    inputs whose shape matters. A Keras 2 node (kept as such by the rewrite) is a list of
    [layer, node, tensor, kwargs] references without shapes."""
    if isinstance(node, list):
        for ref in node:
            if isinstance(ref, list) and len(ref) >= 3:
                yield ref[:3], None
        return
    args = node.get("args", []) if isinstance(node, dict) else []
    kwargs = node.get("kwargs", {}) if isinstance(node, dict) else {}
    stack = list(args if isinstance(args, list) else [args])[::-1]
    stack = [*(kwargs[k] for k in ("key", "value", "query") if isinstance(kwargs, dict) and k in kwargs), *stack]
    while stack:
        item = stack.pop()
        if isinstance(item, list):
            stack.extend(reversed(item))
        elif isinstance(item, dict) and item.get("class_name") == KERAS_TENSOR:
            config = item.get("config") or {}
            yield config.get("keras_history"), config.get("shape")


def _resolve(ref: Any, shape: Any, outputs: dict[str, list[list[Shape | None]]]) -> Shape | None:
    """A tensor's shape as the walk computed it for its producer, else as the JSON declares it."""
    computed = _lookup(outputs, ref) if isinstance(ref, list) and len(ref) == 3 else None
    return computed if computed is not None else declared_shape({"config": {"batch_shape": shape}})


def _lookup(outputs: dict[str, list[list[Shape | None]]], ref: list[Any]) -> Shape | None:
    name, node, index = ref[0], ref[1], ref[2]
    if not isinstance(name, str) or not isinstance(node, int) or not isinstance(index, int):
        return None
    calls = outputs.get(name, [])
    return calls[node][index] if 0 <= node < len(calls) and 0 <= index < len(calls[node]) else None


def _refs(value: Any) -> list[list[Any]]:
    """`input_layers`/`output_layers`: one [name, node, tensor] reference or a list of them."""
    if isinstance(value, list) and value and isinstance(value[0], str):
        value = [value]
    return [ref for ref in value or [] if isinstance(ref, list) and len(ref) == 3]
