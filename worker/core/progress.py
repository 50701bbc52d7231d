"""What the engine reports between chunks (`Chunk`), and the job's `progress` object the task layer
keeps from them (`JobProgress`). Pure data: the worker turns both into Redis progress and events."""

from __future__ import annotations

import math

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from worker.core.spec import JobSpec

ArmState = Literal["pending", "running", "done", "diverged", "nan", "cancelled", "time_limit"]


@dataclass(frozen=True)
class Chunk:
    """New points of one arm (one seed of it), recorded since the previous chunk of that arm.

    `lrs[i]` is the learning rate used at step `step_start + i` and `losses[i]` that step's own batch
    loss. `val_losses` is filled when `evaluate_on == "validation"`.
    """

    arm_index: int
    arm_label: str
    repeat: int  # 0-based seed index within `sweep.repeats`
    step_start: int
    lrs: list[float]
    losses: list[float]
    val_losses: list[float] | None
    steps_done: int  # this arm (this repeat) so far
    steps_total: int  # this arm (this repeat) planned
    job_steps_done: int  # every arm and repeat so far
    job_steps_total: int  # every arm and repeat planned
    state: ArmState = "running"
    extra: dict[str, float] = field(default_factory=dict)


#: Returns None to go on, or a stop reason ("cancelled", "time_limit") to end the sweep cooperatively.
ChunkHook = Callable[[Chunk], str | None]


class JobProgress:
    """The job's `progress` object (docs/api.md), kept up to date from the engine's chunks."""

    def __init__(self, spec: JobSpec) -> None:
        self.spec = spec
        self.arms = [
            {"label": arm.display_label, "state": "pending", "steps_done": 0, "lr": None, "loss": None}
            for arm in spec.optimizers
        ]
        self.steps_by_seed: dict[tuple[int, int], int] = {}

    def initial(self) -> dict[str, Any]:
        """Before the first chunk: every arm pending; the total is known unless the length is in epochs
        (which needs the dataset's size)."""
        sweep = self.spec.sweep
        total = 0 if sweep.epochs is not None else sweep.total_steps(0) * len(self.arms) * sweep.repeats
        return {"steps_done": 0, "steps_total": total, "fraction": 0.0, "arms": self.arms}

    def update(self, chunk: Chunk) -> dict[str, Any]:
        self.steps_by_seed[(chunk.arm_index, chunk.repeat)] = chunk.steps_done
        arm = self.arms[chunk.arm_index]
        arm["state"] = chunk.state
        arm["steps_done"] = sum(n for (index, _), n in self.steps_by_seed.items() if index == chunk.arm_index)
        if chunk.lrs:
            arm["lr"] = finite(chunk.lrs[-1])
            arm["loss"] = finite(chunk.losses[-1])
        total = max(chunk.job_steps_total, 1)
        return {
            "steps_done": chunk.job_steps_done,
            "steps_total": chunk.job_steps_total,
            "fraction": round(min(chunk.job_steps_done / total, 1.0), 4),
            "arms": self.arms,
        }


def finite(value: float | None) -> float | None:
    """`value` as a float, or None for NaN, inf and the placeholders of steps with no measurement."""
    return None if value is None or not math.isfinite(float(value)) else float(value)
