"""Every check of a submission that needs no Keras, in one place: the API runs exactly these at
submission, and the worker runs them again before it builds anything, so a job the API accepted is
never refused by the worker for a reason the API could have known.

In order: the verdict on the JSON as sent (read from its one walk, `lrrt.vetting.summary`: depth and
layer caps, the allow-list), the Keras 2 rewrite and the same verdict on its output, the parameter
estimate against the cap, the memory a training step needs against the deployment's limit
(`lrrt.vetting.memory`), the dataset reference's form (`lrrt.vetting.datasets`) and the weights
reference's form (`lrrt.vetting.weights`); loss and optimizer names are part of `JobSpec` validation
itself. What only the worker can know (the exact parameter count once built, whether the arrays and
the weights fit the model) is checked there.
"""

from __future__ import annotations

import math
from typing import Any

from lrrt.problems import CapExceeded, ConfigInvalid, DatasetError, DatasetInvalid, ModelRejected, WeightsError
from lrrt.settings import Settings
from lrrt.spec import JobSpec
from lrrt.vetting.allowlist import MODEL_CLASSES
from lrrt.vetting.datasets import array_groups, at_uri, check_uri
from lrrt.vetting.estimate import Footprint, estimate
from lrrt.vetting.keras2 import is_legacy, to_keras3
from lrrt.vetting.memory import StepMemory, describe_bytes, step_memory
from lrrt.vetting.shapes import Shape
from lrrt.vetting.summary import ModelSummary, summarize
from lrrt.vetting.weights import at_weights, check_reference


def check_allowed(summary: ModelSummary, *, max_depth: int = 64, max_layers: int = 1200) -> None:
    """Raise `CapExceeded` or `ModelRejected` unless the summarized JSON uses only allowed Keras built-ins.

    Runs no code from the payload: the summary was read from dicts, lists and strings. A top-level
    `compile_config` is judged by its own allow-list (`lrrt.vetting.compiled.problems`): `JobSpec` reads
    the optimizer and loss from it, and Keras never sees it (`vet_model_json` drops it).
    """
    if not summary.is_object:
        raise ModelRejected("the model must be a JSON object as returned by model.to_json()", disallowed=["<not an object>"])
    if summary.depth > max_depth:
        raise CapExceeded(f"the model JSON nests {summary.depth} levels deep; the limit is {max_depth}",
                          cap="max_json_depth", limit=max_depth, value=summary.depth)
    if summary.disallowed_top is not None:
        raise ModelRejected(f"the top-level class must be one of {sorted(MODEL_CLASSES)}, got {summary.disallowed_top!r}",
                            disallowed=[summary.disallowed_top])
    if summary.layers > max_layers:
        raise CapExceeded(f"the model has {summary.layers} layers; the limit is {max_layers}",
                          cap="max_layers", limit=max_layers, value=summary.layers)
    if summary.disallowed:
        raise ModelRejected(
            "the model uses classes or settings outside the allow-list of built-in Keras layers: "
            + ", ".join(summary.disallowed),
            disallowed=list(summary.disallowed),
        )


def check_params(summary: ModelSummary, *, max_params: int) -> None:
    """Raise `CapExceeded` when the estimate (or, failing one, the certain lower bound) is over the cap."""
    known = summary.params if summary.params is not None else summary.certain_params
    if known > max_params:
        raise CapExceeded(
            f"the model would have {'' if summary.params is not None else 'at least '}{known:,} parameters; "
            f"the limit is {max_params:,}. Use a smaller model.",
            cap="max_params", limit=max_params, value=known,
        )


def check_memory(memory: StepMemory, *, limit: int) -> None:
    """Raise `CapExceeded` when a training step's estimated bytes are over the deployment's limit; the
    problem gives the estimate in parts, the limit and the largest batch size that fits. A limit of 0 is
    the guard turned off."""
    if limit <= 0 or memory.total <= limit:
        return
    fits = memory.largest_batch(limit)
    advice = (f"The largest batch size that fits is {fits}: lower sweep.batch_size, or use a smaller model or input."
              if fits else "No batch size fits: the weights, gradients and optimizer slots alone are over it; use a "
              "smaller model or an optimizer with fewer slots (sgd without momentum keeps none).")
    raise CapExceeded(
        f"one training step would need an estimated {describe_bytes(memory.total)} at batch size {memory.batch_size} "
        f"({'at least ' if not memory.complete else ''}weights {describe_bytes(memory.weights)}, gradients "
        f"{describe_bytes(memory.gradients)}, optimizer slots {describe_bytes(memory.optimizer_slots)}, activations "
        f"{describe_bytes(memory.activations)}); this deployment's limit is {describe_bytes(limit)}. {advice}",
        cap="memory_limit_bytes", limit=limit, value=memory.total, largest_batch_size=fits,
        estimate={"weights": memory.weights, "gradients": memory.gradients, "optimizer_slots": memory.optimizer_slots,
                  "activations": memory.activations, "batch_size": memory.batch_size, "complete": memory.complete},
    )


