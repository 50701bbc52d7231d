"""The result of a job, in the API's shape, assembled one way for finished and unfinished jobs.

- `chunk_record`: what the worker stores per chunk of one arm and seed
  (`{arm_index, arm_label, repeat, step_start, state, steps_total, lrs, losses, val_losses}`);
- `stitch`: a run's curves back from its chunks;
- `arm_result`: one arm's entry from its runs (one per seed), suggestions and spread included;
- `partial_result`: the result of whatever chunks are stored (running, cancelled, failed jobs), so
  plots of a running job and the partial curves of a cancelled one read exactly like a finished result;
- `stitched_result`: the same from every run's chunks and end report: a fanned-out job's result;
- `finished_result`: the result from its arms once every run has ended (the engine's, and the above);
  with `sweep.confirm`, each arm's `confirm` candidates and the recommendation from their measured winner
  (`lrrt.confirm`).

Pure NumPy: the API process calls it, and so do the engine and the tests' fakes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from lrrt import confirm, suggestions
from lrrt.progress import Chunk, finite
from lrrt.result_model import EngineFigures, RunOutcome
from lrrt.spec import JobSpec, OptimizerArm

#: Arm states (`lrrt.progress.ArmState`) that end an arm, and the stop reason each reports.
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
        if c["arm_index"] != arm_index or c.get("repeat", 0) != repeat or c.get("candidate") is not None:
            continue  # another run's, or a confirm candidate's (its outcome carries its curve)
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


@dataclass
class RunCurves:
    """Raw curves of one arm for one seed."""

    lrs: list[float | None] = field(default_factory=list)
    losses: list[float | None] = field(default_factory=list)
    val_losses: list[float | None] | None = None
    stop_reason: str = "completed"
    #: short sha256 of the run's initial weights and first batch: `{"initial_weights", "first_batch"}`
    fingerprint: dict[str, str] | None = None


def chunk_record(chunk: Chunk) -> dict[str, Any]:
    """What `stitch` puts back together (non-finite values stored as null: Redis holds strict JSON); a
    confirm candidate's chunk names its slot (`candidate`), and `stitch` leaves it out of the curves."""
    record = {
        "arm_index": chunk.arm_index,
        "arm_label": chunk.arm_label,
        "repeat": chunk.repeat,
        "step_start": chunk.step_start,
        "state": chunk.state,
        "steps_total": chunk.steps_total,
        "lrs": [finite(v) for v in chunk.lrs],
        "losses": [finite(v) for v in chunk.losses],
        "val_losses": None if chunk.val_losses is None else [finite(v) for v in chunk.val_losses],
    }
    if chunk.candidate is not None:
        record["candidate"] = chunk.candidate
    return record


def arm_result(arm: OptimizerArm, runs: list[RunCurves], spec: JobSpec, *, planned_steps: int,
               seeds: list[int]) -> dict[str, Any]:
    """One arm's entry of the result: the first seed's curves, the rules' analysis, and with several
    seeds their spread (the recommendation is then the median of the seeds' recommendations)."""
    sweep = spec.sweep
    analyses = [suggestions.analyze_arm(
        r.lrs, r.losses, smoothing=sweep.smoothing, moving_average=sweep.moving_average, stop_reason=r.stop_reason,
        planned_steps=planned_steps, val_losses=r.val_losses if sweep.evaluate_on == "validation" else None,
    ) for r in runs]
    main, analysis = runs[0], analyses[0]
    result: dict[str, Any] = {
        "label": arm.display_label,
        "optimizer": {"name": arm.name, "params": dict(arm.params)},
        "lrs": main.lrs, "losses": main.losses, "val_losses": main.val_losses,
        "stop_reason": main.stop_reason,
        **analysis,
        "fingerprint": main.fingerprint,
        "repeats": None,
    }
    if len(runs) > 1:
        spread = suggestions.repeat_spread(analyses, seeds)
        spread["stop_reasons"] = [r.stop_reason for r in runs]
        spread["fingerprints"] = [r.fingerprint for r in runs]
        result["repeats"] = spread
        if spread["median"].get("recommended") is not None:
            result["recommended_lr"] = spread["median"]["recommended"]
    return result


