"""Every answer the store's state changes give (`lrrt.store.outcomes`), each reached by the shortest
sequence of store calls that leads to it, so that a member added to an outcome enum without a test
fails here; then the edges the other files of this folder leave out (a claim of an ended job names its
status, a queued run goes before an orphan, a watchdog's release of a job that ended, a reroute of an
ended job)."""

from __future__ import annotations

import time
from collections.abc import Callable
from enum import Enum

import pytest

from lrrt.result_model import RunOutcome, RunReport
from lrrt.routing import Choice
from lrrt.store.jobs import JobStore
from lrrt.store.outcomes import Claim, ClaimOutcome, Reaped, Release, RunEnd
from tests.lrrt.store.conftest import create, lose_worker, run_state

DONE = RunReport(outcome=RunOutcome(stop_reason="completed"))
NOTE = {"worker": "w", "seconds_without_chunk": 120.0}
TO_JAX = Choice("jax", "auto: rerouted, no tensorflow worker was live to start it")


# ------------------------------------------------------------------------------------------ claim
def claimed(jobs: JobStore) -> Enum:
    return jobs.claim(create(jobs), "a", "w").outcome


def busy(jobs: JobStore) -> Enum:
    job_id = create(jobs)
    jobs.claim(job_id, "a", "w")
    return jobs.claim(job_id, "b", "w").outcome


def skip(jobs: JobStore) -> Enum:
    job_id = create(jobs)
    jobs.request_cancel(job_id)
    return jobs.claim(job_id, "a", "w").outcome


def claim_exhausted(jobs: JobStore) -> Enum:
    job_id = create(jobs)
    for token in ("a", "b"):
        jobs.claim(job_id, token, "w")
        lose_worker(jobs, job_id, 0)
    return jobs.claim(job_id, "c", "w").outcome


# ------------------------------------------------------------------------------------------ end_run
def last(jobs: JobStore) -> Enum:
    job_id = create(jobs)
    jobs.claim(job_id, "a", "w")
    return jobs.end_run(job_id, 0, "a", DONE)


def confirm(jobs: JobStore) -> Enum:
    job_id = create(jobs, candidates=2)
    jobs.claim(job_id, "a", "w")
    return jobs.end_run(job_id, 0, "a", DONE)


def round_released(jobs: JobStore) -> tuple[str, RunEnd]:
    """One arm of 5 slots: rounds (0, 0, 0), (1), (2); the end of round 0's last run releases round 1
    (run 4). Returns the job and what that end answered."""
    job_id = create(jobs, candidates=5)
    jobs.claim(job_id, "a", "w")
    jobs.end_run(job_id, 0, "a", DONE)
    for token in "bcd":
        jobs.claim(job_id, token, "w")
    jobs.end_run(job_id, 1, "b", DONE)
    jobs.end_run(job_id, 2, "c", DONE)
    return job_id, jobs.end_run(job_id, 3, "d", DONE)


def round_(jobs: JobStore) -> Enum:
    return round_released(jobs)[1]


def more(jobs: JobStore) -> Enum:
    job_id = create(jobs, arms=2)
    jobs.claim(job_id, "a", "w")
    return jobs.end_run(job_id, 0, "a", DONE)


def lost(jobs: JobStore) -> Enum:
    job_id = create(jobs)
    jobs.claim(job_id, "a", "w")
    return jobs.end_run(job_id, 0, "not-a", DONE)


def gone(jobs: JobStore) -> Enum:
    job_id = create(jobs, arms=2)
    jobs.claim(job_id, "a", "w")
    jobs.claim(job_id, "b", "w")
    jobs.finish(job_id, "failed", error={"title": "b failed"}, token="b", expected="running")
    return jobs.end_run(job_id, 0, "a", DONE)


# ------------------------------------------------------------------------------------------ release_stuck
def released(jobs: JobStore) -> Enum:
    job_id = create(jobs)
    jobs.claim(job_id, "a", "w")
    return jobs.release_stuck(job_id, 0, "a", NOTE)


def release_exhausted(jobs: JobStore) -> Enum:
    job_id = create(jobs)
    jobs.claim(job_id, "a", "w")
    jobs.release_stuck(job_id, 0, "a", NOTE)
    jobs.claim(job_id, "b", "w")
    return jobs.release_stuck(job_id, 0, "b", NOTE)


def release_lost(jobs: JobStore) -> Enum:
    job_id = create(jobs)
    jobs.claim(job_id, "a", "w")
    return jobs.release_stuck(job_id, 0, "not-a", NOTE)


# ------------------------------------------------------------------------------------------ reap_orphans
def only(reaped: list[tuple[str, Reaped]]) -> Enum:
    (pair,) = reaped
    return pair[1]


