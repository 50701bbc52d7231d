"""What one walk of a model JSON learns: everything the allow-list verdict, the caps and routing read.

A submission's model JSON is walked once (`summarize`), iteratively so that a hostile nesting depth
cannot hit Python's recursion limit, and the result is kept on the spec (`JobSpec.model_summary`): the
API's depth and layer caps, the allow-list verdict, the parameter cap, the memory guard and the `auto`
backend rule all read the same `ModelSummary` instead of walking the JSON again for each question. The
model's graph (shapes, parameters, activations) is followed once, by `lrrt.vetting.estimate`. A Keras 2 JSON's
rewrite is a different JSON and gets a walk of its own (`lrrt.vetting.vet`).

Pure Python and total: it must describe any JSON value, including ones the allow-list rejects.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lrrt.vetting import compiled
from lrrt.vetting.allowlist import disallowed_top_class, kind_of, node_problems
from lrrt.vetting.estimate import Footprint, certain_params, estimate
from lrrt.vetting.shapes import Shape, declared_shape

#: Node kinds that count towards `max_layers` (a nested model counts once, besides its own layers).
LAYER_KINDS = frozenset({"layer", "model", "operation", "application layer"})


@dataclass(frozen=True)
class ModelSummary:
    """The facts about one model JSON that the checks and routing use."""

    #: Whether the JSON is an object at all (a model JSON is; anything else is refused outright).
    is_object: bool
    #: Nesting depth of dicts and lists (0 for a scalar).
    depth: int
    #: The top-level class as a problem names it when it is not a model class; None when it is one.
    disallowed_top: str | None
    #: Layers, nested models' layers included (each nested model counts once too; the top one does not).
    layers: int
    #: Every class name the JSON uses, for rules that look at a model's kind.
    classes: frozenset[str]
    #: The declared input shapes (batch first) of its `InputLayer`s, where the JSON gives them.
    input_shapes: tuple[Shape, ...]
    #: Everything outside the allow-list, sorted and without repeats (empty: allowed).
    disallowed: tuple[str, ...]
    #: What the graph walk predicts (`lrrt.vetting.estimate`): parameters and activations per sample;
    #: None when the JSON is not a model structure it can read.
    footprint: Footprint | None
    #: Parameters certain from configs alone: what the cap checks when `params` is None.
    certain_params: int

    @property
    def params(self) -> int | None:
        """The predicted parameter count, None when the walk cannot tell."""
        return self.footprint.params if self.footprint is not None else None


def summarize(obj: Any) -> ModelSummary:
    """Walk `obj` once and return what the checks and routing need (see `ModelSummary`)."""
    depth = layers = certain = 0
    classes: set[str] = set()
    shapes: list[Shape] = []
    problems: set[str] = set()
    # (value, the key it sits under, its depth, whether it is inside the top level's `compile_config`,
    # which only counts towards the depth: `compiled.problems` judges it, and it holds no layers)
    stack: list[tuple[Any, str, int, bool]] = [(obj, "", 1, False)]
    if isinstance(obj, dict):
        problems.update(compiled.problems(obj.get("compile_config")))
    while stack:
        item, where, level, inert = stack.pop()
        if isinstance(item, list):
            depth = max(depth, level)
            stack.extend((child, where, level + 1, inert) for child in item)
            continue
        if not isinstance(item, dict):
            continue
        depth = max(depth, level)
        stack.extend((child, key, level + 1, inert or (level == 1 and key == "compile_config"))
                     for key, child in item.items())
        if inert:
            continue
        name = item.get("class_name")
        if isinstance(name, str):
            classes.add(name)
        if kind_of(item) in LAYER_KINDS:
            layers += 1
        if name == "InputLayer" and (shape := declared_shape(item)) is not None:
            shapes.append(shape)
        certain += certain_params(item)
        problems.update(node_problems(item, where))
    is_object = isinstance(obj, dict)
    return ModelSummary(
        is_object=is_object,
        depth=depth,
        disallowed_top=disallowed_top_class(obj) if is_object else None,
        layers=layers - 1 if is_object and kind_of(obj) in LAYER_KINDS else layers,
        classes=frozenset(classes),
        input_shapes=tuple(shapes),
        disallowed=tuple(sorted(problems)),
        footprint=estimate(obj) if is_object else None,
        certain_params=certain,
    )
