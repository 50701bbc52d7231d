"""Runs that lost their worker (`reap_orphans`), runs their watchdog gave up (`release_stuck`), and
never-claimed jobs moved to another queue (`reroute`)."""

from __future__ import annotations

import time

from lrrt.result_model import RunOutcome, RunReport
from lrrt.routing import Choice
from lrrt.store.jobs import JobStore
from lrrt.store.outcomes import Reaped, Release, RunEnd
from tests.lrrt.store.conftest import create, lose_worker, run_state

NOTE = {"worker": "w", "seconds_without_chunk": 120.0}


TO_JAX = Choice("jax", "auto: rerouted, no tensorflow worker was live to start it")
TO_TF = Choice("tensorflow", "auto: rerouted, no jax worker was live to start it")

def test_a_run_whose_worker_died_is_requeued_then_exhausted(jobs: JobStore) -> None:
    job_id = create(jobs)
    jobs.claim(job_id, "a", "w")
    assert jobs.reap_orphans(grace_s=0) == []  # the lease is alive
    lose_worker(jobs, job_id, 0)
    assert jobs.reap_orphans(grace_s=0) == [(job_id, Reaped.REQUEUED)]
    job = jobs.get(job_id)
    assert job is not None and job.status == "queued" and run_state(jobs, job_id, 0) == "queued"
    assert jobs.has_queued_run(job_id)
    assert jobs.claim(job_id, "b", "w").attempts == 2
    lose_worker(jobs, job_id, 0)
    assert jobs.reap_orphans(grace_s=0) == [(job_id, Reaped.EXHAUSTED)]  # the caller fails the job


def test_a_job_with_a_live_run_stays_running_while_its_dead_run_is_requeued(jobs: JobStore) -> None:
    job_id = create(jobs, arms=2)
    jobs.claim(job_id, "a", "w1")
    jobs.claim(job_id, "b", "w2")
    lose_worker(jobs, job_id, 1)
    assert jobs.reap_orphans(grace_s=0) == [(job_id, Reaped.REQUEUED)]
    assert jobs.get(job_id).status == "running"
    assert [run_state(jobs, job_id, r) for r in (0, 1)] == ["running", "queued"]


def test_the_reaper_leaves_recent_claims_and_forgets_ended_jobs(jobs: JobStore) -> None:
    job_id = create(jobs)
    jobs.claim(job_id, "a", "w")
    jobs.r.delete(jobs.k.lease(job_id, 0))
    assert jobs.reap_orphans() == []  # claimed less than a lease's lifetime ago
    jobs.finish(job_id, "cancelled")
    jobs.r.zadd(jobs.k.running(), {job_id: 0})
    assert jobs.reap_orphans(grace_s=0) == [] and jobs.r.zcard(jobs.k.running()) == 0


def test_released_confirm_runs_that_never_started_are_resent_once(jobs: JobStore) -> None:
    job_id = create(jobs, candidates=2)
    jobs.claim(job_id, "a", "w")
    assert jobs.end_run(job_id, 0, "a", RunReport(outcome=RunOutcome(stop_reason="completed"))) is RunEnd.CONFIRM
    jobs.r.zadd(jobs.k.running(), {job_id: 0})  # claimed long ago
    assert jobs.reap_orphans(grace_s=600) == []  # released just now: their messages are on their way
    jobs.claim(job_id, "b", "w")  # run 1 started; run 2's message never came
    for run in (1, 2):
        jobs.r.hset(jobs.k.job(job_id), f"run:{run}:released_at", time.time() - 3600)  # released an hour ago
    assert jobs.reap_orphans(grace_s=600) == [(job_id, Reaped.RESEND)]  # the releaser died before sending
    assert jobs.reap_orphans(grace_s=600) == []


def test_the_watchdog_releases_a_stuck_run_for_another_worker(jobs: JobStore) -> None:
    job_id = create(jobs)
    jobs.claim(job_id, "a", "w")
    assert jobs.release_stuck(job_id, 0, "other", NOTE) is Release.LOST
    assert jobs.release_stuck(job_id, 0, "a", NOTE) is Release.REQUEUED
    assert jobs.get(job_id).status == "queued" and not jobs.r.exists(jobs.k.lease(job_id, 0))
    assert jobs.claim(job_id, "b", "w2").attempts == 2
    assert jobs.release_stuck(job_id, 0, "b", NOTE) is Release.EXHAUSTED
    assert jobs.release_stuck(job_id, 0, "a", NOTE) is Release.LOST  # a stale runner's watchdog


def test_only_a_never_claimed_job_is_rerouted_with_its_new_routing_choice(jobs: JobStore) -> None:
    job_id = create(jobs)
    assert not jobs.reroute(job_id, "q-jax", "q-tf", TO_TF)  # not on that queue
    assert jobs.reroute(job_id, "q-tf", "q-jax", TO_JAX)
    moved = jobs.get(job_id)
    assert (moved.queue, moved.backend, moved.backend_reason) == ("q-jax", "jax", TO_JAX.reason)
    jobs.claim(job_id, "a", "w")
    assert not jobs.reroute(job_id, "q-jax", "q-tf", TO_TF)  # its run started on the first backend
    requeued = create(jobs)
    jobs.claim(requeued, "b", "w")
    lose_worker(jobs, requeued, 0)
    jobs.reap_orphans(grace_s=0)
    assert jobs.get(requeued).status == "queued"
    assert not jobs.reroute(requeued, "q-tf", "q-jax", TO_JAX)  # queued again, but it ran once: it keeps its backend