def reaped(jobs: JobStore) -> Enum:
    job_id = create(jobs)
    jobs.claim(job_id, "a", "w")
    lose_worker(jobs, job_id, 0)
    return only(jobs.reap_orphans(grace_s=0))


def reap_exhausted(jobs: JobStore) -> Enum:
    job_id = create(jobs)
    for token in ("a", "b"):
        jobs.claim(job_id, token, "w")
        lose_worker(jobs, job_id, 0)
        outcomes = jobs.reap_orphans(grace_s=0)
    return only(outcomes)


def resend(jobs: JobStore) -> Enum:
    job_id = create(jobs, candidates=1)
    jobs.claim(job_id, "a", "w")
    jobs.end_run(job_id, 0, "a", DONE)  # releases run 1; its releaser dies before sending its message
    jobs.r.zadd(jobs.k.running(), {job_id: 0})
    return only(jobs.reap_orphans(grace_s=0))


#: By (enum, member name): the members are `str` enums, so ClaimOutcome.EXHAUSTED == Release.EXHAUSTED as keys.
REACHED: dict[tuple[type[Enum], str], Callable[[JobStore], Enum]] = {
    (ClaimOutcome, "CLAIMED"): claimed, (ClaimOutcome, "BUSY"): busy, (ClaimOutcome, "SKIP"): skip,
    (ClaimOutcome, "EXHAUSTED"): claim_exhausted,
    (RunEnd, "LAST"): last, (RunEnd, "CONFIRM"): confirm, (RunEnd, "ROUND"): round_, (RunEnd, "MORE"): more,
    (RunEnd, "LOST"): lost, (RunEnd, "GONE"): gone,
    (Release, "REQUEUED"): released, (Release, "EXHAUSTED"): release_exhausted, (Release, "LOST"): release_lost,
    (Reaped, "REQUEUED"): reaped, (Reaped, "EXHAUSTED"): reap_exhausted, (Reaped, "RESEND"): resend,
}


@pytest.mark.parametrize("outcome", [*ClaimOutcome, *RunEnd, *Release, *Reaped], ids=lambda o: f"{type(o).__name__}.{o.name}")
def test_every_outcome_is_reached(outcome: Enum, jobs: JobStore) -> None:
    key = (type(outcome), outcome.name)
    assert key in REACHED, f"{type(outcome).__name__}.{outcome.name} has no sequence of store calls that reaches it"
    reached = REACHED[key](jobs)
    assert type(reached) is type(outcome) and reached is outcome


# ------------------------------------------------------------------------------------------ the edges
@pytest.mark.parametrize("status", ["succeeded", "failed", "cancelled"])
def test_a_claim_of_an_ended_job_names_its_status_and_changes_nothing(jobs: JobStore, status: str) -> None:
    job_id = create(jobs)
    jobs.claim(job_id, "a", "w")
    assert jobs.finish(job_id, status, token="a", expected="running")
    version = jobs.get(job_id).version
    assert jobs.claim(job_id, "b", "w") == Claim(ClaimOutcome.SKIP, status=status)
    assert jobs.get(job_id).version == version and jobs.run_held_by(job_id, "b") is None


def test_a_queued_run_is_claimed_before_a_run_whose_worker_died(jobs: JobStore) -> None:
    """A message takes a run nobody started before it takes one over: the orphan waits for the reaper's
    message (or a later one), so a job's runs do not start twice while others never start."""
    job_id = create(jobs, arms=2)
    jobs.claim(job_id, "a", "w")
    lose_worker(jobs, job_id, 0)
    assert jobs.claim(job_id, "b", "w") == Claim(ClaimOutcome.CLAIMED, run=1, attempts=1)
    assert jobs.claim(job_id, "c", "w") == Claim(ClaimOutcome.CLAIMED, run=0, attempts=2)
    assert jobs.end_run(job_id, 0, "a", DONE) is RunEnd.LOST  # the dead worker's token no longer counts


def test_an_exhausted_claim_or_reap_leaves_the_job_to_its_caller(jobs: JobStore) -> None:
    """Out of attempts, neither the claim nor the reaper changes the run: the caller fails the job
    (`fail_worker_lost`), and until then the job stays `running`, the run held by nobody new."""
    job_id = create(jobs)
    for token in ("a", "b"):
        jobs.claim(job_id, token, "w")
        lose_worker(jobs, job_id, 0)
    assert jobs.reap_orphans(grace_s=0) == [(job_id, Reaped.EXHAUSTED)]
    assert jobs.claim(job_id, "c", "w") == Claim(ClaimOutcome.EXHAUSTED, run=0, attempts=2)
    job = jobs.get(job_id)
    assert job is not None and job.status == "running" and run_state(jobs, job_id, 0) == "running"
    assert jobs.run_held_by(job_id, "b") == (0, 2) and jobs.run_held_by(job_id, "c") is None