def job_memory(spec: JobSpec, footprint: Footprint | None, params_floor: int) -> StepMemory | None:
    """The step memory of `spec`'s hungriest arm at its batch size; None when the JSON could not be walked
    (the worker's own limit is then the only guard)."""
    if footprint is None:
        return None
    arms = [(arm.name, arm.params) for arm in spec.optimizers]
    return step_memory(footprint, params_floor, arms, spec.sweep.batch_size, mixed_precision=spec.sweep.mixed_precision)


def check_memory_on_rows(spec: JobSpec, config: dict[str, Any], shapes: dict[str, list[int]], caps: Settings) -> None:
    """The memory guard again with an uploaded dataset's row shapes (from its metadata) filling the sizes
    the model leaves open (a variable sequence length): only when the JSON alone left some unknown (or,
    for a Keras 2 JSON, could not be walked before its rewrite)."""
    footprint = spec.model_summary.footprint
    if footprint is not None and footprint.complete:
        return
    inputs, _ = model_io(config)
    groups = array_groups(shapes)["x"]
    rows: dict[str, Shape] = {}
    for name, _ in inputs:
        member = groups.get(name) if len(inputs) > 1 else next(iter(groups.values()), None)
        if member is not None:
            rows[name] = (None, *shapes[member][1:])
    if len(inputs) == 1 and rows:
        rows[""] = next(iter(rows.values()))
    memory = job_memory(spec, estimate(config, rows), spec.model_summary.certain_params)
    if memory is not None:
        check_memory(memory, limit=caps.memory_limit_bytes)


def vet_model_json(model_json: dict[str, Any], caps: Settings, summary: ModelSummary | None = None) -> dict[str, Any]:
    """The Keras 3 config to build, after every model check that needs no Keras; raises EngineError subclasses."""
    return _vetted(model_json, caps, summary)[0]


def _vetted(model_json: dict[str, Any], caps: Settings, summary: ModelSummary | None) -> tuple[dict[str, Any], ModelSummary]:
    """The Keras 3 config and the summary of the JSON it came from (the rewrite's, for Keras 2 JSON).

    `summary` is `model_json`'s own (`JobSpec.model_summary`) when the caller has it, so the JSON as sent
    is walked once per submission; a Keras 2 JSON's rewrite is new JSON and is walked and judged again.
    """
    if summary is None:
        summary = summarize(model_json)
    check_allowed(summary, max_depth=caps.max_json_depth, max_layers=caps.max_layers)
    config = to_keras3(model_json)  # a copy, unchanged unless `is_legacy`
    if is_legacy(model_json):
        summary = summarize(config)
        check_allowed(summary, max_depth=caps.max_json_depth, max_layers=caps.max_layers)
    config.pop("compile_config", None)  # read by `JobSpec` already; Keras would compile (deserialize) from it
    check_params(summary, max_params=caps.max_params)
    return config, summary


def vet_spec(spec: JobSpec, caps: Settings, *, dataset: bool = True) -> dict[str, Any]:
    """Everything about `spec` that can be known without Keras or the data; returns the config to build.

    The sweep caps are `lrrt.spec.cap_violations`, which both sides call on their own (the API
    to report every violation at once, the worker again once an epochs-sized sweep's length is known).
    `dataset=False` skips the reference's checks, for a run on arrays the caller passed in.
    """
    try:
        if dataset:
            check_uri(spec.dataset.uri)
    except DatasetError as exc:
        raise at_uri(exc) from None
    try:
        if spec.weights is not None:
            check_reference(spec.weights)
    except WeightsError as exc:
        raise at_weights(exc) from None
    config, summary = _vetted(spec.model, caps, spec.model_summary)
    memory = job_memory(spec, summary.footprint, summary.certain_params)
    if memory is not None:
        check_memory(memory, limit=caps.memory_limit_bytes)
    check_loss_outputs(spec, config)
    return config


