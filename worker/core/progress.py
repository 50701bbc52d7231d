"""What the engine reports between chunks. Pure data: the worker turns it into Redis progress/events."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

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
