"""The Celery task that runs one run of a job: claim it, keep its lease, and hand it to the coordinator.

The job record in Redis is the truth (`lrrt.store.jobs`); what a run does with it, from reading the
record to finishing the job when it is the last run to end, is `lrrt.coordinator`'s, run here with the
Keras engine. This module adds what only a Celery pool child has:

- A message is taken as every runner takes one (`lrrt.delivery.take`): the job fanned out over free
  workers, one run claimed, or nothing to run (`busy`, `skip`), or the job failed (`exhausted`).
- While the run sweeps, a thread refreshes its lease and watches that it still reports chunks: a run
  silent for longer than `stuck_after` is declared stuck, given up (requeued, or the job failed once
  out of attempts) and its pool child exits, so Celery replaces it (`_Lease`). If the lease is lost
  (expired, or another worker took the run over), the coordinator stops the run and reports nothing.
- The same thread is the run's memory guard (`worker.memory`): a run whose pool child grows past
  LRRT_MEMORY_LIMIT_BYTES fails its job with `resource-exhausted` and the child exits, the same way
  out as a stuck run's, but without a retry: the same run would only grow again.
- The worker's store and Celery app ride out a Redis restart for as long as a lease lives
  (`store_from_settings(ride_out_s=)`, `task_publish_retry_policy`).

Keras and TensorFlow are imported inside the task, i.e. in the pool child, never in the prefork
parent (CUDA and fork do not mix). Children stay warm across jobs: the engine caches datasets and
compiled models per process.
"""

from __future__ import annotations

import functools
import logging
import os
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any, NoReturn

import redis

from lrrt.coordinator import Claimed, Coordinator, Ran
from lrrt.delivery import take
from lrrt.problems import MemoryLimitExceeded, WorkerStuck
from lrrt.progress import Chunk, ChunkHook
from lrrt.queue import RUN_JOB_TASK, enqueue, make_celery
from lrrt.reaper import partial_or_none
from lrrt.settings import Settings, get_settings
from lrrt.spec import JobSpec
from lrrt.store.jobs import LEASE_TTL_S, JobStore, now_iso, store_from_settings
from lrrt.store.outcomes import ClaimOutcome, Release
from lrrt.vetting.objects import recheck_grant
from worker import heartbeat
from worker.memory import TICK_S, MemoryGuard

log = logging.getLogger(__name__)

app = make_celery()
#: The messages a worker sends (fan-out, confirm runs, requeues) ride out a Redis restart as its store does.
app.conf.task_publish_retry_policy = {"max_retries": 12, "interval_start": 0.2, "interval_step": 0.5, "interval_max": 5}
heartbeat.connect(app)


@functools.cache
def _store() -> JobStore:
    """One store (one connection pool) per process, created after the fork; its commands ride out a
    Redis restart for as long as a lease lives (`store_from_settings`)."""
    return store_from_settings(get_settings(), ride_out_s=LEASE_TTL_S)


@app.task(name=RUN_JOB_TASK, bind=True, acks_late=True)
def run_job(self: Any, job_id: str) -> str:
    """Run one run of the job `job_id` if this worker can claim one; returns what happened (for the log)."""
    settings = get_settings()
    store = _store()
    worker = getattr(self.request, "hostname", None) or f"{socket.gethostname()}-{os.getpid()}"
    taken = take(store, job_id, worker, default_queue=settings.queue, send=lambda queue: enqueue(app, job_id, queue))
    if isinstance(taken, ClaimOutcome):  # nothing to run (busy, skip), or the job failed (exhausted)
        return taken.value
    return JobRun(store, settings, taken).run()


