"""The Celery application: configuration only, no task code and no Keras import.

The API imports this module to enqueue (`enqueue`), so it must stay light; the task itself lives in
`worker.tasks`, which the worker process imports (and which imports Keras lazily, in the child).
Each setting below avoids a pitfall listed in docs/design.md, "Celery on Redis".
"""

from __future__ import annotations

from celery import Celery

from lrrt.settings import Settings, get_settings

RUN_JOB_TASK = "lrrt.run_job"


def make_celery(settings: Settings | None = None) -> Celery:
    settings = settings or get_settings()
    app = Celery("lrrt", broker=settings.redis_url, include=["worker.tasks"])
    hard_limit = settings.job_time_limit_s + 120  # the engine stops itself at job_time_limit_s first
    app.conf.update(
        # Payloads come from users: JSON only, never pickle.
        task_serializer="json",
        accept_content=["json"],
        result_serializer="json",
        # The job record in Redis is the truth; Celery's result backend is not used.
        task_ignore_result=True,
        task_default_queue=settings.queue,
        # A crashed child or lost worker puts the message back; the record caps redeliveries.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        # On a lost broker connection, True would SIGTERM every child running a late-acked task (its
        # message can no longer be acked and comes back anyway; Celery 6 makes True the default). Here
        # the job record's lease, not the message, decides who runs a run: the store rides out a Redis
        # restart (worker/tasks.py), the sweep goes on, and the message that comes back finds the run
        # held (`busy`). Cancelling would throw away the run's progress and spend one of its attempts.
        worker_cancel_long_running_tasks_on_connection_loss=False,
        # One sweep at a time per process: a long job must not hold others hostage in a prefetch buffer.
        worker_prefetch_multiplier=1,
        # Above the hard limit, or the Redis broker redelivers long jobs while they still run (celery#5935).
        broker_transport_options={"visibility_timeout": hard_limit + 600},
        task_time_limit=hard_limit,
        # Keep warm children (imports + compiled functions) but recycle them when memory grows.
        worker_max_tasks_per_child=200,
        worker_max_memory_per_child=6_000_000,  # KiB (~6 GiB resident)
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
        worker_send_task_events=True,
        task_send_sent_event=True,
    )
    return app


def enqueue(app: Celery, job_id: str, queue: str) -> None:
    """Send a job to the workers by task name (no import of the task module needed)."""
    app.send_task(RUN_JOB_TASK, args=[job_id], queue=queue)
