"""The sweep's learning-rate ramp, as a Keras schedule of the optimizer's own step counter.

Because the optimizer evaluates it inside the compiled train step, the LR changes every step with no
Python in the loop (the tutorial's callback sets it from Python before every batch). `lr_values`
computes the same ramp in float64 on the host, which is what the result reports as `lrs`.
"""

from __future__ import annotations

from typing import Any, Literal

import keras
import numpy as np
from keras import ops

Mode = Literal["exponential", "linear"]


def lr_values(start_lr: float, end_lr: float, num_steps: int, mode: Mode) -> np.ndarray:
    """LR of steps 0..num_steps-1: exponential `start*(end/start)**(i/(n-1))` or linear, ending at `end_lr`."""
    fraction = np.arange(num_steps, dtype=np.float64) / max(num_steps - 1, 1)
    if mode == "exponential":
        return start_lr * (end_lr / start_lr) ** fraction
    return start_lr + (end_lr - start_lr) * fraction


@keras.saving.register_keras_serializable(package="lrrt")
class RangeTestSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """`lr(step)` of `lr_values`, computed on the device; steps past the end keep `end_lr`."""

    def __init__(self, start_lr: float, end_lr: float, num_steps: int, mode: Mode = "exponential") -> None:
        if mode not in ("exponential", "linear"):
            raise ValueError(f"mode must be 'exponential' or 'linear', got {mode!r}")
        self.start_lr = float(start_lr)
        self.end_lr = float(end_lr)
        self.num_steps = int(num_steps)
        self.mode = mode

    def __call__(self, step: Any) -> Any:
        fraction = ops.minimum(ops.cast(step, "float32") / float(max(self.num_steps - 1, 1)), 1.0)
        if self.mode == "exponential":
            return self.start_lr * ops.power(self.end_lr / self.start_lr, fraction)
        return self.start_lr + (self.end_lr - self.start_lr) * fraction

    def get_config(self) -> dict[str, Any]:
        return {"start_lr": self.start_lr, "end_lr": self.end_lr, "num_steps": self.num_steps, "mode": self.mode}
