"""One claimed run of a job, from the record to the job's end, against the store and an engine given to it.

The Celery task (`worker.tasks`) claims a run and keeps its lease alive; everything else a run does
happens here, once for every kind of run (a range test's (arm, repeat), a confirm candidate):

- read the record (its spec is validated there, `lrrt.records`) and stop before starting when a cancel
  was asked for, the job passed its time limit, or the run is no longer ours;
- a confirm run works out its LR from the range test's recorded curves and its arm's earlier rounds'
  held-out losses (every range-test run, and every earlier round of its arm, has ended before a
  confirm run is released, so each worker finds the same candidates); a slot the search does not
  need (`lrrt.confirm.planned_lrs`) ends `skipped` at once;
- run the engine with a chunk hook that stores progress and curve points and says when to stop;
- record how the run ended (`JobRepository.end_run`): when that released confirm runs (the first
  round, or its arm's next round), send their messages; when it was the job's last run, assemble the
  result from every run's chunks and outcomes (`lrrt.results.stitched_result`) and finish the job. A run the engine
  cannot run fails the job now.

The engine is a protocol (`Engine`): the worker gives the Keras one, tests a fake that makes up curves,
so the whole sequence is tested against the real store in milliseconds. The store is one too
(`lrrt.repository.JobRepository`): Redis for the service, memory for the in-process `lr_find`
(`lrrt.inprocess`), so both paths live one job's life and assemble one result.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from lrrt import confirm
from lrrt.problems import EngineError, InternalError, ProblemException, TimeLimit
from lrrt.progress import Chunk, ChunkHook, JobProgress
from lrrt.reaper import partial_or_none
from lrrt.repository import JobRepository
from lrrt.result_model import EngineFigures, EngineRun, JobResult, RunFigures, RunOutcome, RunReport
from lrrt.results import chunk_record, stitched_result
from lrrt.runs import RunRef, released_runs, run_of, split_outcomes
from lrrt.spec import JobSpec
from lrrt.store.outcomes import RunEnd

log = logging.getLogger(__name__)

@dataclass(frozen=True)
class Ran:
    """What the engine reports of one run: its outcome (a range test's `stop_reason` and `fingerprint`,
    a candidate's `lrrt.confirm` entry), its figures (`job_engine` sums them up), and the stop reason
    the chunk hook gave, when the hook stopped it."""

    outcome: RunOutcome
    engine: RunFigures
    stopped: str | None


class Engine(Protocol):
    def prepare(self) -> None:
        """Load what the engine needs before its first step (the watchdog does not time this)."""

    def sweep(self, spec: JobSpec, arm_index: int, repeat: int, on_chunk: ChunkHook, *, tenant: str) -> Ran:
        """The range test of one arm and seed of `tenant`'s job (whose data grants a service worker
        checks again); raises `EngineError` for what the user must change."""

    def confirm(self, spec: JobSpec, arm_index: int, slot: int, lr: float, on_chunk: ChunkHook, *, tenant: str) -> Ran:
        """Train confirm candidate `slot` of an arm at the constant `lr` and score it."""


@dataclass(frozen=True)
class Claimed:
    """The run a claim gave this runner: which one, its attempt, the token that holds it, and by whom."""

    job_id: str
    run: int
    attempts: int
    token: str
    worker: str


class Coordinator:
    """Runs one claimed run to its end. `send(queue)` sends one more message for the job to `queue`;
    `after_chunk(chunk, seconds)` sees every chunk recorded and the seconds since the previous one.
    `time_limit_s` None: no time limit (a job run in the caller's own process, `lrrt.inprocess`)."""

    def __init__(self, store: JobRepository, engine: Engine, claimed: Claimed, *, time_limit_s: int | None,
                 default_queue: str,
                 send: Callable[[str], None], after_chunk: Callable[[Chunk, float], None] | None = None) -> None:
        self.store = store
        self.engine = engine
        self.claimed = claimed
        self.time_limit_s = time_limit_s
        self.send = send
        self.after_chunk = after_chunk
        self.queue = default_queue  # the job's own, once its record is read
        self.spec: JobSpec | None = None
        self.started_ts = time.time()
        #: when the run last proved progress (a chunk, or the engine starting): the watchdog reads it
        self.last_chunk_at = time.monotonic()
        #: set when the run is no longer ours (taken over, expired, or the job ended elsewhere)
        self.lost = threading.Event()
        #: the error that failed the job (the job records its problem; an in-process caller re-raises it)
        self.failure: Exception | None = None

    def run(self) -> str:
        """Run it; returns what happened, for the log."""
        c = self.claimed
        job = self.store.get(c.job_id)
        if job is None:  # deleted between claim and here
            return "skip"
        spec = self.spec = job.spec
        self.backend_reason = job.backend_reason
        self.queue = job.queue or self.queue
        self.started_ts = job.started_ts or self.started_ts
        try:
            ref = run_of(spec, c.run)
            before = self.store.run_check(c.job_id, c.run, c.token) or self._over_time()
            if before == "lost":  # the job ended meanwhile (another run failed it) or the run was taken over
                return "lease-lost"
            if before:  # cancelled (or out of time) before this run started: it never runs
                return self._end_run(spec, RunReport(outcome=RunOutcome(stop_reason=before)), stopped=before)
            lr = None if ref.slot is None else candidate_lr(self.store, c.job_id, spec, ref)
            if ref.slot is not None and lr is None:  # the arm has fewer candidates than slots (or none)
                return self._end_run(spec, RunReport(outcome=RunOutcome(stop_reason="skipped")), stopped=None)
            self.store.start_progress(c.job_id, JobProgress(spec).initial())
            self.engine.prepare()
            self.last_chunk_at = time.monotonic()  # the watchdog times the run, not the engine's loading
            if ref.slot is None:
                ran = self.engine.sweep(spec, ref.arm_index, ref.repeat, self.on_chunk, tenant=job.tenant)
            else:
                assert lr is not None
                ran = self.engine.confirm(spec, ref.arm_index, ref.slot, lr, self.on_chunk, tenant=job.tenant)
        except EngineError as exc:
            return self.fail(exc)
        except Exception as exc:
            log.exception("job %s: unexpected error in the sweep", c.job_id)
            self.failure = exc
            return self._fail(spec, InternalError(c.job_id).problem())
        if self.lost.is_set():
            # Our lease is gone (another worker took the run over, it expired, or the job ended
            # elsewhere): whatever we report could overwrite a live run. Its owner or the reaper ends it.
            return "lease-lost"
        return self._end_run(spec, RunReport(outcome=ran.outcome, figures=ran.engine), stopped=ran.stopped)

    # ------------------------------------------------------------------ between chunks
    def on_chunk(self, chunk: Chunk) -> str | None:
        """The engine's hook: store progress and the new points; say when to stop."""
        if self.lost.is_set():  # the run may run elsewhere now: stop writing into the job
            return "cancelled"
        c, spec = self.claimed, self.spec
        assert spec is not None
        now = time.monotonic()
        seconds, self.last_chunk_at = now - self.last_chunk_at, now
        self.store.record_chunk(c.job_id, lambda stored: JobProgress(spec, stored).update(chunk), chunk_record(chunk))
        self.store.stats.add_steps(len(chunk.losses), seconds)
        if self.after_chunk is not None:
            self.after_chunk(chunk, seconds)
        check = self.store.run_check(c.job_id, c.run, c.token)
        if check == "lost":
            self.lost.set()
            return "cancelled"
        return check or self._over_time()

    def _over_time(self) -> str | None:
        over = self.time_limit_s is not None and time.time() - self.started_ts > self.time_limit_s
        return "time_limit" if over else None

    # ------------------------------------------------------------------ ending
    def _end_run(self, spec: JobSpec, report: RunReport, *, stopped: str | None) -> str:
        """Record the run's ending; the last run of the job to end finishes the job."""
        c = self.claimed
        ended = self.store.end_run(c.job_id, c.run, c.token, report, stopped or "")
        if ended in (RunEnd.CONFIRM, RunEnd.ROUND):  # confirm runs released: one message each, to the job's queue
            for _ in range(released_runs(spec, run_of(spec, c.run))):
                self.send(self.queue)
        if ended is not RunEnd.LAST:  # others still run, or confirm runs start, or the run is not ours any more
            return ended.value
        stop, result = assembled(self.store, c.job_id, spec, self.started_ts, self.backend_reason)
        if stop == "cancelled":
            return self._finish("cancelled", result=result)
        if stop == "time_limit":
            assert self.time_limit_s is not None  # only `_over_time` stops a run for time
            return self._finish("failed", result=result, error=TimeLimit(self.time_limit_s).problem())
        return self._finish("succeeded", result=result)

    def fail(self, error: ProblemException) -> str:
        """Fail the job with `error`, a problem of the request, from this run. The worker's memory guard
        calls it from its own thread while the run still allocates (worker/tasks.py): the job is failed
        under this run's token, so a redelivered message finds it ended and claims nothing."""
        assert self.spec is not None, "a run fails its job once it has read the job's spec"
        self.failure = error
        return self._fail(self.spec, error.problem())

    def _fail(self, spec: JobSpec, problem: dict[str, Any]) -> str:
        """A run that cannot go on fails its job now; the job's other runs stop at their next chunk."""
        try:
            partial = partial_or_none(self.store, self.claimed.job_id, spec, None)
            result = None if partial is None else JobResult.model_validate(partial)
        except Exception:  # a failed job keeps its error even when its curves cannot be assembled
            log.exception("job %s: could not assemble the partial result", self.claimed.job_id)
            result = None
        return self._finish("failed", error=problem, result=result)

    def _finish(self, status: str, *, result: JobResult | None = None, error: dict[str, Any] | None = None) -> str:
        c = self.claimed
        stored = None if result is None else result.api()  # the store keeps JSON
        if not self.store.finish(c.job_id, status, result=stored, error=error, token=c.token, expected="running"):
            log.info("job %s: outcome %s dropped (job already ended or taken over)", c.job_id, status)
            return "dropped"
        self.store.stats.add_finished(status, time.time() - self.started_ts)
        return status


def candidate_lr(store: JobRepository, job_id: str, spec: JobSpec, ref: RunRef) -> float | None:
    """The LR of confirm run `ref`, from the range test's recorded curves and outcomes and the held-out
    losses of its arm's earlier rounds (None: the slot has no candidate, `lrrt.confirm.planned_lrs`)."""
    assert ref.slot is not None
    sweep, confirmed = split_outcomes(spec, store.run_outcomes(job_id))
    ranged = stitched_result(spec, store.chunks(job_id), sweep, stopped=None, engine=None)
    return confirm.slot_lr(ranged["arms"][ref.arm_index], spec, ref.slot, confirm.slot_losses(confirmed, ref.arm_index))


def assembled(store: JobRepository, job_id: str, spec: JobSpec, started_ts: float,
              backend_reason: str | None) -> tuple[str | None, JobResult]:
    """Why the job stopped early ('time_limit', 'cancelled', or None) and its result, from every ended
    run's chunks and outcome: what the run that ends last finishes the job with. `backend_reason` is
    the routing choice's, from the job's record."""
    reports = store.run_outcomes(job_id)
    reasons = {report.outcome.stop_reason for report in reports.values()}
    stop = "time_limit" if "time_limit" in reasons else "cancelled" if "cancelled" in reasons else None
    sweep, confirmed = split_outcomes(spec, reports)
    return stop, JobResult.model_validate(stitched_result(
        spec, store.chunks(job_id), sweep, confirmed=confirmed, stopped=stop,
        engine=job_engine(reports, spec, started_ts, backend_reason)))


def job_engine(reports: dict[int, RunReport], spec: JobSpec, started_ts: float,
               backend_reason: str | None) -> EngineFigures | None:
    """The result's `engine` of a job whose runs may have run on several workers: the first run's
    versions and device, why its backend (the record's routing choice), the job's wall time, steps/s
    over every run's stepping, and each run's figures (a confirm run's with its `slot`)."""
    ran = [(i, report, report.figures) for i, report in sorted(reports.items()) if report.figures is not None]
    if not ran:  # no run started (cancelled while its runs waited)
        return None
    first = ran[0][2]
    steps = sum(figures.steps for _, _, figures in ran)
    fit = sum(figures.fit_seconds for _, _, figures in ran)
    # What a job does not have is left out of its JSON (`JobResult.api()` drops the fields never set):
    # `classes` but for an image folder, a run's `slot` but for a confirm run, its `variables` when unknown.
    optional = {"classes": first.classes} if first.classes is not None else {}
    return EngineFigures(
        keras=first.keras, backend=first.backend, backend_reason=backend_reason, device=first.device,
        weights=first.weights, **optional, seconds=round(time.time() - started_ts, 3),
        steps_per_execution=first.steps_per_execution, steps_per_second=round(steps / fit, 1) if fit else None,
        runs=[_engine_run(run_of(spec, i), report, figures) for i, report, figures in ran])


def _engine_run(ref: RunRef, report: RunReport, figures: RunFigures) -> EngineRun:
    """One run's entry of the result's `engine.runs`."""
    slot = {} if ref.slot is None else {"slot": ref.slot}
    variables = {"variables": report.outcome.variables} if report.outcome.variables else {}
    return EngineRun(arm_index=ref.arm_index, repeat=ref.repeat, **slot, worker=report.worker,
                     attempts=report.attempts, device=figures.device, steps=figures.steps, seconds=figures.seconds,
                     **variables)