class JobRun:
    """One claimed run of a job: the coordinator running it with the Keras engine, and its lease keeper."""

    def __init__(self, store: JobStore, settings: Settings, claimed: Claimed) -> None:
        self.store = store
        self.settings = settings
        self.claimed = claimed
        self.done = threading.Event()

    def run(self) -> str:
        claimed = self.claimed
        self.engine = _KerasEngine(self.settings)
        self.coordinator = Coordinator(self.store, self.engine, claimed,
                                       time_limit_s=self.settings.job_time_limit_s, default_queue=self.settings.queue,
                                       send=lambda queue: enqueue(app, claimed.job_id, queue), after_chunk=self._after_chunk)
        keeper = threading.Thread(target=_Lease(self).keep, name=f"lease-{claimed.job_id[:8]}-{claimed.run}", daemon=True)
        keeper.start()
        try:
            return self.coordinator.run()
        finally:
            self.done.set()
            keeper.join(timeout=5)

    def _after_chunk(self, chunk: Chunk, seconds: float) -> None:
        """Every chunk the run records: its time feeds the watchdog's expected chunk time."""
        _chunk_times.append(seconds)


class _KerasEngine:
    """`lrrt.coordinator.Engine` on Keras (`worker.engine.sweep.KerasEngine`), imported in the pool child
    when the first run prepares it."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        #: the run's memory budget, from the child's resident size once Keras is in; None until then (or off)
        self.guard: MemoryGuard | None = None

    def prepare(self) -> None:
        heartbeat.import_keras()  # after (or instead of) the child's warm-up import, never beside it
        _prepare_backend()
        from worker.engine.sweep import KerasEngine  # here, not in the first run's time the watchdog counts

        self.keras = KerasEngine(self.settings.data_root, caps=self.settings)
        self.guard = MemoryGuard.start(self.settings.memory_limit_bytes)

    def sweep(self, spec: JobSpec, arm_index: int, repeat: int, on_chunk: ChunkHook, *, tenant: str) -> Ran:
        recheck_grant(spec.dataset.uri, tenant, self.settings.data_prefixes)
        return self.keras.sweep(spec, arm_index, repeat, on_chunk, tenant=tenant)

    def confirm(self, spec: JobSpec, arm_index: int, slot: int, lr: float, on_chunk: ChunkHook, *, tenant: str) -> Ran:
        recheck_grant(spec.dataset.uri, tenant, self.settings.data_prefixes)
        return self.keras.confirm(spec, arm_index, slot, lr, on_chunk, tenant=tenant)


#: Seconds between this process's chunks, for the watchdog's expected chunk time (last 100).
_chunk_times: deque[float] = deque(maxlen=100)


class _Lease:
    """Keeps a run's lease alive while the run proves progress and fits in memory, and replaces the pool
    child when it does not.

    The lease alone proves only that this thread runs, not that the sweep does: a run blocked inside
    TensorFlow forever kept its lease and its job `running`. So every refresh also asks when the run
    last reported a chunk. Silent for longer than `stuck_after()` (the larger of LRRT_STUCK_AFTER_S and
    LRRT_STUCK_CHUNK_FACTOR times this process's mean chunk time, docs/operations.md), the run is stuck:
    the worker is marked stuck for `/readyz` and `/metrics`, the run is requeued (or its job failed
    with `worker-stuck` once out of attempts), and the process exits so that Celery starts a fresh child.
    Between refreshes it reads the child's resident size every `worker.memory.TICK_S` once the engine is
    prepared; over the run's memory limit, the job fails at once and the child exits (`out_of_memory`).
    """

    def __init__(self, run: JobRun) -> None:
        self.run = run

    def stuck_after(self) -> float:
        expected = sum(_chunk_times) / len(_chunk_times) if _chunk_times else 0.0
        return max(self.run.settings.stuck_chunk_factor * expected, self.run.settings.stuck_after_s)

    def keep(self) -> None:
        run, coordinator = self.run, self.run.coordinator
        claimed = run.claimed
        interval = min(LEASE_TTL_S / 3, run.settings.stuck_after_s / 4)
        tick = TICK_S if run.settings.memory_limit_bytes > 0 else interval
        next_refresh = time.monotonic() + interval
        while not run.done.wait(tick):
            guard = run.engine.guard
            exceeded = guard.exceeded() if guard is not None else None
            if exceeded is not None:
                self.out_of_memory(exceeded)
                return
            if time.monotonic() < next_refresh:
                continue
            next_refresh = time.monotonic() + interval
            silent = time.monotonic() - coordinator.last_chunk_at
            if silent > self.stuck_after():
                self.give_up(silent)
                return
            try:
                if not run.store.refresh_lease(claimed.job_id, claimed.run, claimed.token):
                    log.warning("job %s run %s: lease lost (expired or taken over); stopping", claimed.job_id, claimed.run)
                    coordinator.lost.set()
                    return
            except redis.RedisError as exc:  # Redis restarting: keep trying; the lease outlives a blip
                log.warning("job %s: could not refresh the lease: %s", claimed.job_id, exc)

    def give_up(self, silent: float) -> None:
        """The run is stuck: requeue it (or fail its job once out of attempts), then replace this child."""
        run, store, coordinator = self.run, self.run.store, self.run.coordinator
        claimed = run.claimed
        limit = self.stuck_after()
        log.error("job %s run %s: no chunk for %.0f s (stuck after %.0f s); replacing this pool child",
                  claimed.job_id, claimed.run, silent, limit)
        note = {"job_id": claimed.job_id, "run": claimed.run, "worker": claimed.worker, "pid": os.getpid(),
                "seconds_without_chunk": round(silent, 1), "stuck_after_s": round(limit, 1), "at": now_iso()}

        def record() -> None:
            store.fleet.mark_stuck(claimed.worker, note, STUCK_MARK_TTL_S)
            store.stats.add_stuck()
            outcome = store.release_stuck(claimed.job_id, claimed.run, claimed.token, note)
            if outcome is Release.REQUEUED:  # Celery re-sends the task of a lost child too; a spare copy finds nothing
                enqueue(app, claimed.job_id, coordinator.queue)
            elif outcome is Release.EXHAUSTED:
                spec = coordinator.spec
                result = partial_or_none(store, claimed.job_id, spec, None) if spec else None
                if store.finish(claimed.job_id, "failed", result=result, error=WorkerStuck(note, claimed.attempts).problem()):
                    store.stats.add_finished("failed", time.time() - coordinator.started_ts)

        _replace_child(record, claimed.job_id, STUCK_EXIT_CODE)

    def out_of_memory(self, exceeded: MemoryLimitExceeded) -> None:
        """The run grew past its memory limit: fail its job now, then replace this child.

        No retry: the job ends before the child does, so the message Celery puts back when the child
        exits (task_reject_on_worker_lost) finds it failed and claims nothing, and the reaper has no
        lease to expire. The exit frees the memory at once; Celery forks a fresh child for the next job.
        """
        run = self.run
        claimed = run.claimed
        log.error("job %s run %s: grew this child's memory by %d MiB, over the limit of %d MiB; replacing this pool "
                  "child", claimed.job_id, claimed.run, exceeded.extensions["used_bytes"] >> 20,
                  exceeded.extensions["limit_bytes"] >> 20)
        _replace_child(lambda: run.coordinator.fail(exceeded), claimed.job_id, MEMORY_EXIT_CODE)


def _replace_child(record: Callable[[], object], job_id: str, exit_code: int) -> NoReturn:
    """Record why a run is given up (`record`), then end this pool child whatever happens, without
    unwinding the run's thread (it may be blocked in TensorFlow or still allocating)."""
    try:
        record()
    except Exception:
        log.exception("job %s: could not record why its pool child is replaced", job_id)
    finally:
        logging.shutdown()
        os._exit(exit_code)


#: How long `/readyz` and `/metrics` show a worker whose watchdog replaced a stuck child.
STUCK_MARK_TTL_S = 900
#: The exit status of a pool child replaced by the watchdog (in the worker's log as the child's exit code).
STUCK_EXIT_CODE = 70
#: The exit status of a pool child whose run went over LRRT_MEMORY_LIMIT_BYTES.
MEMORY_EXIT_CODE = 71


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
