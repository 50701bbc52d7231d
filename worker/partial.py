"""A result assembled from the curve chunks stored so far: for running, cancelled and failed jobs.

The worker appends one chunk per arm between `steps_per_execution` batches
(`{arm_index, arm_label, repeat, step_start, state, steps_total, lrs, losses, val_losses}`); this module stitches them
back into the API's result shape so that plots of a running job and the partial curves of a
cancelled or failed one read exactly like a finished result. Pure NumPy: the API process calls it.
"""

from __future__ import annotations

from typing import Any

from worker.engine import suggestions
from worker.spec import JobSpec

#: Arm states (`worker.engine.progress.ArmState`) that end an arm, and the stop reason each reports.
_ENDED = {"done": "completed", "diverged": "diverged", "nan": "nan"}


def stitch(chunks: list[dict[str, Any]], arm_index: int, repeat: int = 0) -> dict[str, Any]:
    """One arm and seed's `lrs`, `losses`, `val_losses` in step order, with its last `state` and
    `steps_total`.

    Each chunk lands at its `step_start`, replacing anything recorded from there on: a job that was
    retried after its worker died records from step 0 again, and its new curve supersedes the old.
    """
    lrs: list[float | None] = []
    losses: list[float | None] = []
    vals: list[float | None] | None = None
    state, steps_total = "pending", 0
    for c in chunks:
        if c["arm_index"] != arm_index or c.get("repeat", 0) != repeat:
            continue
        start = int(c["step_start"])
        del lrs[start:], losses[start:]
        lrs.extend(c["lrs"])
        losses.extend(c["losses"])
        if c.get("val_losses") is not None:
            vals = (vals or [])[:start] + list(c["val_losses"])
        elif vals is not None:
            del vals[start:]
        state, steps_total = c.get("state", "running"), int(c.get("steps_total") or 0)
    return {"lrs": lrs, "losses": losses, "val_losses": vals, "state": state, "steps_total": steps_total}


def partial_result(spec: dict[str, Any], chunks: list[dict[str, Any]], *, stopped: str | None = None) -> dict[str, Any]:
    """The result of the steps recorded so far (repeat 0 of each arm), in the API's result shape.

    `spec` is the stored job spec (as submitted); `stopped` is None for a job still running or lost,
    "cancelled" or "time_limit" for one that ended early. Suggestions, diagnostics and the
    recommendation are the engine's own NumPy rules run on these curves, so they match what a
    finished job reports for the same points.
    """
    job = JobSpec.model_validate(spec)
    arms = []
    for index, arm in enumerate(job.optimizers):
        curve = stitch(chunks, index)
        stop_reason = _ENDED.get(curve["state"], stopped)
        arms.append(
            {
                "label": arm.display_label,
                "optimizer": {"name": arm.name, "params": dict(arm.params)},
                "lrs": curve["lrs"],
                "losses": curve["losses"],
                "val_losses": curve["val_losses"],
                "stop_reason": stop_reason,
                "repeats": None,
                **suggestions.analyze_arm(
                    curve["lrs"],
                    curve["losses"],
                    smoothing=job.sweep.smoothing,
                    moving_average=job.sweep.moving_average,
                    stop_reason=stop_reason or "running",
                    planned_steps=curve["steps_total"] or job.sweep.num_steps or len(curve["lrs"]),
                    val_losses=curve["val_losses"] if job.sweep.evaluate_on == "validation" else None,
                ),
            }
        )
    best = suggestions.best_arm(arms)
    return suggestions.json_safe(
        {"arms": arms, "best_arm": best, "recommendation": suggestions.recommendation(arms, best),
         "recommendation_reason": suggestions.recommendation_reason(arms),
         "engine": None, "stopped": stopped}
    )
