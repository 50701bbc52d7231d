"""The Celery task that runs one (arm, repeat) run of a range test: claim a run of the job record, run
the engine on it, and, when it was the job's last run, assemble the result and finish the job.

The job record in Redis is the truth (`lrrt.store.jobs`); this module only moves it along:

- The API sends one message per job. The first worker to take it sends one more per further run
  (`needs_fanout`) before claiming, so free workers take the job's runs in parallel; a job with one
  arm and one seed is one message and one run, as before.
- `claim` takes the job's next queued run (or one whose worker died). A message with nothing left to
  claim answers `busy`, a job already terminal (cancelled while queued) `skip`: both return without
  running anything. A run whose workers died too often answers `exhausted` and fails the job.
- While the run sweeps, a thread refreshes its lease and watches that it still reports chunks: a run
  silent for longer than `stuck_after` is declared stuck, given up (requeued, or the job failed once
  out of attempts) and its pool child exits, so Celery replaces it (`_Lease`). If the lease is lost
  (expired, or another worker took the run over), the run stops and reports nothing. Between chunks
  the hook stores progress and curve points, and stops the run when a cancel was requested, the job
  passed its time limit, or the job ended elsewhere.
- `end_run` records how the run ended; the run that ends last assembles the result from every run's
  recorded chunks (`lrrt.results.stitched_result`) and finishes the job, through
  `finish(..., token, expected="running")`, so a cancel that raced it cannot be overwritten. A run that
  fails (a bad model, out of memory) fails the job at once; the others then stop at their next chunk.

Keras and TensorFlow are imported inside the task, i.e. in the pool child, never in the prefork
parent (CUDA and fork do not mix). Children stay warm across jobs: the engine caches datasets and
compiled models per process.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any, TypeVar

import redis

from lrrt import confirm
from lrrt.problems import EngineError, InternalError, TimeLimit, WorkerStuck
from lrrt.progress import Chunk, JobProgress
from lrrt.queue import RUN_JOB_TASK, enqueue, make_celery
from lrrt.reaper import fail_worker_lost, partial_or_none
from lrrt.results import chunk_record, stitched_result
from lrrt.runs import RunRef, run_counts, run_of, split_outcomes
from lrrt.settings import Settings, get_settings
from lrrt.spec import JobSpec
from lrrt.store import stats
from lrrt.store.jobs import LEASE_TTL_S, JobStore, now_iso, store_from_settings
from worker import heartbeat

log = logging.getLogger(__name__)

app = make_celery()
heartbeat.connect(app)

T = TypeVar("T")


@functools.cache
def _store() -> JobStore:
    """One store (one connection pool) per process, created after the fork."""
    return store_from_settings(get_settings())


@app.task(name=RUN_JOB_TASK, bind=True, acks_late=True)
def run_job(self: Any, job_id: str) -> str:
    """Run one run of the job `job_id` if this worker can claim one; returns what happened (for the log)."""
    settings = get_settings()
    store = _store()
    job = _retrying(store.get, job_id)
    if job is not None:
        for _ in range(_retrying(store.needs_fanout, job_id)):  # before the claim: a crash here loses no run
            enqueue(app, job_id, job["queue"] or settings.queue)
    token = store.new_token()
    worker = getattr(self.request, "hostname", None) or ""
    outcome, detail = _retrying(store.claim, job_id, token, worker)
    if outcome in ("busy", "skip"):
        log.info("job %s not run: %s %s", job_id, outcome, detail or "")
        return outcome
    if outcome == "exhausted":
        fail_worker_lost(store, job_id, detail or 0)
        return outcome
    return JobRun(store, settings, job_id, token, worker=worker).run()


class JobRun:
    """One claimed run of a job: the lease keeper, the chunk hook, the run's ending and, when it is the
    last run to end, the job's."""

    def __init__(self, store: JobStore, settings: Settings, job_id: str, token: str, *, worker: str = "") -> None:
        self.store = store
        self.settings = settings
        self.job_id = job_id
        self.token = token
        self.worker = worker or f"{socket.gethostname()}-{os.getpid()}"
        self.started_ts = time.time()
        self.last_chunk_at = time.monotonic()
        self.lease_lost = threading.Event()
        self.done = threading.Event()
        self.run_index = 0
        self.attempts = 0
        self.spec: JobSpec | None = None

    def run(self) -> str:
        held = self.store.run_held_by(self.job_id, self.token)
        if held is None:  # taken over between claim and here
            return "lease-lost"
        self.run_index, self.attempts = held
        lease = _Lease(self)
        keeper = threading.Thread(target=lease.keep, name=f"lease-{self.job_id[:8]}-{self.run_index}", daemon=True)
        keeper.start()
        try:
            return self._run()
        finally:
            self.done.set()
            keeper.join(timeout=5)

    def _run(self) -> str:
        job = self.store.get(self.job_id)
        if job is None:  # deleted between claim and here
            return "skip"
        spec_dict = job["spec"]
        self.started_ts = job["started_ts"] or self.started_ts
        try:
            spec = self.spec = JobSpec.model_validate(spec_dict)
            ref = run_of(spec, self.run_index)
            before = _retrying(self.store.run_check, self.job_id, self.run_index, self.token) or self._over_time()
            if before == "lost":  # the job ended meanwhile (another run failed it) or the run was taken over
                return "lease-lost"
            if before:  # cancelled (or out of time) before this run started: it never runs
                return self._end_run(spec_dict, {"stop_reason": before}, stopped=before)
            lr = None if ref.slot is None else self._candidate(spec_dict, spec, ref)
            if ref.slot is not None and lr is None:  # the arm has fewer candidates than slots (or none)
                return self._end_run(spec_dict, {"stop_reason": "skipped"}, stopped=None)
            _retrying(self.store.start_progress, self.job_id, JobProgress(spec).initial())
            heartbeat.import_keras()  # after (or instead of) the child's warm-up import, never beside it
            _prepare_backend()
            from worker.engine.sweep import confirm_runs, sweep_runs  # Keras: in the child, never in the parent

            self.last_chunk_at = time.monotonic()  # the watchdog times the run, not a fresh child's imports
            common: dict[str, Any] = {"data_root": self.settings.data_root, "on_chunk": self.on_chunk, "caps": self.settings}
            if ref.slot is None:
                done = sweep_runs(spec, runs=[(ref.arm_index, ref.repeat)], **common)
                curves = done.curves[(ref.arm_index, ref.repeat)]
                outcome = {"stop_reason": curves.stop_reason, "fingerprint": curves.fingerprint}
                engine, stopped = done.engine, done.stopped
            else:
                assert lr is not None
                confirmed = confirm_runs(spec, [(ref.arm_index, ref.slot, lr)], **common)
                outcome = confirmed.curves[(ref.arm_index, ref.slot)].outcome()
                engine, stopped = confirmed.engine, confirmed.stopped
        except EngineError as exc:
            return self._fail(spec_dict, exc.problem())
        except Exception:
            log.exception("job %s: unexpected error in the sweep", self.job_id)
            return self._fail(spec_dict, InternalError(self.job_id).problem())
        if self.lease_lost.is_set():
            # Our lease is gone (another worker took the run over, it expired, or the job ended
            # elsewhere): whatever we report could overwrite a live run. Its owner or the reaper ends it.
            return "lease-lost"
        outcome |= {k: engine[k] for k in ENGINE_FIELDS}
        if "classes" in engine:  # an image folder's class names, in label order (worker/engine/sources.py)
            outcome["classes"] = engine["classes"]
        return self._end_run(spec_dict, outcome, stopped=stopped)

    def _candidate(self, spec_dict: dict[str, Any], spec: JobSpec, ref: RunRef) -> float | None:
        """The LR of a confirm run, from the range test's recorded curves: every range-test run has ended
        before a confirm run is released, so each worker works out the same candidates `run_sweep` would."""
        sweep, _ = split_outcomes(spec, _retrying(self.store.run_outcomes, self.job_id))
        ranged = stitched_result(spec_dict, _retrying(self.store.chunks, self.job_id), sweep, stopped=None, engine=None)
        assert ref.slot is not None
        return confirm.slot_lr(ranged["arms"][ref.arm_index], spec, ref.slot)

    # ------------------------------------------------------------------ between chunks
    def on_chunk(self, chunk: Chunk) -> str | None:
        """The engine's hook: store progress and the new points; say when to stop."""
        if self.lease_lost.is_set():  # the run may run elsewhere now: stop writing into the job
            return "cancelled"
        now = time.monotonic()
        spec = self.spec
        assert spec is not None
        _retrying(self.store.record_chunk, self.job_id, lambda stored: JobProgress(spec, stored).update(chunk),
                  chunk_record(chunk))
        # Retried like every other Redis call here: a blip must not reach Keras's fit and fail the job.
        _retrying(stats.add_steps, self.store.r, self.store.k, len(chunk.losses), now - self.last_chunk_at)
        _chunk_times.append(now - self.last_chunk_at)
        self.last_chunk_at = now
        hang_for_tests(chunk, self.attempts)
        check = _retrying(self.store.run_check, self.job_id, self.run_index, self.token)
        if check == "lost":
            self.lease_lost.set()
            return "cancelled"
        return check or self._over_time()

    def _over_time(self) -> str | None:
        return "time_limit" if time.time() - self.started_ts > self.settings.job_time_limit_s else None

    # ------------------------------------------------------------------ ending
    def _end_run(self, spec: dict[str, Any], outcome: dict[str, Any], *, stopped: str | None) -> str:
        """Record the run's ending; the last run of the job to end finishes the job."""
        ended = _retrying(self.store.end_run, self.job_id, self.run_index, self.token, outcome, stopped or "")
        job_spec = JobSpec.model_validate(spec)
        if ended == "confirm":  # the range test is over: one message per confirm run, to the job's queue
            job = _retrying(self.store.get, self.job_id)
            sweep_runs, runs = run_counts(spec)
            for _ in range(runs - sweep_runs):
                _retrying(enqueue, app, self.job_id, (job or {}).get("queue") or self.settings.queue)
        if ended != "last":
            return "run-" + ended  # run-more: others still run; run-confirm; run-lost / run-gone: not ours any more
        outcomes = _retrying(self.store.run_outcomes, self.job_id)
        reasons = {o.get("stop_reason") for o in outcomes.values()}
        stop = "time_limit" if "time_limit" in reasons else "cancelled" if "cancelled" in reasons else None
        sweep, confirmed = split_outcomes(job_spec, outcomes)
        result = stitched_result(spec, _retrying(self.store.chunks, self.job_id), sweep, confirmed=confirmed,
                                 stopped=stop, engine=job_engine(outcomes, job_spec, self.started_ts))
        if stop == "cancelled":
            return self._finish("cancelled", result=result)
        if stop == "time_limit":
            return self._finish("failed", result=result, error=TimeLimit(self.settings.job_time_limit_s).problem())
        return self._finish("succeeded", result=result)

    def _fail(self, spec: dict[str, Any], problem: dict[str, Any]) -> str:
        """A run that cannot go on fails its job now; the job's other runs stop at their next chunk."""
        return self._finish("failed", error=problem, result=self._partial(spec, None))

    def _partial(self, spec: dict[str, Any], stopped: str | None) -> dict[str, Any] | None:
        try:
            return partial_or_none(self.store, self.job_id, spec, stopped)
        except Exception:  # a failed job keeps its error even when its curves cannot be assembled
            log.exception("job %s: could not assemble the partial result", self.job_id)
            return None

    def _finish(self, status: str, *, result: dict[str, Any] | None = None, error: dict[str, Any] | None = None) -> str:
        finished = _retrying(
            self.store.finish, self.job_id, status, result=result, error=error, token=self.token, expected="running"
        )
        if not finished:
            log.info("job %s: outcome %s dropped (job already ended or taken over)", self.job_id, status)
            return "dropped"
        stats.add_finished(self.store.r, self.store.k, status, time.time() - self.started_ts)
        return status


