"""Fake workers on a real queue: `worker.tasks.run_job` without Celery's consumer, Keras or the lease thread.

The job's messages are real Celery messages on a real Redis list (`lrrt.queue.enqueue`, as the API, the
fan-out, the confirm release and the reaper send them), on a queue no worker process consumes. `deliver`
takes the oldest one off the list, as a worker would, and does what `run_job` does with it: takes it
as every runner does (`lrrt.delivery.take`: fan-out, claim, drop or fail) and runs the claimed run
through the real coordinator with the engine it is given (`tests/fake_engine.py`).

A worker that dies mid-run is an engine hook raising `WorkerKilled` (not an `Exception`, so the
coordinator cannot catch it, as it cannot catch SIGKILL): the run stays `running` with the lease its
claim set, and `lose_worker` then expires that lease as 30 s without a refresh would.
"""

from __future__ import annotations

import functools
import json

from celery import Celery

from lrrt.coordinator import Coordinator
from lrrt.delivery import take
from lrrt.queue import enqueue, make_celery
from lrrt.reaper import job_id_of_message
from lrrt.settings import Settings
from lrrt.store.jobs import JobStore
from lrrt.store.outcomes import ClaimOutcome
from tests.fake_engine import FakeEngine


class WorkerKilled(BaseException):
    """The worker process died here (SIGKILL, the OOM killer): nothing after it runs."""


class Broker:
    """This test's queue on the session's Redis, and the fake workers that take its messages."""

    def __init__(self, jobs: JobStore, settings: Settings) -> None:
        self.jobs = jobs
        self.settings = settings
        self.queue = settings.queue
        self.app: Celery = make_celery(settings)
        self.workers = 0

    def send(self, job_id: str, queue: str | None = None) -> None:
        enqueue(self.app, job_id, queue or self.queue)

    def waiting(self, queue: str | None = None) -> int:
        """Messages on the queue, not yet taken by a worker."""
        return int(self.jobs.r.llen(queue or self.queue))

    def deliver(self, engine: FakeEngine, *, queue: str | None = None, time_limit_s: int = 3600) -> str:
        """Give the oldest message to a new worker; returns what the worker did with it (`run_job`'s answer)."""
        raw = self.jobs.r.rpop(queue or self.queue)
        assert raw is not None, "no message on the queue"
        job_id = job_id_of_message(json.loads(raw))
        assert job_id is not None, raw
        self.workers += 1
        send = functools.partial(self.send, job_id)
        taken = take(self.jobs, job_id, f"w{self.workers}", default_queue=self.queue, send=send)
        if isinstance(taken, ClaimOutcome):
            return taken.value
        return Coordinator(self.jobs, engine, taken, time_limit_s=time_limit_s, default_queue=self.queue,
                           send=send).run()

    def deliver_all(self, engine: FakeEngine, *, queue: str | None = None) -> list[str]:
        """Deliver messages, those the deliveries send included, until the queue is empty."""
        did = []
        while self.waiting(queue):
            did.append(self.deliver(engine, queue=queue))
        return did


def lose_worker(jobs: JobStore, job_id: str, run: int) -> None:
    """The worker running `run` died long enough ago: its lease expired, and the job was claimed longer
    ago than the reaper's grace period."""
    jobs.r.delete(jobs.k.lease(job_id, run))
    jobs.r.zadd(jobs.k.running(), {job_id: 0})