def model_io(config: dict[str, Any]) -> tuple[list[tuple[str, list[Any] | None]], list[str]]:
    """(inputs as (name, batch shape or None), output names) of a vetted Keras 3 config, read from the
    JSON alone: what an `.npz`'s `x_<name>`/`y_<name>` arrays and a loss object must match."""
    body = config.get("config") or {}
    layers = {layer.get("config", {}).get("name"): layer for layer in body.get("layers", []) if isinstance(layer, dict)}
    if config.get("class_name") == "Sequential":
        first = next(iter(layers.values()), {})
        shape = first.get("config", {}).get("batch_shape") if first.get("class_name") == "InputLayer" else None
        last = list(layers)[-1] if layers else "output"  # a Sequential's output is named after its last layer
        return [(str(first.get("config", {}).get("name", "input")), shape)], [str(last)]

    def names(refs: Any) -> list[str]:
        refs = [refs] if refs and isinstance(refs[0], str) else refs or []
        return [str(ref[0]) for ref in refs if isinstance(ref, list) and ref]

    inputs = [(name, layers.get(name, {}).get("config", {}).get("batch_shape")) for name in names(body.get("input_layers"))]
    return inputs, names(body.get("output_layers"))


def check_loss_outputs(spec: JobSpec, config: dict[str, Any]) -> None:
    """A loss object must name exactly the model's outputs (one loss for all needs no names), and loss
    weights give one weight per output (a list in output order, or an object keyed by output name)."""
    if isinstance(spec.loss, str) and spec.loss_weights is None:
        return
    _, outputs = model_io(config)
    weights = spec.loss_weights
    if weights is not None and (set(weights) != set(outputs) if isinstance(weights, dict) else len(weights) != len(outputs)):
        raise ConfigInvalid(f"loss_weights {weights} do not give one weight per model output {outputs}: give a list of "
                            f"{len(outputs)} or an object keyed by {outputs}", outputs=outputs,
                            errors=[{"in": "body", "pointer": "/loss_weights", "type": "loss_weights",
                                     "message": f"one weight per output {outputs}"}])
    if isinstance(spec.loss, dict) and set(spec.loss) != set(outputs):
        raise ConfigInvalid(f"the loss object names outputs {sorted(spec.loss)} but the model's outputs are {outputs}: "
                            "give one loss per output name, or a single loss for all", outputs=outputs,
                            errors=[{"in": "body", "pointer": "/loss", "type": "loss", "message": "keys must be the "
                                     f"model's output names {outputs}"}])


def check_arrays_fit(config: dict[str, Any], shapes: dict[str, list[int]]) -> None:
    """An uploaded dataset's arrays (their names and row shapes, from its metadata) against the model's
    inputs and outputs, so a mismatch is a 422 at submission instead of a failed job."""
    inputs, outputs = model_io(config)
    groups = array_groups(shapes)
    for group, wanted in (("x", [name for name, _ in inputs]), ("y", outputs)):
        have = groups[group]
        if len(wanted) > 1 and set(have) != set(wanted):
            expected = ", ".join(f"{group}_{name}" for name in wanted)
            raise at_uri(DatasetInvalid(f"the model has {'inputs' if group == 'x' else 'outputs'} {wanted} but the dataset "
                                        f"holds {sorted(have.values())}: upload one array per each, named {expected}",
                                        expected=[f"{group}_{name}" for name in wanted]))
    for name, batch_shape in inputs:
        member = groups["x"][name] if len(inputs) > 1 else next(iter(groups["x"].values()))
        wanted_row = list(batch_shape[1:]) if isinstance(batch_shape, list) else None
        if wanted_row is None or None in wanted_row:
            continue
        row = shapes[member][1:]
        if row != wanted_row and math.prod(row) != math.prod(wanted_row):
            raise at_uri(DatasetInvalid(f"{member} rows have shape {row} but the model's input {name!r} expects {wanted_row}; "
                                        "reshape the data or change the model's input shape",
                                        data_shape=row, model_shape=wanted_row))
