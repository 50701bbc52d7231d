"""A job run to its end in this process: the coordinator (`lrrt.coordinator`) against a store in memory.

The in-process `lr_find` (`lrrt.client.local`, through `worker.engine.sweep.run_sweep`) has no Redis,
yet its job should live the life a fanned-out job lives, so that both give the same result from the
same assembly (`lrrt.results.stitched_result`). `MemoryJobs` keeps the records the way `JobStore`
keeps them in Redis (runs ended in any order; the range test's end releases the first confirm round, a
round's end its arm's next; a stop
ends the runs not started), chunks and outcomes included as the JSON Redis would hold; `run_here`
takes the job's runs one by one, as a single worker would, and hands each to a `Coordinator`.
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from lrrt.coordinator import Claimed, Coordinator, Engine
from lrrt.progress import Chunk, ChunkHook
from lrrt.records import JobRecord
from lrrt.result_model import JobResult, RunReport
from lrrt.runs import gate_of, run_counts
from lrrt.spec import JobSpec
from lrrt.status import TERMINAL, JobStatus
from lrrt.store.jobs import new_id, now_iso
from lrrt.store.outcomes import RunEnd


def _json(value: Any) -> Any:
    """`value` as Redis would give it back: strict JSON, tuples as lists."""
    return json.loads(json.dumps(value, allow_nan=False))


class _NoCounters:
    """An in-process job feeds no fleet's counters."""

    def add_steps(self, steps: int, seconds: float) -> None:
        pass

    def add_finished(self, status: str, duration_s: float | None) -> None:
        pass


@dataclass
class _Run:
    state: str  # queued | waiting | running | ended, as in the Redis record
    gate: tuple[int, int] | None = None  # a confirm run's (arm, round), `lrrt.runs.gate_of`
    token: str = ""
    worker: str | None = None
    attempts: int = 0
    outcome: dict[str, Any] | None = None  # the report's JSON (`RunReport.stored`), as Redis holds it


@dataclass
class _Job:
    spec: JobSpec
    runs: list[_Run]
    sweep_runs: int
    backend: str
    backend_reason: str
    created_at: str = field(default_factory=now_iso)
    status: JobStatus = "queued"
    started_at: str | None = None
    started_ts: float | None = None
    finished_at: str | None = None
    error: dict[str, Any] | None = None
    result: dict[str, Any] | None = None
    progress: dict[str, Any] | None = None
    chunks: list[dict[str, Any]] = field(default_factory=list)
    #: the stop reason the caller asked for ("cancelled"), seen by the next `run_check`
    stop: str | None = None
    version: int = 1


