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
    lrs: list[float | None]
    losses: list[float | None]  # None where the loss was NaN or inf (the chunk is strict JSON)
    val_losses: list[float] | None
    steps_done: int  # this arm (this repeat) so far
    steps_total: int  # this arm (this repeat) planned
    job_steps_done: int  # every run of this sweep_runs call so far
    job_steps_total: int  # every run of this sweep_runs call planned
    state: ArmState = "running"
    extra: dict[str, float] = field(default_factory=dict)


#: Returns None to go on, or a stop reason ("cancelled", "time_limit") to end the sweep cooperatively.
ChunkHook = Callable[[Chunk], str | None]


class JobProgress:
    """The job's `progress` object (docs/api.md), kept up to date from the engine's chunks.

    The runs of a job may record from several worker processes, so the totals are sums over `runs`
    (each (arm, repeat)'s own steps and state, part of the object), and a writer resumes from the
    stored object (`JobProgress(spec, stored)`) instead of keeping its own count.
    """

    def __init__(self, spec: JobSpec, stored: dict[str, Any] | None = None) -> None:
        self.spec = spec
        self.arms: list[dict[str, Any]] = [
            {"label": arm.display_label, "state": "pending", "steps_done": 0, "lr": None, "loss": None}
            for arm in spec.optimizers
        ]
        self.runs: dict[tuple[int, int], dict[str, Any]] = {}
        if stored and stored.get("arms"):
            self.arms = stored["arms"]
            self.runs = {(r["arm_index"], r["repeat"]): r for r in stored.get("runs") or []}

    def initial(self) -> dict[str, Any]:
        """Before the first chunk: every arm pending; the total is known unless the length is in epochs
        (which needs the dataset's size)."""
        sweep = self.spec.sweep
        total = 0 if sweep.epochs is not None else sweep.total_steps(0) * len(self.arms) * sweep.repeats
        return {"steps_done": 0, "steps_total": total, "fraction": 0.0, "arms": self.arms, "runs": []}

    def update(self, chunk: Chunk) -> dict[str, Any]:
        self.runs[(chunk.arm_index, chunk.repeat)] = {"arm_index": chunk.arm_index, "repeat": chunk.repeat,
                                                      "state": chunk.state, "steps_done": chunk.steps_done}
        seeds = [r for (index, _), r in self.runs.items() if index == chunk.arm_index]
        arm = self.arms[chunk.arm_index]
        arm["steps_done"] = sum(r["steps_done"] for r in seeds)
        arm["state"] = _arm_state(seeds, self.spec.sweep.repeats)
        if chunk.lrs:
            arm["lr"] = finite(chunk.lrs[-1])
            arm["loss"] = finite(chunk.losses[-1])
        done = sum(r["steps_done"] for r in self.runs.values())
        total = max(chunk.steps_total * len(self.arms) * self.spec.sweep.repeats, 1)
        return {
            "steps_done": done,
            "steps_total": total,
            "fraction": round(min(done / total, 1.0), 4),
            "arms": self.arms,
            "runs": sorted(self.runs.values(), key=lambda r: (r["arm_index"], r["repeat"])),
        }


def _arm_state(seeds: list[dict[str, Any]], repeats: int) -> str:
    """An arm is running while any of its seeds runs or waits, and ends as its last seed ended."""
    if any(r["state"] == "running" for r in seeds) or len(seeds) < repeats:
        return "running"
    return str(max(seeds, key=lambda r: r["repeat"])["state"])


def finite(value: float | None) -> float | None:
    """`value` as a float, or None for NaN, inf and the placeholders of steps with no measurement."""
    return None if value is None or not math.isfinite(float(value)) else float(value)