def finished_result(arms: list[dict[str, Any]], *, engine: EngineFigures | None, stopped: str | None,
                    confirm_steps: int | None = None, notes: list[dict[str, str]] | None = None) -> dict[str, Any]:
    """The whole result from its arms: the best arm, the recommendation, strict JSON throughout.

    With `confirm_steps` (the job confirms; each arm's `confirm` list is filled), the best arm and the
    recommendation are the measured winner's: `verified: true`, with the criterion named. When no
    candidate could be scored, the range test's recommendation stays, unverified, and says why.
    `notes` (a compiled model's, `JobSpec.compiled_notes`) are kept only when there are some.
    """
    best = suggestions.best_arm(arms)
    recommendation = suggestions.recommendation(arms, best)
    if confirm_steps is not None:
        won = confirm.winner(arms)
        if won is not None:
            arm, row = won
            best = arm["label"]
            criterion = confirm.CRITERION.format(steps=confirm_steps)
            measured = suggestions.recommendation(arms, best, learning_rate=row["lr"])
            assert measured is not None  # `best` is one of `arms`
            recommendation = {**measured, "optimizer_criterion": criterion, "rule": "confirm", "verified": True,
                              "criterion": criterion, "val_loss": row["val_loss"],
                              "range_test_lr": arm.get("recommended_lr")}
        elif recommendation is not None and any(arm.get("confirm") for arm in arms):
            recommendation["criterion"] += "; confirm could not verify it: " + confirm.UNVERIFIED
    return suggestions.json_safe({"arms": arms, "best_arm": best, "recommendation": recommendation,
                                  "recommendation_reason": suggestions.recommendation_reason(arms),
                                  "engine": None if engine is None else engine.api(), "stopped": stopped,
                                  **({"notes": notes} if notes else {})})


def partial_result(spec: JobSpec, chunks: list[dict[str, Any]], *, stopped: str | None = None,
                   confirmed: dict[tuple[int, int], RunOutcome] | None = None) -> dict[str, Any]:
    """The result of the steps recorded so far (repeat 0 of each arm), in the API's result shape.

    `stopped` is None for a job still running or lost,
    "cancelled" or "time_limit" for one that ended early. Suggestions, diagnostics and the
    recommendation are the engine's own rules (`arm_result`) on these curves, so they match what a
    finished job reports for the same points; `confirmed` holds the confirm candidates that ended.
    """
    return stitched_result(spec, chunks, {}, repeats=1, stopped=stopped, engine=None, confirmed=confirmed)


def stitched_result(job: JobSpec, chunks: list[dict[str, Any]], outcomes: dict[tuple[int, int], RunOutcome],
                    *, repeats: int | None = None, stopped: str | None, engine: EngineFigures | None,
                    confirmed: dict[tuple[int, int], RunOutcome] | None = None) -> dict[str, Any]:
    """The result from the recorded chunks of each (arm, repeat) run and what each run reported when it
    ended (`outcomes`: its stop reason and fingerprint by (arm index, repeat); a run without one is
    still running, or never started), and the ended confirm runs (`confirmed`: each one's outcome by
    (arm index, slot)).

    Every job is assembled here once, by whichever run ended last, whether its runs were spread over
    workers or run one by one in this process (`lrrt.inprocess`): one assembly, one result. `repeats`
    limits the seeds read (partial results show the first).
    """
    seeds = [job.sweep.seed + r for r in range(repeats or job.sweep.repeats)]
    arms = []
    planned = 0
    for index, arm in enumerate(job.optimizers):
        curves = [stitch(chunks, index, r) for r in range(len(seeds))]
        runs = []
        for r, curve in enumerate(curves):
            outcome = outcomes.get((index, r))
            reason = outcome.stop_reason if outcome is not None else _ENDED.get(curve["state"], stopped)
            runs.append(RunCurves(curve["lrs"], curve["losses"], curve["val_losses"], reason or "running",
                                  None if outcome is None else outcome.fingerprint))
        planned = max(c["steps_total"] for c in curves) or job.sweep.num_steps or len(runs[0].lrs)
        entry = arm_result(arm, runs, job, planned_steps=planned, seeds=seeds)
        if entry["stop_reason"] == "running":  # still sweeping, or lost with its worker
            entry["stop_reason"] = None
        if job.sweep.confirm is not None:
            entry["confirm"] = confirm.arm_entries(confirmed or {}, index)
            entry["confirm_bracket"] = confirm.bracket(entry["confirm"], job, entry)
        arms.append(entry)
    return finished_result(arms, engine=engine, stopped=stopped, confirm_steps=confirm_steps(job, planned),
                           notes=job.compiled_notes())


def confirm_steps(spec: JobSpec, planned_steps: int) -> int | None:
    """Each confirm candidate's budget for a sweep of `planned_steps` (None: the job does not confirm)."""
    if spec.sweep.confirm is None:
        return None
    return spec.sweep.confirm.budget(planned_steps)
