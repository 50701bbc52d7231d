"""Faults in a job's life, in milliseconds: the real store and coordinator on the session's Redis, the
job's messages on a real Celery queue that fake workers take (`tests/fake_worker.py`), a fake engine
(`tests/fake_engine.py`), and the real reaper pass (`lrrt.reaper.reap_once`).

What these prove is logic that e2e tests prove with Keras in worker processes: a run whose worker
died is re-sent once its lease is gone and runs again, its retry's curve replacing the first
attempt's, and the job's other runs are not run again; a duplicate message runs nothing; a cancel
stops every running run and ends the rest unstarted, in the range test and in the confirm phase; a
job cancelled while queued never starts.

The killed-worker e2e tests (30-40 s each, a lease has to expire) were replaced by the first two
tests here; tests/reliability/test_faults.py still SIGKILLs pool children and whole workers for real.
The others' e2e twins take about 2 s and run the real `worker.tasks.run_job`, so they stay.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from lrrt.progress import Chunk
from lrrt.reaper import reap_once
from lrrt.routing import Choice
from lrrt.settings import Settings
from lrrt.spec import JobSpec
from lrrt.store.jobs import JobStore
from lrrt.store.keys import Keys
from tests.fake_engine import FakeEngine
from tests.fake_worker import Broker, WorkerKilled, lose_worker

SWEEP = {"start_lr": 1e-4, "end_lr": 1.0, "num_steps": 100}
ROUTED = Choice("tensorflow", "auto: only tensorflow workers were live at submission")


@pytest.fixture()
def own(settings: Settings) -> Settings:
    """The session's settings under a key prefix and queue of this test's own: reaping and the queue's
    messages are this test's alone."""
    tag = uuid.uuid4().hex[:8]
    return settings.model_copy(update={"key_prefix": f"{settings.key_prefix}:cf-{tag}",
                                       "queue": f"{settings.queue}-cf-{tag}", "max_redeliveries": 1})


@pytest.fixture()
def jobs(store: JobStore, own: Settings) -> JobStore:
    return JobStore(store.r, Keys(own.key_prefix), result_ttl_s=60, max_redeliveries=own.max_redeliveries)


@pytest.fixture()
def broker(jobs: JobStore, own: Settings) -> Broker:
    return Broker(jobs, own)


def submit(jobs: JobStore, broker: Broker, arms: int = 1, **sweep: Any) -> str:
    """Create the job and send its one message, as the API does."""
    body = {"model": {"class_name": "Sequential", "config": {"layers": []}},
            "dataset": {"uri": "builtin:digits", "validation_split": 0.2},
            "optimizers": [{"name": n} for n in ("adam", "sgd", "rmsprop", "nadam")[:arms]],
            "sweep": {**SWEEP, **sweep}}
    job_id = jobs.create(tenant="t", spec=JobSpec.model_validate(body), max_unfinished=100, queue=broker.queue,
                         routing=ROUTED).job.id
    broker.send(job_id)
    return job_id


def killed_at(step: int) -> FakeEngine:
    """An engine whose worker dies as the run is about to record the chunk starting at `step`."""
    def die(chunk: Chunk) -> None:
        if chunk.step_start == step:
            raise WorkerKilled
    return FakeEngine(on_step=die)


def increasing_from(lrs: list[float], start_lr: float) -> bool:
    return lrs[0] == pytest.approx(start_lr) and all(b > a for a, b in zip(lrs, lrs[1:]))


