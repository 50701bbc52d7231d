"""Finding jobs whose worker died, and either re-sending them or failing them with a clear error.

Each running (arm, repeat) run of a job holds a lease that its worker refreshes every few seconds.
When the worker process is killed (out of memory, SIGKILL, a lost machine), the lease expires;
`reap_once` then requeues that run (the job's other runs go on) and re-sends one message for it, up
to `max_redeliveries` times per run, after which the job fails with an error that says so. The API's
lifespan and every worker's heartbeat thread call it periodically (under `Keys.reaper_lock()`), so a
job never stays `running` after its worker is gone.

A job can also be lost while still `queued`: a worker reserves a message (it moves to the broker's
unacked set) and is killed before a child claims the job. Kombu would put that message back only
after the visibility timeout, which must exceed the longest job (over an hour); `reap_once` puts it
back once it has been reserved for `LOST_RESERVATION_S`. A running job whose runs are not all
taken yet also has messages waiting, so one of its reserved messages is put back too. Re-sending is
always safe: a message runs at most the one run it claims, and a copy with nothing left to claim is
dropped (`busy` or `skip`).

A job can also wait on a queue nobody reads: the API routed an `auto` job to a backend whose last
worker stopped moments later (routing reads heartbeats up to 30 s old, through a 5 s cache), or all
of a backend's workers died. `reroute_stranded` moves such a job, while no worker has claimed it and
once it has waited a heartbeat's lifetime, to a backend that has live workers. A job that asked for a
backend by name keeps waiting for it, and one whose runs have started keeps its backend (a job's runs
never mix backends).
"""

from __future__ import annotations

import base64
import json
import logging
import time
from datetime import datetime, timedelta, timezone
from typing import Any

from celery import Celery

from lrrt.liveness import HEARTBEAT_TTL_S, live_backends
from lrrt.problems import PROBLEM_BASE
from lrrt.queue import RUN_JOB_TASK, enqueue
from lrrt.records import JobRecord
from lrrt.repository import JobRepository
from lrrt.results import partial_result
from lrrt.routing import BACKENDS, Choice, auto_backend, queue_for
from lrrt.runs import split_outcomes
from lrrt.settings import Settings
from lrrt.spec import JobSpec
from lrrt.store.jobs import ISO_FORMAT, JobStore
from lrrt.store.outcomes import Reaped

log = logging.getLogger(__name__)

#: Seconds a message may stay reserved while its job is still queued before the reservation counts as
#: lost. A live worker claims within milliseconds: it reserves a message only for an idle pool child.
LOST_RESERVATION_S = 60
#: Seconds an `auto` job waits on a backend with no live worker before it is moved to another: a
#: heartbeat's lifetime, so a worker restarting in place keeps its jobs.
STRANDED_AFTER_S = HEARTBEAT_TTL_S


def worker_lost_problem(attempts: int | str) -> dict[str, Any]:
    """The error of a job whose worker stopped every time it ran it."""
    return {
        "type": PROBLEM_BASE + "worker-lost",
        "title": "The worker stopped while running this job",
        "status": 500,
        "detail": (
            f"The worker running this job stopped {attempts} time(s) before it finished (killed, out of "
            "memory or crashed), so it was not retried again. Most often the model and batch do not fit "
            "in memory: try a smaller batch_size, a smaller model, fewer optimizers per job or "
            "dataset.max_samples."
        ),
        "attempts": int(attempts),
    }


def partial_or_none(store: JobRepository, job_id: str, spec: JobSpec, stopped: str | None) -> dict[str, Any] | None:
    """The partial result of the curves recorded so far (and of the confirm candidates that ended), or
    None when no step ran."""
    chunks = store.chunks(job_id)
    if not chunks:
        return None
    confirmed = split_outcomes(spec, store.run_outcomes(job_id))[1] if spec.sweep.confirm else None
    return partial_result(spec, chunks, stopped=stopped, confirmed=confirmed)


def fail_worker_lost(store: JobStore, job_id: str, attempts: int | str) -> bool:
    """Fail a job whose worker died on every attempt, keeping the curves it recorded."""
    job = store.get(job_id)
    result = partial_or_none(store, job_id, job.spec, None) if job else None
    if not store.finish(job_id, "failed", result=result, error=worker_lost_problem(attempts)):
        return False
    store.stats.add_finished("failed", None)
    log.error("job %s lost its worker %s times; failed", job_id, attempts)
    return True


def reap_if_free(store: JobStore, celery_app: Celery, settings: Settings, *, owner: str, lock_ttl_s: int) -> None:
    """A `reap_once` pass unless another process (API or worker) holds `Keys.reaper_lock()`; the lock
    lives `lock_ttl_s` (the caller's interval), so the same orphan is never re-sent twice at once."""
    if store.fleet.take_reaper_lock(owner, lock_ttl_s):
        for job_id, outcome in reap_once(store, celery_app, settings):
            log.warning("reaper: job %s %s", job_id, outcome)


