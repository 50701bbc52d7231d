"""Ground-truth training for the quality bench: fixed-budget fits at a given LR plan, scored on validation.

Hundreds of short fits share one compiled model per (task, arm): the learning rate comes from a
schedule whose parameters are Keras variables, so a new run only resets weights, optimizer slots and
those variables instead of recompiling (recompiling costs more than a whole digits fit on 2 cores).
Every run of a seed starts from the same initial weights and sees the same batches in the same order,
whatever its LR, so differences between grid points are the LR's doing.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any, Literal

import keras
import numpy as np
from keras import ops

from bench.quality_tasks import QualityTask
from lrrt.spec import OptimizerArm
from lrrt.suggestions import ONE_CYCLE_DIV, ONE_CYCLE_FINAL_DIV, ONE_CYCLE_PCT_START


@dataclass(frozen=True)
class LRPlan:
    """A training run's schedule: a constant LR, or one-cycle from `start` up to `peak` and down.

    The one-cycle shape is the engine's own `recommendation.one_cycle` (OneCycleLR defaults: warm-up
    for `pct_start` of the steps, cosine both ways, ending at max_lr / 25 / 1e4), so a grid point is
    exactly what a user following the result would train.
    """

    kind: Literal["constant", "one_cycle"]
    peak: float
    start: float | None = None  # one-cycle only; None means peak / ONE_CYCLE_DIV

    @property
    def start_lr(self) -> float:
        return self.start if self.start is not None else self.peak / ONE_CYCLE_DIV


class VariableSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """Constant or one-cycle (cosine up, cosine down) LR whose numbers live in variables.

    Assigning the variables between runs changes the schedule without retracing the train step.
    """

    def __init__(self) -> None:
        def var(name: str) -> keras.Variable:
            return keras.Variable(0.0, dtype="float32", trainable=False, name=name)

        self.peak, self.start, self.final = var("peak"), var("start"), var("final")
        self.warmup_steps, self.total_steps, self.one_cycle = var("warmup"), var("total"), var("one_cycle")

    def set(self, plan: LRPlan, total_steps: int) -> None:
        warmup = max(1, round(ONE_CYCLE_PCT_START * total_steps))
        for variable, value in (
            (self.peak, plan.peak),
            (self.start, plan.start_lr),
            (self.final, plan.peak / ONE_CYCLE_DIV / ONE_CYCLE_FINAL_DIV),
            (self.warmup_steps, warmup),
            (self.total_steps, total_steps),
            (self.one_cycle, float(plan.kind == "one_cycle")),
        ):
            variable.assign(value)

    def __call__(self, step: Any) -> Any:
        step = ops.cast(step, "float32")
        warmup, total = self.warmup_steps.value, self.total_steps.value
        up = ops.clip(step / warmup, 0.0, 1.0)
        down = ops.clip((step - warmup) / ops.maximum(total - 1.0 - warmup, 1.0), 0.0, 1.0)  # final LR at the last step
        rising = self.start.value + (self.peak.value - self.start.value) * (1.0 - ops.cos(math.pi * up)) / 2.0
        falling = self.final.value + (self.peak.value - self.final.value) * (1.0 + ops.cos(math.pi * down)) / 2.0
        cycle = ops.where(step < warmup, rising, falling)
        return ops.where(self.one_cycle.value > 0.5, cycle, self.peak.value)

    def get_config(self) -> dict[str, Any]:  # never serialized; Keras requires the method
        return {}


def make_optimizer(arm: OptimizerArm, learning_rate: Any) -> keras.optimizers.Optimizer:
    """The arm's Keras optimizer with its params, exactly as the engine builds it, at `learning_rate`."""
    optimizer_class = type(keras.optimizers.get(arm.name))
    return optimizer_class(learning_rate=learning_rate, **arm.params)


class GridTrainer:
    """Fixed-budget training of one (task, arm) at any LR plan, reusing one compiled model."""

    def __init__(self, task: QualityTask, arm: OptimizerArm) -> None:
        self.task = task
        self.arm = arm
        self.schedule = VariableSchedule()
        self.total_steps = task.budget_steps
        self.loss = keras.losses.get(task.loss)
        self.model = self._fresh_model()
        # The whole budget in one compiled call: per-call overhead dominates these tiny models.
        self.model.compile(optimizer=make_optimizer(arm, self.schedule), loss=self.loss, steps_per_execution=self.total_steps)
        self.cap = task.baseline_loss()
        self._initial: dict[int, list[np.ndarray]] = {}
        self._scores: dict[tuple[LRPlan, int], float] = {}

    def _fresh_model(self) -> keras.Model:
        return keras.models.model_from_json(json.dumps(self.task.model))

    def initial_weights(self, seed: int) -> list[np.ndarray]:
        """The seed's initial weights: what `model_from_json` draws after `set_random_seed(seed)`."""
        if seed not in self._initial:
            keras.utils.set_random_seed(seed)
            self._initial[seed] = self._fresh_model().get_weights()
        return self._initial[seed]

    def batch_order(self, seed: int) -> np.ndarray:
        """Row indices for the whole budget: one fresh permutation per epoch, fixed by the seed."""
        rng = np.random.default_rng(10_000 + seed)
        rows = len(self.task.data.x)
        return np.concatenate([rng.permutation(rows) for _ in range(self.task.epochs)])

    def _reset(self, plan: LRPlan, seed: int) -> None:
        self.model.set_weights(self.initial_weights(seed))
        for variable in self.model.optimizer.variables:  # iterations, momenta, Adam moments: a fresh optimizer
            variable.assign(ops.zeros(variable.shape, variable.dtype))
        self.schedule.set(plan, self.total_steps)

    @property
    def fits(self) -> int:
        """Distinct (plan, seed) runs trained so far."""
        return len(self._scores)

    def score(self, plan: LRPlan, seed: int) -> float:
        """Validation loss after the budget, capped at the prior-predicting baseline (NaN counts as it).

        Remembered per (plan, seed): rules often pick a grid LR or one another's, and a run is
        deterministic, so training it again would only cost time.
        """
        if (plan, seed) not in self._scores:
            self._scores[plan, seed] = self._train(plan, seed)
        return self._scores[plan, seed]

    def _train(self, plan: LRPlan, seed: int) -> float:
        self._reset(plan, seed)
        data = self.task.data
        order = self.batch_order(seed)
        self.model.fit(data.x[order], data.y[order], batch_size=self.task.batch_size, epochs=1, shuffle=False, verbose=0)
        predictions = self.model.predict_on_batch(data.x_val)
        loss = float(np.mean(keras.ops.convert_to_numpy(self.loss(data.y_val, predictions))))
        return self.cap if not math.isfinite(loss) else min(loss, self.cap)