#: What each run reports of the engine's figures when it ends (`job_engine` sums them up).
ENGINE_FIELDS = ("keras", "backend", "backend_reason", "device", "steps_per_execution", "steps", "fit_seconds", "seconds")


def job_engine(outcomes: dict[int, dict[str, Any]], spec: JobSpec, started_ts: float) -> dict[str, Any] | None:
    """The result's `engine` of a job whose runs may have run on several workers: the first run's
    versions and device, the job's wall time, steps/s over every run's stepping, and each run's figures
    (a confirm run's with its `slot`)."""
    ran = {i: o for i, o in sorted(outcomes.items()) if "steps" in o}
    if not ran:  # no run started (cancelled while its runs waited)
        return None
    first = next(iter(ran.values()))
    steps = sum(o["steps"] for o in ran.values())
    fit = sum(o["fit_seconds"] for o in ran.values())
    return {
        "keras": first["keras"], "backend": first["backend"], "backend_reason": first["backend_reason"],
        "device": first["device"], **({"classes": first["classes"]} if "classes" in first else {}),
        "seconds": round(time.time() - started_ts, 3), "steps_per_execution": first["steps_per_execution"],
        "steps_per_second": round(steps / fit, 1) if fit else None,
        "runs": [{"arm_index": ref.arm_index, "repeat": ref.repeat, **({} if ref.slot is None else {"slot": ref.slot}),
                  "worker": o["worker"], "attempts": o["attempts"], "device": o["device"], "steps": o["steps"],
                  "seconds": o["seconds"]} for i, o in ran.items() for ref in [run_of(spec, i)]],
    }


