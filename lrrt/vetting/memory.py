"""The memory guard: the bytes one training step of a job needs, predicted from its JSON at submission,
against the deployment's `memory_limit_bytes`.

A step holds the weights, their gradients, the optimizer's slots (Adam's two moments, SGD's momentum) and
the activations the backward pass needs, which grow with the batch. The parameter count and the
activation elements per sample come from the model's one walk (`lrrt.vetting.estimate`); the slots per
weight from the arm's optimizer and its params (`slots`). Arms run one at a time per worker child, so a
job needs what its hungriest arm needs.

Everything is counted at 4 bytes (float32: the dtype the worker trains in; activations at 2 under
`sweep.mixed_precision`); `ACTIVATION_FACTOR` covers
what the backward pass holds besides the layers' outputs (the gradient flowing back through each, the
backend's scratch). Its value and how close the whole estimate comes to a step's measured peak are in
docs/design.md ("Memory estimate", from bench/memory_estimate.py).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from lrrt.vetting.estimate import Footprint

BYTES_PER_VALUE = 4
#: Bytes a step holds per byte of layer output kept for the backward pass (the output itself and the
#: gradient flowing back through it); bench/memory_estimate.py measures the whole estimate against it.
ACTIVATION_FACTOR = 2
#: Optimizer state per weight, by identifier (Keras 3's own slots, counted from `optimizer.variables`):
#: Adam, AdamW, Adamax, Nadam, Adadelta, Ftrl and Lamb keep two; Adagrad and Lion one; Adafactor keeps
#: factored row and column statistics (at most one per weight); SGD and RMSprop depend on their params.
_SLOTS = {"sgd": 0, "adam": 2, "adamw": 2, "adamax": 2, "nadam": 2, "adadelta": 2, "ftrl": 2, "lamb": 2,
          "adagrad": 1, "lion": 1, "adafactor": 1, "rmsprop": 1}


def slots(name: str, params: Mapping[str, object]) -> int:
    """Values an optimizer keeps per weight: its slots plus the ones its params add (SGD and RMSprop
    momentum, RMSprop centered, Adam/AdamW amsgrad, an exponential moving average of the weights)."""
    extra = (bool(params.get("momentum")) * (name in ("sgd", "rmsprop")) + bool(params.get("centered")) * (name == "rmsprop")
             + bool(params.get("amsgrad")) * (name in ("adam", "adamw")) + bool(params.get("use_ema")))
    return _SLOTS.get(name, 2) + extra


@dataclass(frozen=True)
class StepMemory:
    """Bytes one training step needs, in parts, at `batch_size`."""

    weights: int
    gradients: int
    optimizer_slots: int
    #: Activations per sample times ACTIVATION_FACTOR, in bytes: what each sample of the batch adds.
    per_sample: int
    batch_size: int
    #: Whether every part is exact: False when a layer's parameters or output size could not be read
    #: from the JSON, and the figure is then a floor (the worker's own limit guards the rest).
    complete: bool

    @property
    def activations(self) -> int:
        return self.per_sample * self.batch_size

    @property
    def total(self) -> int:
        return self.weights + self.gradients + self.optimizer_slots + self.activations

    def largest_batch(self, limit: int) -> int:
        """The largest batch size whose step fits in `limit` bytes (0: not even one sample)."""
        room = limit - self.weights - self.gradients - self.optimizer_slots
        if room <= 0 or not self.per_sample:
            return 0 if room <= 0 else self.batch_size
        return room // self.per_sample


def step_memory(footprint: Footprint, params_floor: int, optimizers: Iterable[tuple[str, Mapping[str, object]]],
                batch_size: int, *, mixed_precision: bool = False) -> StepMemory:
    """The step of the hungriest of `optimizers` ((name, params) per arm) at `batch_size`; `params_floor`
    stands in for the parameter count when the walk could not tell it. Under `mixed_precision`
    (mixed_float16) activations take 2 bytes; weights, gradients and slots stay float32."""
    params = footprint.params if footprint.params is not None else params_floor
    weights = params * BYTES_PER_VALUE
    most_slots = max((slots(name, arm) for name, arm in optimizers), default=0)
    return StepMemory(weights=weights, gradients=weights, optimizer_slots=most_slots * weights,
                      per_sample=footprint.activations * (2 if mixed_precision else BYTES_PER_VALUE) * ACTIVATION_FACTOR,
                      batch_size=batch_size,
                      complete=footprint.complete and footprint.params is not None)


def describe_bytes(count: int) -> str:
    """`count` bytes as a person reads them, in binary units (8 GiB is 8 x 2^30 bytes)."""
    if count >= 1024 ** 5:
        return f"{count // 1024 ** 4:,} TiB"  # integer maths: a hostile estimate can exceed a float's range
    size, unit = float(count), "B"
    for bigger in ("KiB", "MiB", "GiB", "TiB"):
        if size < 1024:
            break
        size, unit = size / 1024, bigger
    return f"{count} B" if unit == "B" else f"{size:.1f} {unit}"