# ------------------------------------------------------------------------------------------ a worker killed
def test_a_run_whose_worker_died_is_rerun_and_its_retry_replaces_the_first_attempts_curve(jobs: JobStore,
                                                                                            broker: Broker) -> None:
    """Replaces tests/e2e/test_faults.py::test_killed_worker_mid_job_is_retried_by_the_next_worker and
    ::test_killed_worker_child_mid_job_is_retried (36-40 s each): the job stays `running` until the lease runs out,
    the reaper re-sends it to its queue, the next worker claims it as attempt 2 and records steps; a
    cancel then ends it `cancelled`, with the retry's curve from the first LR, never interleaved with
    the first attempt's."""
    job_id = submit(jobs, broker)
    with pytest.raises(WorkerKilled):  # two chunks recorded (steps 0-49), killed before the third
        broker.deliver(killed_at(50))
    first = jobs.chunks(job_id)
    assert [c["step_start"] for c in first] == [0, 25]
    assert jobs.get(job_id).status == "running" and broker.waiting() == 0  # until the lease runs out
    assert reap_once(jobs, broker.app, broker.settings) == []  # the lease is still alive
    lose_worker(jobs, job_id, 0)
    assert reap_once(jobs, broker.app, broker.settings) == [(job_id, "requeued")]
    assert jobs.get(job_id).status == "queued" and broker.waiting() == 1  # re-sent to the job's own queue

    seen: dict[str, Any] = {}

    def cancel_once_retried(chunk: Chunk) -> None:
        if chunk.step_start == 25:  # the retry recorded its first chunk
            job = jobs.get(job_id)
            assert job is not None
            seen.update(status=job.status, attempts=job.attempts, steps=(job.progress or {}).get("steps_done", 0))
            jobs.request_cancel(job_id)

    assert broker.deliver(FakeEngine(on_step=cancel_once_retried)) == "cancelled"
    assert seen["status"] == "running" and seen["attempts"] == 2 and seen["steps"] > 0
    job, result = jobs.get(job_id), jobs.result(job_id)
    assert job is not None and job.status == "cancelled" and job.attempts == 2 and result is not None
    arm = result["arms"][0]
    assert increasing_from(arm["lrs"], SWEEP["start_lr"])
    retry = [c for c in jobs.chunks(job_id)][len(first):]
    assert arm["lrs"] == [lr for c in retry for lr in c["lrs"]]  # the retry's points alone: 0-49, not 0-49 twice
    assert [r["attempts"] for r in result["engine"]["runs"]] == [2]


def test_a_worker_killed_mid_run_costs_that_run_one_redelivery_and_the_others_none(jobs: JobStore,
                                                                                   broker: Broker) -> None:
    """Replaces tests/e2e/test_fanout.py::test_sigkill_of_one_worker_mid_run_costs_that_run_one_redelivery
    (36 s): two arms on two workers, the second worker dies mid-run while the first runs on; the job ends
    `succeeded` with two attempts, the killed run ran twice, the other once, every arm complete."""
    job_id = submit(jobs, broker, arms=2)

    def second_worker_dies(chunk: Chunk) -> None:
        if chunk.step_start == 25:  # the first worker is mid-run: the fan-out's message reaches a second one
            with pytest.raises(WorkerKilled):
                broker.deliver(killed_at(50))

    assert broker.deliver(FakeEngine(on_step=second_worker_dies)) == "more"  # run 1 is still `running`
    assert jobs.get(job_id).status == "running" and broker.waiting() == 0
    lose_worker(jobs, job_id, 1)
    assert reap_once(jobs, broker.app, broker.settings) == [(job_id, "requeued")]
    assert jobs.get(job_id).status == "running"  # run 0 ended: the job is not queued again
    assert broker.deliver_all(FakeEngine()) == ["succeeded"]
    job, result = jobs.get(job_id), jobs.result(job_id)
    assert job is not None and job.status == "succeeded" and result is not None
    assert job.attempts == 2
    runs = result["engine"]["runs"]
    assert sorted(r["attempts"] for r in runs) == [1, 2], runs  # the killed run ran again, the other did not
    assert [(r["arm_index"], r["attempts"]) for r in runs] == [(0, 1), (1, 2)]
    for arm in result["arms"]:
        assert len(arm["losses"]) == SWEEP["num_steps"] and arm["stop_reason"] == "completed"
        assert increasing_from(arm["lrs"], SWEEP["start_lr"])


# ------------------------------------------------------------------------------------------ duplicates
def test_a_duplicate_message_runs_the_job_once(jobs: JobStore, broker: Broker) -> None:
    """The logic of tests/e2e/test_faults.py::test_duplicate_message_runs_the_job_once: a second message (a broker
    redelivery) finds the run taken while it runs and the job ended afterwards; the job ran once."""
    job_id = submit(jobs, broker)
    broker.send(job_id)  # as a broker redelivery would
    did: list[str] = []

    def duplicate_arrives_mid_run(chunk: Chunk) -> None:
        if chunk.step_start == 25:
            did.append(broker.deliver(FakeEngine()))

    engine = FakeEngine(on_step=duplicate_arrives_mid_run)
    assert broker.deliver(engine) == "succeeded" and did == ["busy"]
    broker.send(job_id)  # and once more after the job ended
    assert broker.deliver(FakeEngine()) == "skip" and broker.waiting() == 0
    job = jobs.get(job_id)
    assert job is not None and job.status == "succeeded" and job.attempts == 1
    assert len(jobs.chunks(job_id)) == 4  # one run's four chunks: nothing ran twice