#: Seconds between this process's chunks, for the watchdog's expected chunk time (last 100).
_chunk_times: deque[float] = deque(maxlen=100)


class _Lease:
    """Keeps a run's lease alive while the run proves progress, and replaces the pool child when it stops.

    The lease alone proves only that this thread runs, not that the sweep does: a run blocked inside
    TensorFlow forever kept its lease and its job `running`. So every refresh also asks when the run
    last reported a chunk. Silent for longer than `stuck_after()` (the larger of LRRT_STUCK_AFTER_S and
    LRRT_STUCK_CHUNK_FACTOR times this process's mean chunk time, docs/operations.md), the run is stuck:
    the worker is marked stuck for `/readyz` and `/metrics`, the run is requeued (or its job failed
    with `worker-stuck` once out of attempts), and the process exits so that Celery starts a fresh child.
    """

    def __init__(self, run: JobRun) -> None:
        self.run = run

    def stuck_after(self) -> float:
        expected = sum(_chunk_times) / len(_chunk_times) if _chunk_times else 0.0
        return max(self.run.settings.stuck_chunk_factor * expected, self.run.settings.stuck_after_s)

    def keep(self) -> None:
        run = self.run
        while not run.done.wait(min(LEASE_TTL_S / 3, run.settings.stuck_after_s / 4)):
            silent = time.monotonic() - run.last_chunk_at
            if silent > self.stuck_after():
                self.give_up(silent)
                return
            try:
                if not run.store.refresh_lease(run.job_id, run.run_index, run.token):
                    log.warning("job %s run %s: lease lost (expired or taken over); stopping", run.job_id, run.run_index)
                    run.lease_lost.set()
                    return
            except redis.RedisError as exc:  # Redis restarting: keep trying; the lease outlives a blip
                log.warning("job %s: could not refresh the lease: %s", run.job_id, exc)

    def give_up(self, silent: float) -> None:
        run, store = self.run, self.run.store
        limit = self.stuck_after()
        log.error("job %s run %s: no chunk for %.0f s (stuck after %.0f s); replacing this pool child",
                  run.job_id, run.run_index, silent, limit)
        note = {"job_id": run.job_id, "run": run.run_index, "worker": run.worker, "pid": os.getpid(),
                "seconds_without_chunk": round(silent, 1), "stuck_after_s": round(limit, 1), "at": now_iso()}
        try:
            store.r.set(store.k.worker_stuck(run.worker), json.dumps(note), ex=STUCK_MARK_TTL_S)
            stats.add_stuck(store.r, store.k)
            outcome = store.release_stuck(run.job_id, run.run_index, run.token, note)
            if outcome == "requeued":  # Celery re-sends the task of a lost child too; a spare copy finds nothing
                job = store.get(run.job_id)
                enqueue(app, run.job_id, (job or {}).get("queue") or run.settings.queue)
            elif outcome == "exhausted":
                job = store.get(run.job_id)
                result = partial_or_none(store, run.job_id, job["spec"], None) if job else None
                if store.finish(run.job_id, "failed", result=result, error=WorkerStuck(note, run.attempts).problem()):
                    stats.add_finished(store.r, store.k, "failed", time.time() - run.started_ts)
        except Exception:  # whatever happens, the stuck child must go
            log.exception("job %s: could not record the stuck run", run.job_id)
        finally:
            logging.shutdown()
            os._exit(STUCK_EXIT_CODE)