def test_the_reaper_requeues_each_dead_run_of_a_job_in_one_pass(jobs: JobStore) -> None:
    job_id = create(jobs, arms=3)
    for token in "abc":
        jobs.claim(job_id, token, "w")
    jobs.r.delete(jobs.k.lease(job_id, 0))
    lose_worker(jobs, job_id, 2)
    assert jobs.reap_orphans(grace_s=0) == [(job_id, Reaped.REQUEUED)] * 2
    assert [run_state(jobs, job_id, r) for r in range(3)] == ["queued", "running", "queued"]
    assert jobs.get(job_id).status == "running"  # run 1 still runs


def test_a_later_rounds_release_is_resent_too(jobs: JobStore) -> None:
    """A confirm round released by `RunEnd.ROUND` whose message never came is re-sent, once, like the
    first round's."""
    job_id, ended = round_released(jobs)
    assert ended is RunEnd.ROUND
    assert run_state(jobs, job_id, 4) == "queued" and jobs.r.hget(jobs.k.job(job_id), "run:4:released_at")
    jobs.r.zadd(jobs.k.running(), {job_id: 0})
    jobs.r.hset(jobs.k.job(job_id), "run:4:released_at", time.time() - 3600)
    assert (job_id, Reaped.RESEND) in jobs.reap_orphans(grace_s=600)
    assert jobs.reap_orphans(grace_s=600) == []


def test_a_release_after_the_job_ended_is_lost_and_changes_nothing(jobs: JobStore) -> None:
    """The watchdog gives up a run whose job another run failed meanwhile: the token still matches, but
    the job is over; nothing is requeued and no note is kept."""
    job_id = create(jobs, arms=2)
    jobs.claim(job_id, "a", "w")
    jobs.claim(job_id, "b", "w")
    jobs.finish(job_id, "failed", error={"title": "b failed"}, token="b", expected="running")
    assert jobs.release_stuck(job_id, 0, "a", NOTE) is Release.LOST
    assert jobs.get(job_id).status == "failed" and jobs.r.hget(jobs.k.job(job_id), "run:0:stuck") is None


def test_a_stuck_run_released_beside_a_live_one_keeps_the_job_running_with_its_note(jobs: JobStore) -> None:
    job_id = create(jobs, arms=2)
    jobs.claim(job_id, "a", "w")
    jobs.claim(job_id, "b", "w")
    assert jobs.release_stuck(job_id, 1, "b", NOTE) is Release.REQUEUED
    assert jobs.get(job_id).status == "running" and [run_state(jobs, job_id, r) for r in (0, 1)] == ["running", "queued"]
    assert jobs.r.hget(jobs.k.job(job_id), "run:1:stuck") == b'{"worker":"w","seconds_without_chunk":120.0}'
    # The lease is gone, so the stuck runner's lease thread stops it (`refresh_lease`); its token stays
    # on the queued run until the next claim replaces it.
    assert not jobs.r.exists(jobs.k.lease(job_id, 1)) and not jobs.refresh_lease(job_id, 1, "b")
    assert jobs.claim(job_id, "c", "w") == Claim(ClaimOutcome.CLAIMED, run=1, attempts=2)
    assert jobs.run_check(job_id, 1, "b") == "lost" and jobs.end_run(job_id, 1, "b", DONE) is RunEnd.LOST


def test_an_ended_job_is_never_rerouted(jobs: JobStore) -> None:
    job_id = create(jobs)
    assert jobs.request_cancel(job_id) == "cancelled"
    assert not jobs.reroute(job_id, "q-tf", "q-jax", TO_JAX)
    job = jobs.get(job_id)
    assert (job.status, job.queue, job.backend) == ("cancelled", "q-tf", None)


def test_a_rerouted_job_is_claimed_from_its_new_queue_and_not_moved_back_by_a_stale_reroute(jobs: JobStore) -> None:
    job_id = create(jobs)
    version = jobs.get(job_id).version
    assert jobs.reroute(job_id, "q-tf", "q-jax", TO_JAX)
    assert jobs.get(job_id).version == version + 1  # pollers see the move
    assert not jobs.reroute(job_id, "q-tf", "q-jax", TO_JAX)  # a second reaper's pass: already moved
    assert jobs.claim(job_id, "a", "w") == Claim(ClaimOutcome.CLAIMED, run=0, attempts=1)
    job = jobs.get(job_id)
    assert (job.status, job.queue, job.backend) == ("running", "q-jax", "jax")
