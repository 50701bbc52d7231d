"""The Celery task that runs one range test: claim the job record, run the engine, finish the record.

The job record in Redis is the truth (`worker.core.store`); this module only moves it along:

- `claim` first. A duplicate message (a redelivery while the first run is alive) answers `busy`, a job
  already terminal (cancelled while queued) answers `skip`: both return without running anything. A
  job whose worker died too often answers `exhausted` and fails with an error that says so.
- While the sweep runs, a thread refreshes the lease; if the lease is lost (expired, or another worker
  took the job over), the sweep stops and reports nothing. Between chunks the hook stores progress and curve points, and stops the engine when a cancel
  was requested or the job passed its time limit.
- Every ending goes through `finish(..., token, expected="running")`, so a cancel that raced the
  finish, or a second runner, cannot overwrite the outcome.

Keras and TensorFlow are imported inside the task, i.e. in the pool child, never in the prefork
parent (CUDA and fork do not mix). Children stay warm across jobs: the engine caches datasets and
compiled models per process.
"""

from __future__ import annotations

import functools
import logging
import math
import os
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

import redis

from worker import heartbeat
from worker.core import stats
from worker.core.queue import RUN_JOB_TASK, make_celery
from worker.core.problems import PROBLEM_BASE, EngineError
from worker.core.progress import Chunk
from worker.core.suggestions import json_safe
from worker.core.reaper import fail_worker_lost, partial_or_none
from worker.core.settings import Settings, get_settings
from worker.core.spec import JobSpec
from worker.core.store import LEASE_TTL_S, JobStore, store_from_settings

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
    """Run the job `job_id` if this worker can claim it; returns what happened (for the worker log)."""
    settings = get_settings()
    store = _store()
    token = store.new_token()
    outcome, detail = _retrying(store.claim, job_id, token)
    if outcome in ("busy", "skip"):
        log.info("job %s not run: %s %s", job_id, outcome, detail or "")
        return outcome
    if outcome == "exhausted":
        fail_worker_lost(store, job_id, detail or 0)
        return outcome
    return JobRun(store, settings, job_id, token).run()


class JobRun:
    """One claimed run of a job: the lease keeper, the chunk hook and the ending."""

    def __init__(self, store: JobStore, settings: Settings, job_id: str, token: str) -> None:
        self.store = store
        self.settings = settings
        self.job_id = job_id
        self.token = token
        self.started = time.monotonic()
        self.last_chunk_at = self.started
        self.lease_lost = threading.Event()
        self.done = threading.Event()
        self.progress: Progress | None = None

    def run(self) -> str:
        keeper = threading.Thread(target=self._keep_lease, name=f"lease-{self.job_id[:8]}", daemon=True)
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
        if self.store.cancel_requested(self.job_id):
            return self._finish("cancelled", result=partial_or_none(self.store, self.job_id, spec_dict, "cancelled"))
        try:
            spec = JobSpec.model_validate(spec_dict)
            self.progress = Progress(spec)
            _retrying(self.store.set_progress, self.job_id, self.progress.initial())
            heartbeat.import_keras()  # after (or instead of) the child's warm-up import, never beside it
            _prepare_backend()
            from worker.engine.sweep import run_sweep  # Keras: imported in the child, never in the parent

            result = run_sweep(spec, data_root=self.settings.data_root, on_chunk=self.on_chunk, caps=self.settings)
        except EngineError as exc:
            return self._finish("failed", error=exc.problem(), result=self._partial(spec_dict, None))
        except Exception:
            log.exception("job %s: unexpected error in the sweep", self.job_id)
            return self._finish("failed", error=internal_problem(self.job_id), result=self._partial(spec_dict, None))
        if self.lease_lost.is_set():
            # Our lease is gone (another worker took the job over, or it expired): whatever we report
            # could overwrite a live run. The job stays as it is; its owner or the reaper ends it.
            return "lease-lost"
        result = json_safe(result)  # the API serves strict JSON: NaN and inf become null
        stopped = result.get("stopped")
        if stopped == "cancelled":
            return self._finish("cancelled", result=result)
        if stopped == "time_limit":
            return self._finish("failed", result=result, error=time_limit_problem(self.settings.job_time_limit_s))
        return self._finish("succeeded", result=result)

    # ------------------------------------------------------------------ between chunks
    def on_chunk(self, chunk: Chunk) -> str | None:
        """The engine's hook: store progress and the new points; say when to stop."""
        if self.lease_lost.is_set():  # the job may run elsewhere now: stop writing into it
            return "cancelled"
        assert self.progress is not None
        now = time.monotonic()
        _retrying(self.store.record_chunk, self.job_id, self.progress.update(chunk), chunk_record(chunk))
        # Retried like every other Redis call here: a blip must not reach Keras's fit and fail the job.
        _retrying(stats.add_steps, self.store.r, self.store.k, len(chunk.losses), now - self.last_chunk_at)
        self.last_chunk_at = now
        if _retrying(self.store.cancel_requested, self.job_id):
            return "cancelled"
        if now - self.started > self.settings.job_time_limit_s:
            return "time_limit"
        return None

    def _keep_lease(self) -> None:
        while not self.done.wait(LEASE_TTL_S / 3):
            try:
                if not self.store.refresh_lease(self.job_id, self.token):
                    log.warning("job %s: lease lost (expired or taken over); stopping", self.job_id)
                    self.lease_lost.set()
                    return
            except redis.RedisError as exc:  # Redis restarting: keep trying; the lease outlives a blip
                log.warning("job %s: could not refresh the lease: %s", self.job_id, exc)

    # ------------------------------------------------------------------ ending
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
        stats.add_finished(self.store.r, self.store.k, status, time.monotonic() - self.started)
        return status


