"""Per-step loss recording on the device, read by Python only between `steps_per_execution` chunks.

Keras's `logs["loss"]` is the running mean since the epoch began (tensorflow#58098, keras#17167), so a
finder built on it reports curves that are too smooth. Every backend's train step feeds the step's own
(unscaled, regularization-inclusive) loss to `model._loss_tracker.update_state` before returning; we
put a `Mean` subclass there that also writes that value into a ring buffer of one chunk's length,
together with its own step counter. Both come back in the chunk's `logs` (not from the variables,
which the JAX backend syncs back only at epoch ends), and the counter tells Python which steps the
ring holds. `install` checks the hook point exists, since `_loss_tracker` is a Keras private.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
from keras import ops

from lrrt.problems import EngineError

RING_KEY = "lrrt_step_losses"
STEPS_KEY = "lrrt_steps"


class StepLossRecorder(keras.metrics.Mean):
    """Keras's loss tracker (same name, same mean) that also keeps the last `ring_size` step losses."""

    def __init__(self, ring_size: int, name: str = "loss") -> None:
        super().__init__(name=name)
        self.ring_size = ring_size
        self.ring = self.add_variable(shape=(ring_size,), initializer="zeros", dtype="float32", name="ring")
        self.steps = self.add_variable(shape=(), initializer="zeros", dtype="int32", name="steps")

    def update_state(self, values: Any, sample_weight: Any = None) -> None:
        super().update_state(values, sample_weight)
        # Under JAX, read variables through convert_to_tensor: the variable object itself does not trace.
        step = ops.convert_to_tensor(self.steps)
        slot = ops.equal(ops.arange(self.ring_size, dtype="int32"), ops.mod(step, self.ring_size))
        loss = ops.cast(ops.mean(values), "float32")
        self.ring.assign(ops.where(slot, loss, ops.convert_to_tensor(self.ring)))
        self.steps.assign(step + 1)

    def result(self) -> dict[str, Any]:
        return {self.name: super().result(), RING_KEY: ops.convert_to_tensor(self.ring),
                STEPS_KEY: ops.convert_to_tensor(self.steps)}

    def restart(self) -> None:
        """Forget everything, counter included (Keras's per-epoch `reset_state` keeps ring and counter)."""
        self.reset_state()
        self.ring.assign(np.zeros(self.ring_size, dtype="float32"))
        self.steps.assign(0)


def install(model: keras.Model, ring_size: int) -> StepLossRecorder:
    """Replace the compiled model's loss tracker with a recorder; call after `compile`, before `fit`."""
    if not isinstance(getattr(model, "_loss_tracker", None), keras.metrics.Mean):
        raise EngineError(f"this Keras version ({keras.__version__}) has no loss tracker to record step losses from")
    recorder = StepLossRecorder(ring_size)
    model._loss_tracker = recorder
    return recorder


def read_steps(logs: dict[str, Any], seen: int, ring_size: int) -> tuple[int, np.ndarray]:
    """(steps done so far, losses of steps seen..done-1) from one chunk's logs."""
    done = int(np.asarray(logs[STEPS_KEY]))
    ring = np.asarray(logs[RING_KEY], dtype=np.float64)
    if done - seen > ring_size:
        raise EngineError(f"a chunk ran {done - seen} steps but the recorder holds {ring_size}")
    return done, ring[np.arange(seen, done) % ring_size]