class MemoryJobs:
    """`lrrt.repository.JobRepository` in a dict: the jobs of this process."""

    stats = _NoCounters()

    def __init__(self) -> None:
        self.jobs: dict[str, _Job] = {}

    def create(self, spec: JobSpec, backend: str, backend_reason: str) -> str:
        """A queued job on `backend` (this process's) and why: its range-test runs queued, its confirm
        runs waiting for the range test."""
        sweep_runs, runs = run_counts(spec)
        job_id = new_id()
        self.jobs[job_id] = _Job(spec, [_Run("queued" if i < sweep_runs else "waiting", gate_of(spec, i))
                                        for i in range(runs)], sweep_runs, backend, backend_reason)
        return job_id

    def claim_next(self, job_id: str, token: str, worker: str) -> int | None:
        """Take the job's first queued run (None: none is queued, or the job ended)."""
        job = self.jobs[job_id]
        if job.status in TERMINAL:
            return None
        for index, run in enumerate(job.runs):
            if run.state == "queued":
                run.state, run.token, run.worker, run.attempts = "running", token, worker, run.attempts + 1
                if job.status == "queued":
                    job.status, job.started_at, job.started_ts = "running", now_iso(), time.time()
                return index
        return None

    def request_stop(self, job_id: str, reason: str) -> None:
        """Stop the job at its running run's next chunk with `reason` (`run_check`'s answer)."""
        self.jobs[job_id].stop = reason

    def result(self, job_id: str) -> dict[str, Any] | None:
        return self.jobs[job_id].result

    # ------------------------------------------------------------------ JobRepository
    def get(self, job_id: str) -> JobRecord | None:
        job = self.jobs.get(job_id)
        if job is None:
            return None
        return JobRecord(id=job_id, tenant="local", status=job.status, queue=None, backend=job.backend,
                         backend_reason=job.backend_reason, spec=job.spec,
                         labels=job.spec.labels or {}, created_at=job.created_at, started_at=job.started_at,
                         finished_at=job.finished_at, error=job.error, attempts=max(r.attempts for r in job.runs),
                         started_ts=job.started_ts, runs=len(job.runs), version=job.version, progress=job.progress,
                         cancel_requested=job.stop == "cancelled")

    def run_check(self, job_id: str, run: int, token: str) -> str | None:
        job = self.jobs[job_id]
        if job.status != "running" or job.runs[run].token != token:
            return "lost"
        return job.stop

    def start_progress(self, job_id: str, progress: dict[str, Any]) -> None:
        job = self.jobs[job_id]
        if job.progress is None:
            job.progress = _json(progress)

    def record_chunk(self, job_id: str, progress: dict[str, Any] | Callable[[dict[str, Any] | None], dict[str, Any]],
                     chunk: dict[str, Any]) -> None:
        job = self.jobs[job_id]
        job.progress = _json(progress(job.progress) if callable(progress) else progress)
        job.chunks.append(_json(chunk))
        job.version += 1

    def end_run(self, job_id: str, run: int, token: str, report: RunReport, abandon: str = "") -> RunEnd:
        """`lrrt/store/lua/end_run.lua`, in Python."""
        job = self.jobs[job_id]
        if job.runs[run].token != token:
            return RunEnd.LOST
        if job.status != "running":
            return RunEnd.GONE
        job.runs[run].state, job.runs[run].outcome = "ended", _json(report.stored())
        job.version += 1
        for other in job.runs:
            if abandon and other.state in ("queued", "waiting"):
                other.state, other.outcome = "ended", {"stop_reason": abandon}
        if all(r.state == "ended" for r in job.runs):
            return RunEnd.LAST
        if any(r.state != "ended" for r in job.runs[: job.sweep_runs]):
            return RunEnd.MORE
        pending = {r.gate for r in job.runs if r.state != "ended"}
        released = RunEnd.MORE
        for r in job.runs:
            if r.state == "waiting" and r.gate is not None and (r.gate[1] == 0 or (r.gate[0], r.gate[1] - 1) not in pending):
                r.state, released = "queued", RunEnd.CONFIRM if r.gate[1] == 0 else RunEnd.ROUND
        return released

    def run_outcomes(self, job_id: str) -> dict[int, RunReport]:
        return {i: RunReport.read(r.outcome, attempts=r.attempts, worker=r.worker)
                for i, r in enumerate(self.jobs[job_id].runs) if r.outcome is not None}

    def chunks(self, job_id: str) -> list[dict[str, Any]]:
        return list(self.jobs[job_id].chunks)

    def finish(self, job_id: str, status: str, *, result: dict[str, Any] | None = None,
               error: dict[str, Any] | None = None, token: str = "", expected: str = "any") -> bool:
        """`lrrt/store/lua/finish.lua`, in Python."""
        assert status in TERMINAL
        job = self.jobs[job_id]
        if job.status in TERMINAL or (expected != "any" and job.status != expected):
            return False
        if token and job.status == "running" and all(r.token != token for r in job.runs):
            return False
        job.status, job.finished_at, job.error = status, now_iso(), error  # type: ignore[assignment]
        job.result = None if result is None else _json(result)
        job.version += 1
        return True


@dataclass(frozen=True)
class Finished:
    """How a job run here ended: its record (status, error) and its result (partial for a stopped job)."""

    record: JobRecord
    result: JobResult | None


def run_here(spec: JobSpec, engine: Engine, *, backend: str, backend_reason: str,
             on_chunk: ChunkHook | None = None) -> Finished:
    """Run every run of `spec` here, one at a time, through the coordinator, and return how the job ended.
    `backend` is the engine's (this process's) and `backend_reason` why it runs the job: the record's
    routing choice, which the result's `engine.backend_reason` shows.

    `on_chunk` sees each chunk with the job's own step counts (`job_steps_done` over every run so far,
    as the job's `progress` has them) and may return a stop reason: the job is then cancelled, as a
    service job is, its running run stopped at once and the runs not started ended `cancelled`. An
    error the engine raised (an `EngineError` for the user, or any other) is raised here as it was,
    after the job is recorded failed: a notebook shows the real traceback. There is no time limit: the
    caller's process is the caller's.
    """
    jobs = MemoryJobs()
    job_id = jobs.create(spec, backend, backend_reason)
    worker = f"{socket.gethostname()}-{os.getpid()}"

    def after_chunk(chunk: Chunk, seconds: float) -> None:
        if on_chunk is None:
            return
        progress = jobs.jobs[job_id].progress or {}
        stop = on_chunk(replace(chunk, job_steps_done=progress.get("steps_done", chunk.job_steps_done),
                                job_steps_total=progress.get("steps_total", chunk.job_steps_total)))
        if stop:
            jobs.request_stop(job_id, "cancelled")

    while (run := jobs.claim_next(job_id, token := new_id(), worker)) is not None:
        coordinator = Coordinator(jobs, engine, Claimed(job_id, run, 1, token, worker), time_limit_s=None,
                                  default_queue="", send=lambda queue: None,  # the loop takes every queued run
                                  after_chunk=after_chunk)
        coordinator.run()
        if coordinator.failure is not None:
            raise coordinator.failure
    record = jobs.get(job_id)
    assert record is not None and record.status in TERMINAL, "every run ended, so the last one finished the job"
    result = jobs.result(job_id)
    return Finished(record, None if result is None else JobResult.model_validate(result))