class Progress:
    """The job's `progress` object (docs/api.md), kept up to date from the engine's chunks."""

    def __init__(self, spec: JobSpec) -> None:
        self.spec = spec
        self.arms = [
            {"label": arm.display_label, "state": "pending", "steps_done": 0, "lr": None, "loss": None}
            for arm in spec.optimizers
        ]
        self.steps_by_seed: dict[tuple[int, int], int] = {}

    def initial(self) -> dict[str, Any]:
        """Before the first chunk: every arm pending; the total is known unless the length is in epochs
        (which needs the dataset's size)."""
        sweep = self.spec.sweep
        total = 0 if sweep.epochs is not None else sweep.total_steps(0) * len(self.arms) * sweep.repeats
        return {"steps_done": 0, "steps_total": total, "fraction": 0.0, "arms": self.arms}

    def update(self, chunk: Chunk) -> dict[str, Any]:
        self.steps_by_seed[(chunk.arm_index, chunk.repeat)] = chunk.steps_done
        arm = self.arms[chunk.arm_index]
        arm["state"] = chunk.state
        arm["steps_done"] = sum(n for (index, _), n in self.steps_by_seed.items() if index == chunk.arm_index)
        if chunk.lrs:
            arm["lr"] = _finite(chunk.lrs[-1])
            arm["loss"] = _finite(chunk.losses[-1])
        total = max(chunk.job_steps_total, 1)
        return {
            "steps_done": chunk.job_steps_done,
            "steps_total": chunk.job_steps_total,
            "fraction": round(min(chunk.job_steps_done / total, 1.0), 4),
            "arms": self.arms,
        }


def chunk_record(chunk: Chunk) -> dict[str, Any]:
    """What `worker.core.results` stitches back together (non-finite losses stored as null)."""
    return {
        "arm_index": chunk.arm_index,
        "arm_label": chunk.arm_label,
        "repeat": chunk.repeat,
        "step_start": chunk.step_start,
        "state": chunk.state,
        "steps_total": chunk.steps_total,
        "lrs": [_finite(v) for v in chunk.lrs],
        "losses": [_finite(v) for v in chunk.losses],
        "val_losses": None if chunk.val_losses is None else [_finite(v) for v in chunk.val_losses],
    }


def time_limit_problem(limit_s: int) -> dict[str, Any]:
    return {
        "type": PROBLEM_BASE + "time-limit",
        "title": "The job ran past its time limit",
        "status": 408,
        "detail": (
            f"The sweep was stopped after {limit_s} s, the job time limit of this deployment "
            "(LRRT_JOB_TIME_LIMIT_S). The curves recorded so far are kept in the result. Use fewer "
            "num_steps, fewer optimizers or repeats, a smaller batch_size or model, or ask the operator "
            "to raise the limit."
        ),
        "limit_s": limit_s,
    }


def internal_problem(job_id: str) -> dict[str, Any]:
    return {
        "type": PROBLEM_BASE + "internal",
        "title": "The worker hit an unexpected error",
        "status": 500,
        "detail": (
            f"The range test failed on an error the service did not expect. This is a bug, not a problem "
            f"with your request: the worker's log has the details under job id {job_id}. Resubmitting may "
            "work; if it fails again, report it with the job id."
        ),
    }


def _finite(value: float) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None


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