def restore_lost_reservations(store: JobStore, celery_app: Celery, older_than_s: float = LOST_RESERVATION_S) -> list[str]:
    """Put back on their queue the messages of queued jobs that a worker reserved `older_than_s` ago
    or more and never claimed (the worker died in between); returns those jobs' ids.

    Uses kombu's own `restore_by_tag`; messages of running or finished jobs are left to kombu.
    """
    restored: list[str] = []
    with celery_app.connection_for_write() as conn:
        channel = conn.default_channel
        client = channel.client
        for tag in client.zrangebyscore(channel.unacked_index_key, "-inf", time.time() - older_than_s):
            job_id = _job_id_of(client.hget(channel.unacked_key, tag))
            job = store.get(job_id) if job_id else None
            if job_id and job is not None and (job.status == "queued" or store.has_queued_run(job.id)):
                channel.qos.restore_by_tag(tag, client)
                restored.append(job_id)
    return restored


def _job_id_of(raw: bytes | None) -> str | None:
    """The job id of a reserved `lrrt.run_job` message (kombu keeps `[message, exchange, routing_key]`)."""
    try:
        return job_id_of_message(json.loads(raw)[0])  # type: ignore[arg-type]
    except (TypeError, ValueError, KeyError, IndexError):
        return None


def job_id_of_message(message: Any) -> str | None:
    """The job id of an `lrrt.run_job` message as kombu's Redis transport stores it (JSON, base64 body)."""
    try:
        if message["headers"]["task"] != RUN_JOB_TASK:
            return None
        args = json.loads(base64.b64decode(message["body"]))[0]
        return str(args[0])
    except (TypeError, ValueError, KeyError, IndexError):
        return None


def reroute_stranded(store: JobStore, celery_app: Celery, settings: Settings,
                     older_than_s: float = STRANDED_AFTER_S) -> list[str]:
    """Move the never-claimed `auto` jobs submitted `older_than_s` ago or more and waiting on the queue
    of a backend that has no live worker to the backend `auto` picks among the live ones; returns their
    ids. With no live worker at all, jobs wait where they are (a deployment restarting its workers).

    The message is sent to the new queue first, then the record is pointed there, then the old message
    is removed: a crash at any point between leaves at most a spare message (dropped at its claim), never
    a job whose recorded queue holds no message for it.
    """
    live = live_backends(store.fleet.heartbeats())
    if not live:
        return []
    cutoff = datetime.now(timezone.utc) - timedelta(seconds=older_than_s)
    moved: list[str] = []
    with celery_app.connection_for_write() as conn:
        client = conn.default_channel.client
        for backend in (b for b in BACKENDS if b not in live):
            queue = queue_for(settings.queue, backend)
            for raw in client.lrange(queue, 0, -1):
                try:
                    job_id = job_id_of_message(json.loads(raw))
                except ValueError:
                    continue
                job = store.get(job_id) if job_id else None
                if (job is None or job.status != "queued" or job.attempts or (job.queue or settings.queue) != queue
                        or job.spec.backend != "auto" or _created(job) > cutoff):
                    continue
                choice = auto_backend(job.spec.model, live=live, batch_size=job.spec.sweep.batch_size)
                choice = Choice(choice.backend, f"auto: rerouted, no {backend} worker was live to start it; "
                                f"{choice.reason.removeprefix('auto: ')}")
                target = queue_for(settings.queue, choice.backend)
                enqueue(celery_app, job.id, target)
                if store.reroute(job.id, job.queue or "", target, choice):  # else claimed meanwhile: the copy is spare
                    client.lrem(queue, 1, raw)
                    log.warning("job %s: no live %s worker; moved to queue %s", job.id, backend, target)
                    moved.append(job.id)
    return moved


def _created(job: JobRecord) -> datetime:
    return datetime.strptime(job.created_at, ISO_FORMAT).replace(tzinfo=timezone.utc)


def reap_once(store: JobStore, celery_app: Celery, settings: Settings) -> list[tuple[str, str]]:
    """One pass: requeue and re-send orphans, fail the ones out of retries, put back lost reservations,
    move stranded `auto` jobs. Returns what it did: (job_id, 'requeued' | 'exhausted' | 'resend' |
    'cancelled' | 'restored' | 'rerouted').

    An orphan whose cancel was requested is finished `cancelled` (with its partial curves) instead of
    being run again.
    """
    done: list[tuple[str, str]] = [(job_id, "restored") for job_id in restore_lost_reservations(store, celery_app)]
    done += [(job_id, "rerouted") for job_id in reroute_stranded(store, celery_app, settings)]
    for job_id, outcome in store.reap_orphans():
        job = store.get(job_id)
        if job is None:
            continue
        if outcome is Reaped.REQUEUED and job.cancel_requested and job.status == "queued":
            result = partial_or_none(store, job_id, job.spec, "cancelled")
            if store.finish(job_id, "cancelled", result=result, expected="queued"):
                store.stats.add_finished("cancelled", None)
                done.append((job_id, "cancelled"))
            continue
        if outcome in (Reaped.REQUEUED, Reaped.RESEND):  # one message per run (a cancelled job's run ends at its claim)
            enqueue(celery_app, job_id, job.queue or settings.queue)  # back where it was submitted
            log.warning("job %s: %s", job_id, f"lost its worker; requeued (attempt {job.attempts} so far)"
                        if outcome is Reaped.REQUEUED else "confirm runs never started; their messages sent again")
        elif not fail_worker_lost(store, job_id, job.attempts):
            continue
        done.append((job_id, outcome.value))
    return done
