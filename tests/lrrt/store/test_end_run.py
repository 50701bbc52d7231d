"""`JobStore.end_run`: what ending a run leaves the job in, for each outcome, and `finish` by a runner."""

from __future__ import annotations

from lrrt.store.jobs import JobStore
from lrrt.store.outcomes import RunEnd
from tests.lrrt.store.conftest import create, lose_worker, run_state

DONE = {"stop_reason": "completed"}


def test_the_run_that_ends_last_is_told_so(jobs: JobStore) -> None:
    job_id = create(jobs, arms=2)
    jobs.claim(job_id, "a", "w")
    jobs.claim(job_id, "b", "w")
    assert jobs.end_run(job_id, 1, "b", {**DONE, "fingerprint": {"x": "1"}}) is RunEnd.MORE
    assert jobs.end_run(job_id, 0, "a", DONE) is RunEnd.LAST
    outcomes = jobs.run_outcomes(job_id)
    assert outcomes[1] == {**DONE, "fingerprint": {"x": "1"}, "attempts": 1, "worker": "w"}
    assert not jobs.r.exists(jobs.k.lease(job_id, 0), jobs.k.lease(job_id, 1))  # ending drops the lease
    assert jobs.finish(job_id, "succeeded", result={"arms": []}, token="a", expected="running")
    assert jobs.get(job_id).status == "succeeded"


def test_a_run_taken_over_by_another_runner_records_nothing(jobs: JobStore) -> None:
    job_id = create(jobs)
    jobs.claim(job_id, "old", "w1")
    lose_worker(jobs, job_id, 0)
    jobs.claim(job_id, "new", "w2")
    assert jobs.end_run(job_id, 0, "old", DONE) is RunEnd.LOST
    assert jobs.run_outcomes(job_id) == {}
    assert not jobs.finish(job_id, "succeeded", token="old", expected="running")  # not a current runner
    assert jobs.run_check(job_id, 0, "old") == "lost" and jobs.run_check(job_id, 0, "new") is None


def test_a_run_of_a_job_that_ended_meanwhile_is_gone(jobs: JobStore) -> None:
    job_id = create(jobs, arms=2)
    jobs.claim(job_id, "a", "w")
    jobs.claim(job_id, "b", "w")
    assert jobs.finish(job_id, "failed", error={"title": "run b failed"}, token="b", expected="running")
    assert jobs.end_run(job_id, 0, "a", DONE) is RunEnd.GONE
    assert jobs.run_check(job_id, 0, "a") == "lost"


def test_the_last_range_test_run_releases_the_confirm_runs(jobs: JobStore) -> None:
    job_id = create(jobs, arms=2, candidates=2)
    jobs.claim(job_id, "a", "w")
    jobs.claim(job_id, "b", "w")
    assert jobs.end_run(job_id, 0, "a", DONE) is RunEnd.MORE
    assert jobs.end_run(job_id, 1, "b", DONE) is RunEnd.CONFIRM
    assert [run_state(jobs, job_id, r) for r in range(2, 6)] == ["queued"] * 4
    for run, token in enumerate("cdef", start=2):
        assert jobs.claim(job_id, token, "w").run == run
    for run, token in enumerate("cde", start=2):
        assert jobs.end_run(job_id, run, token, {**DONE, "lr": 0.01}) is RunEnd.MORE
    assert jobs.end_run(job_id, 5, "f", {"stop_reason": "skipped"}) is RunEnd.LAST


def test_a_cancel_ends_the_runs_not_started_with_the_run_that_stops(jobs: JobStore) -> None:
    job_id = create(jobs, arms=2, candidates=3)
    jobs.claim(job_id, "a", "w")
    assert jobs.request_cancel(job_id) == "cancelling" and jobs.run_check(job_id, 0, "a") == "cancelled"
    assert jobs.end_run(job_id, 0, "a", {"stop_reason": "cancelled"}, abandon="cancelled") is RunEnd.LAST
    outcomes = jobs.run_outcomes(job_id)
    assert sorted(outcomes) == list(range(8))  # run 1 (queued) and the six waiting confirm runs
    assert {o["stop_reason"] for o in outcomes.values()} == {"cancelled"}
