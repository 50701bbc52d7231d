"""A fake `lrrt.coordinator.Engine`: made-up curves, reported chunk by chunk through the coordinator's
hook exactly as the Keras engine reports them, so that the coordinator, the store and the result
assembly run for real, in milliseconds, without Keras.

Arm `i`'s range-test loss falls around 10**centers[i] and blows up `blowup` decades above it (where
the range test's lowest loss lies sets confirm's ceiling, `lrrt.confirm.ceiling`); a confirm candidate's
held-out loss is its distance (in decades) from 10**best[i], so the winner is known in advance.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from lrrt.coordinator import Ran
from lrrt.problems import EngineError
from lrrt.progress import Chunk, ChunkHook
from lrrt.result_model import RunFigures, RunOutcome
from lrrt.spec import JobSpec


def figures(steps: int) -> RunFigures:
    """What the fake engine reports of a run of `steps` steps."""
    return RunFigures(keras="fake", backend="fake", device="cpu", steps_per_execution=1, steps=steps,
                      fit_seconds=0.01, seconds=0.01)


@dataclass
class FakeEngine:
    centers: list[float] = field(default_factory=lambda: [-1.5, -2.5, -2.0])
    best: list[float] = field(default_factory=lambda: [-2.0, -3.0, -2.5])
    chunk: int = 25
    #: decades above the center where the range-test loss blows up
    blowup: float = 1.2
    #: raised by `sweep` (a model Keras cannot build, say)
    fail: EngineError | None = None
    #: called with every chunk before the hook sees it (a test cancels a job there, say)
    on_step: Callable[[Chunk], None] | None = None
    #: the confirm LRs trained, by (arm index, slot)
    trained: dict[tuple[int, int], float] = field(default_factory=dict)

    def prepare(self) -> None:
        pass

    def curve(self, spec: JobSpec, arm_index: int) -> tuple[list[float], list[float]]:
        """Arm `arm_index`'s range-test curve: (lrs, losses)."""
        n = spec.sweep.num_steps or 200
        lrs = np.geomspace(spec.sweep.start_lr, spec.sweep.end_lr, n)
        x, c = np.log10(lrs), self.centers[arm_index]
        losses = 2.3 - 1.6 / (1 + np.exp(-(x - c) * 3)) + np.exp((x - c - self.blowup) * 3)
        return lrs.tolist(), losses.tolist()

    def sweep(self, spec: JobSpec, arm_index: int, repeat: int, on_chunk: ChunkHook, *, tenant: str) -> Ran:
        if self.fail is not None:
            raise self.fail
        lrs, losses = self.curve(spec, arm_index)
        stopped, _ = self._report(spec, arm_index, repeat, lrs, losses, on_chunk, candidate=None)
        outcome = RunOutcome(stop_reason=stopped or "completed", fingerprint={"initial_weights": f"seed{repeat}"})
        return Ran(outcome, figures(len(lrs)), stopped)

    def confirm(self, spec: JobSpec, arm_index: int, slot: int, lr: float, on_chunk: ChunkHook, *, tenant: str) -> Ran:
        assert spec.sweep.confirm is not None
        self.trained[(arm_index, slot)] = lr
        steps = spec.sweep.confirm.budget(spec.sweep.num_steps or 200)
        val_loss = 0.1 + abs(math.log10(lr) - self.best[arm_index])
        losses = np.linspace(2.0, val_loss, steps).tolist()
        stopped, ran = self._report(spec, arm_index, 0, [lr] * steps, losses, on_chunk, candidate=slot)
        outcome = RunOutcome(lr=lr, val_loss=None if stopped else val_loss, steps=ran, losses=losses[:ran],
                             stop_reason=stopped or "completed", fingerprint=None)
        return Ran(outcome, figures(ran), stopped)

    def _report(self, spec: JobSpec, arm_index: int, repeat: int, lrs: list[float], losses: list[float],
                on_chunk: ChunkHook, *, candidate: int | None) -> tuple[str | None, int]:
        """Hand the curve to the hook chunk by chunk; the hook's stop reason ends it early. Returns that
        reason (None: ran to its end) and the steps handed over, what a stopped Keras run reports too
        (`worker.engine.sweep.ConfirmCurve.outcome`)."""
        n = len(lrs)
        for start in range(0, n, self.chunk):
            end = min(n, start + self.chunk)
            chunk = Chunk(arm_index, spec.optimizers[arm_index].display_label, repeat, start, lrs[start:end],
                          losses[start:end], None, end, n, end, n, state="done" if end == n else "running",
                          candidate=candidate)
            if self.on_step is not None:
                self.on_step(chunk)
            stop = on_chunk(chunk)
            if stop:
                return stop, end
        return None, n