# ------------------------------------------------------------------------------------------ cancel
def test_a_cancel_stops_every_running_run_and_ends_the_waiting_ones(jobs: JobStore, broker: Broker) -> None:
    """The logic of tests/e2e/test_fanout.py::test_cancel_stops_every_run: four arms, two runs sweeping on two
    workers, two waiting for a worker; all four end `cancelled`, only the two that ran have curves, each
    short of its planned steps."""
    job_id = submit(jobs, broker, arms=4, num_steps=200)
    did: list[str] = []

    def second_run_starts_then_cancel(chunk: Chunk) -> None:
        if chunk.step_start == 25 and chunk.arm_index == 0:  # run 0 mid-run: a second worker takes run 1
            did.append(broker.deliver(FakeEngine(on_step=cancel_in_run_1)))

    def cancel_in_run_1(chunk: Chunk) -> None:
        if chunk.step_start == 50:  # both runs are sweeping
            assert jobs.get(job_id).progress["steps_done"] > 0
            jobs.request_cancel(job_id)

    did.insert(0, broker.deliver(FakeEngine(on_step=second_run_starts_then_cancel)))
    assert did == ["cancelled", "more"]  # run 1 stopped first, run 0 at its next chunk and ended the job
    assert broker.deliver_all(FakeEngine()) == ["skip", "skip"]  # the fan-out's other messages run nothing
    job, result = jobs.get(job_id), jobs.result(job_id)
    assert job is not None and job.status == "cancelled" and result is not None and result["stopped"] == "cancelled"
    assert [a["stop_reason"] for a in result["arms"]] == ["cancelled"] * 4
    ran = [a for a in result["arms"] if a["losses"]]
    assert len(ran) == len(result["engine"]["runs"]) == 2
    assert all(0 < len(a["losses"]) < 200 for a in ran)


def test_a_cancel_in_the_confirm_phase_ends_the_job_cancelled_with_the_range_test_and_no_verified_pick(
        jobs: JobStore, broker: Broker) -> None:
    """The logic of tests/e2e/test_confirm.py::test_cancel_in_the_confirm_phase_ends_the_job_cancelled: cancelled
    while its one candidate trains, the job ends `cancelled`; the range test had ended (its whole curve,
    `completed`), the candidate says `cancelled` with no held-out loss after some of its steps, and the
    recommendation is the range test's, unverified."""
    budget = 2000
    job_id = submit(jobs, broker, confirm={"candidates": 1, "steps": budget})

    def cancel_while_confirming(chunk: Chunk) -> None:
        if chunk.candidate is not None and chunk.step_start == 50:
            confirming = (jobs.get(job_id).progress or {}).get("confirm") or []
            assert any(c["steps_done"] > 0 for c in confirming), confirming
            jobs.request_cancel(job_id)

    assert broker.deliver_all(FakeEngine(on_step=cancel_while_confirming)) == ["confirm", "cancelled"]
    job, result = jobs.get(job_id), jobs.result(job_id)
    assert job is not None and job.status == "cancelled" and result is not None
    (arm,) = result["arms"]
    assert len(arm["losses"]) == SWEEP["num_steps"] and arm["stop_reason"] == "completed"  # the range test had ended
    (row,) = arm["confirm"]
    assert row["stop_reason"] == "cancelled" and row["val_loss"] is None and 0 < row["steps"] < budget
    assert result["recommendation"]["verified"] is False  # nothing measured: the range test's, unverified


def test_a_job_cancelled_while_queued_never_starts(jobs: JobStore, broker: Broker) -> None:
    """The logic of tests/e2e/test_jobs.py::test_cancel_queued_job_never_starts: a job cancelled before any worker
    took its message ends `cancelled` at once; the worker that then receives the message drops it
    without running it, and the job never started."""
    job_id = submit(jobs, broker, arms=2)
    assert jobs.get(job_id).status == "queued"
    assert jobs.request_cancel(job_id) == "cancelled"
    assert broker.deliver_all(FakeEngine()) == ["skip"]  # no fan-out either: nothing was sent for run 1
    job = jobs.get(job_id)
    assert job is not None and job.status == "cancelled" and job.started_at is None and job.attempts == 0
    assert jobs.chunks(job_id) == [] and jobs.run_outcomes(job_id) == {}