#: How long `/readyz` and `/metrics` show a worker whose watchdog replaced a stuck child.
STUCK_MARK_TTL_S = 900
#: The exit status of a pool child replaced by the watchdog (in the worker's log as the child's exit code).
STUCK_EXIT_CODE = 70


def hang_for_tests(chunk: Chunk, attempts: int) -> None:
    """TEST-ONLY: with LRRT_TEST_HANG_RUN=<arm_index>:<repeat> in the worker's environment, that run blocks
    forever after its first chunk on its first attempt, as a child stuck inside TensorFlow did. Inert
    unless the variable is set; no deployment sets it (tests/reliability/test_fanout.py does)."""
    if (os.environ.get("LRRT_TEST_HANG_RUN") == f"{chunk.arm_index}:{chunk.repeat}" and attempts == 1
            and chunk.candidate is None):
        log.warning("LRRT_TEST_HANG_RUN: blocking run %s:%s (test only)", chunk.arm_index, chunk.repeat)
        threading.Event().wait()


def _retrying(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Call a store method, riding out a Redis restart for up to a lease's lifetime."""
    deadline = time.monotonic() + LEASE_TTL_S
    delay = 0.2
    while True:
        try:
            return fn(*args, **kwargs)
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            if time.monotonic() > deadline:
                raise
            log.warning("Redis unavailable (%s); retrying in %.1f s", exc, delay)
            time.sleep(delay)
            delay = min(delay * 2, 5.0)


@functools.cache
def _prepare_backend() -> None:
    """Once per process, before the first sweep: let TensorFlow grow GPU memory instead of taking it
    all, so several worker processes can share a GPU."""
    if os.environ.get("KERAS_BACKEND", "tensorflow") != "tensorflow":
        return
    import tensorflow as tf

    for gpu in tf.config.list_physical_devices("GPU"):
        try:
            tf.config.experimental.set_memory_growth(gpu, True)
        except RuntimeError:  # already initialised in this process: the setting no longer applies
            pass
