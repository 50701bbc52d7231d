"""What the engine reports between chunks (`Chunk`), and the job's `progress` object the task layer
keeps from them (`JobProgress`). Pure data: the worker turns both into Redis progress and events."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from lrrt.spec import JobSpec

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
    #: the confirm slot this chunk trains (`sweep.confirm`); None for the range test's own runs
    candidate: int | None = None


#: Returns None to go on, or a stop reason ("cancelled", "time_limit") to end the sweep cooperatively.
ChunkHook = Callable[[Chunk], str | None]


class JobProgress:
    """The job's `progress` object (docs/api.md), kept up to date from the engine's chunks.

    The runs of a job may record from several worker processes, so the totals are sums over `runs`
    (each (arm, repeat)'s own steps and state, part of the object) and `confirm` (each confirm
    candidate's, `sweep.confirm`), and a writer resumes from the stored object
    (`JobProgress(spec, stored)`) instead of keeping its own count. `phase` says which part runs.
    """

    def __init__(self, spec: JobSpec, stored: dict[str, Any] | None = None) -> None:
        self.spec = spec
        self.arms: list[dict[str, Any]] = [
            {"label": arm.display_label, "state": "pending", "steps_done": 0, "lr": None, "loss": None}
            for arm in spec.optimizers
        ]
        self.runs: dict[tuple[int, int], dict[str, Any]] = {}
        self.confirm: dict[tuple[int, int], dict[str, Any]] = {}
        sweep = spec.sweep
        self.run_steps = 0 if sweep.epochs is not None else sweep.total_steps(0)
        if stored and stored.get("arms"):
            self.arms = stored["arms"]
            self.runs = {(r["arm_index"], r["repeat"]): r for r in stored.get("runs") or []}
            self.confirm = {(c["arm_index"], c["candidate"]): c for c in stored.get("confirm") or []}
            self.run_steps = stored.get("run_steps") or self.run_steps

    def initial(self) -> dict[str, Any]:
        """Before the first chunk: every arm pending; the total is known unless the length is in epochs
        (which needs the dataset's size)."""
        return self._object()

    def update(self, chunk: Chunk) -> dict[str, Any]:
        if chunk.candidate is not None:
            self.confirm[(chunk.arm_index, chunk.candidate)] = {
                "arm_index": chunk.arm_index, "candidate": chunk.candidate, "lr": finite(chunk.lrs[0]) if chunk.lrs else None,
                "state": chunk.state, "steps_done": chunk.steps_done}
            return self._object()
        self.run_steps = chunk.steps_total
        self.runs[(chunk.arm_index, chunk.repeat)] = {"arm_index": chunk.arm_index, "repeat": chunk.repeat,
                                                      "state": chunk.state, "steps_done": chunk.steps_done}
        seeds = [r for (index, _), r in self.runs.items() if index == chunk.arm_index]
        arm = self.arms[chunk.arm_index]
        arm["steps_done"] = sum(r["steps_done"] for r in seeds)
        arm["state"] = _arm_state(seeds, self.spec.sweep.repeats)
        if chunk.lrs:
            arm["lr"] = finite(chunk.lrs[-1])
            arm["loss"] = finite(chunk.losses[-1])
        return self._object()

    def _object(self) -> dict[str, Any]:
        sweep = self.spec.sweep
        arms = len(self.arms)
        total = self.run_steps * arms * sweep.repeats
        if sweep.confirm is not None:  # every slot counted; a slot without a candidate ends at once
            total += sweep.confirm.budget(self.run_steps) * arms * sweep.confirm.candidates
        done = sum(r["steps_done"] for r in self.runs.values()) + sum(c["steps_done"] for c in self.confirm.values())
        return {
            "steps_done": done,
            "steps_total": total,
            "fraction": round(min(done / total, 1.0), 4) if total else 0.0,
            "phase": "confirm" if self.confirm else "sweep",
            "run_steps": self.run_steps,
            **({} if sweep.confirm is None else {"confirm_steps": sweep.confirm.budget(self.run_steps)}),
            "arms": self.arms,
            "runs": sorted(self.runs.values(), key=lambda r: (r["arm_index"], r["repeat"])),
            "confirm": sorted(self.confirm.values(), key=lambda c: (c["arm_index"], c["candidate"])),
        }


def _arm_state(seeds: list[dict[str, Any]], repeats: int) -> str:
    """An arm is running while any of its seeds runs or waits, and ends as its last seed ended."""
    if any(r["state"] == "running" for r in seeds) or len(seeds) < repeats:
        return "running"
    return str(max(seeds, key=lambda r: r["repeat"])["state"])


def finite(value: float | None) -> float | None:
    """`value` as a float, or None for NaN, inf and the placeholders of steps with no measurement."""
    return None if value is None or not math.isfinite(float(value)) else float(value)
