"""`JobStore.claim`: which run a message takes, and when it takes none."""

from __future__ import annotations

from lrrt.store.jobs import JobStore
from lrrt.store.outcomes import Claim, ClaimOutcome
from tests.lrrt.store.conftest import create, lose_worker, run_state


def test_a_claim_takes_the_next_queued_run_and_starts_the_job(jobs: JobStore) -> None:
    job_id = create(jobs, arms=2, repeats=2)
    assert jobs.needs_fanout(job_id) == 3  # one message per range-test run, the API's included
    claims = [jobs.claim(job_id, f"t{i}", "w") for i in range(4)]
    assert claims == [Claim(ClaimOutcome.CLAIMED, run=i, attempts=1) for i in range(4)]
    job = jobs.get(job_id)
    assert job is not None and job.status == "running" and job.started_at and job.attempts == 1
    assert jobs.needs_fanout(job_id) == 0  # claimed: every message is accounted for
    assert jobs.run_held_by(job_id, "t2") == (2, 1)
    assert jobs.claim(job_id, "t5", "w") == Claim(ClaimOutcome.BUSY)  # a spare message finds nothing to do
    assert not jobs.has_queued_run(job_id)


def test_a_terminal_or_missing_job_is_skipped(jobs: JobStore) -> None:
    job_id = create(jobs)
    assert jobs.request_cancel(job_id) == "cancelled"
    assert jobs.claim(job_id, "t", "w") == Claim(ClaimOutcome.SKIP, status="cancelled")
    assert jobs.claim("no-such-job", "t", "w") == Claim(ClaimOutcome.SKIP, status="missing")


def test_a_run_whose_lease_expired_is_claimed_again_until_out_of_attempts(jobs: JobStore) -> None:
    job_id = create(jobs)
    assert jobs.claim(job_id, "first", "w1").outcome is ClaimOutcome.CLAIMED
    assert jobs.claim(job_id, "spare", "w2") == Claim(ClaimOutcome.BUSY)  # the lease is alive
    lose_worker(jobs, job_id, 0)
    assert jobs.claim(job_id, "second", "w2") == Claim(ClaimOutcome.CLAIMED, run=0, attempts=2)
    assert jobs.run_held_by(job_id, "first") is None and jobs.run_held_by(job_id, "second") == (0, 2)
    lose_worker(jobs, job_id, 0)
    assert jobs.claim(job_id, "third", "w3") == Claim(ClaimOutcome.EXHAUSTED, run=0, attempts=2)
    assert run_state(jobs, job_id, 0) == "running"  # the caller fails the job; the claim changes nothing


def test_confirm_runs_wait_until_the_range_test_is_over(jobs: JobStore) -> None:
    job_id = create(jobs, arms=1, candidates=2)
    assert jobs.get(job_id).runs == 3
    assert jobs.needs_fanout(job_id) == 0  # one range-test run: the API's message is enough
    assert jobs.claim(job_id, "a", "w").run == 0
    assert jobs.claim(job_id, "b", "w") == Claim(ClaimOutcome.BUSY)
    assert [run_state(jobs, job_id, r) for r in (1, 2)] == ["waiting", "waiting"]
