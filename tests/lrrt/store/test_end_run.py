"""`JobStore.end_run`: what ending a run leaves the job in, for each outcome, and `finish` by a runner."""

from __future__ import annotations

import json
from typing import Any

from lrrt.result_model import RunFigures, RunOutcome, RunReport
from lrrt.store.jobs import JobStore
from lrrt.store.outcomes import ClaimOutcome, RunEnd
from tests.lrrt.store.conftest import create, lose_worker, run_state

DONE = RunReport(outcome=RunOutcome(stop_reason="completed"))


def ended(stop_reason: str, **outcome: Any) -> RunReport:
    """The report of a run that ended with `stop_reason` (and the rest of `outcome`), without the engine's figures."""
    return RunReport(outcome=RunOutcome(stop_reason=stop_reason, **outcome))


def test_the_run_that_ends_last_is_told_so(jobs: JobStore) -> None:
    job_id = create(jobs, arms=2)
    jobs.claim(job_id, "a", "w")
    jobs.claim(job_id, "b", "w")
    assert jobs.end_run(job_id, 1, "b", ended("completed", fingerprint={"x": "1"})) is RunEnd.MORE
    assert jobs.end_run(job_id, 0, "a", DONE) is RunEnd.LAST
    outcomes = jobs.run_outcomes(job_id)
    assert outcomes[1] == RunReport(outcome=RunOutcome(stop_reason="completed", fingerprint={"x": "1"}), attempts=1,
                                    worker="w")
    assert not jobs.r.exists(jobs.k.lease(job_id, 0), jobs.k.lease(job_id, 1))  # ending drops the lease
    assert jobs.finish(job_id, "succeeded", result={"arms": []}, token="a", expected="running")
    assert jobs.get(job_id).status == "succeeded"


def test_a_report_is_stored_as_the_flat_object_every_version_reads(jobs: JobStore) -> None:
    """A report outlives an upgrade in either direction: this version stores the outcome's and the
    figures' keys side by side, as earlier versions did, and reads theirs, ignoring keys it does not know."""
    job_id = create(jobs, arms=2)
    jobs.claim(job_id, "a", "w")
    jobs.claim(job_id, "b", "w")
    figures = RunFigures(keras="3.8.0", backend="jax", device="cpu", steps_per_execution=10, steps=40,
                         fit_seconds=0.5, seconds=1.25)
    report = RunReport(outcome=RunOutcome(stop_reason="completed", fingerprint={"initial_weights": "ab"}),
                       figures=figures)
    assert jobs.end_run(job_id, 0, "a", report) is RunEnd.MORE
    flat = {"stop_reason": "completed", "fingerprint": {"initial_weights": "ab"}, "keras": "3.8.0", "backend": "jax",
            "device": "cpu", "steps_per_execution": 10, "steps": 40, "fit_seconds": 0.5, "seconds": 1.25}
    assert json.loads(jobs.r.hget(jobs.k.job(job_id), "run:0:outcome")) == flat
    jobs.r.hset(jobs.k.job(job_id), "run:1:outcome", json.dumps(flat | {"weights": None, "from_a_later_version": 1}))
    assert jobs.run_outcomes(job_id)[1] == RunReport(outcome=RunOutcome.model_validate(flat), figures=figures,
                                                     attempts=1, worker="w")


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


def test_the_last_range_test_run_releases_the_first_confirm_round(jobs: JobStore) -> None:
    job_id = create(jobs, arms=2, candidates=2)
    jobs.claim(job_id, "a", "w")
    jobs.claim(job_id, "b", "w")
    assert jobs.end_run(job_id, 0, "a", DONE) is RunEnd.MORE
    assert jobs.end_run(job_id, 1, "b", DONE) is RunEnd.CONFIRM
    assert [run_state(jobs, job_id, r) for r in range(2, 6)] == ["queued"] * 4
    for run, token in enumerate("cdef", start=2):
        assert jobs.claim(job_id, token, "w").run == run
    for run, token in enumerate("cde", start=2):
        assert jobs.end_run(job_id, run, token, ended("completed", lr=0.01)) is RunEnd.MORE
    assert jobs.end_run(job_id, 5, "f", ended("skipped")) is RunEnd.LAST


def test_a_later_round_waits_for_its_own_arms_round_before_it(jobs: JobStore) -> None:
    """Two arms of 5 slots: rounds (0, 0, 0), (1), (2) each. Arm 0's round 1 is released by the end of
    arm 0's round 0 alone, whatever arm 1 does; a waiting run is never claimed."""
    job_id = create(jobs, arms=2, candidates=5)
    jobs.claim(job_id, "a", "w")
    jobs.claim(job_id, "b", "w")
    jobs.end_run(job_id, 0, "a", DONE)
    assert jobs.end_run(job_id, 1, "b", DONE) is RunEnd.CONFIRM
    arm0, arm1 = list(range(2, 7)), list(range(7, 12))
    assert [run_state(jobs, job_id, r) for r in arm0] == ["queued"] * 3 + ["waiting"] * 2
    tokens = {}
    for run in arm0[:3] + arm1[:3]:
        tokens[run] = f"t{run}"
        assert jobs.claim(job_id, tokens[run], "w").run == run
    assert jobs.claim(job_id, "spare", "w").outcome is ClaimOutcome.BUSY  # rounds 1 and 2 wait
    assert jobs.end_run(job_id, 2, tokens[2], DONE) is RunEnd.MORE
    assert jobs.end_run(job_id, 7, tokens[7], DONE) is RunEnd.MORE
    assert jobs.end_run(job_id, 3, tokens[3], DONE) is RunEnd.MORE
    assert jobs.end_run(job_id, 4, tokens[4], DONE) is RunEnd.ROUND  # arm 0's round 0 is over
    assert [run_state(jobs, job_id, r) for r in (5, 6, 10, 11)] == ["queued", "waiting", "waiting", "waiting"]
    assert jobs.claim(job_id, "r1", "w").run == 5
    assert jobs.end_run(job_id, 5, "r1", ended("skipped")) is RunEnd.ROUND  # a skipped slot ends its round too
    assert run_state(jobs, job_id, 6) == "queued" and run_state(jobs, job_id, 10) == "waiting"


def test_a_cancel_mid_round_ends_the_waiting_rounds(jobs: JobStore) -> None:
    job_id = create(jobs, arms=1, candidates=5)
    jobs.claim(job_id, "a", "w")
    assert jobs.end_run(job_id, 0, "a", DONE) is RunEnd.CONFIRM
    for token in "bcd":
        jobs.claim(job_id, token, "w")
    assert jobs.end_run(job_id, 1, "b", DONE) is RunEnd.MORE
    jobs.request_cancel(job_id)
    assert jobs.end_run(job_id, 2, "c", ended("cancelled"), abandon="cancelled") is RunEnd.MORE  # d runs
    assert [run_state(jobs, job_id, r) for r in (4, 5)] == ["ended", "ended"]
    assert jobs.end_run(job_id, 3, "d", ended("cancelled"), abandon="cancelled") is RunEnd.LAST
    assert {jobs.run_outcomes(job_id)[r].outcome.stop_reason for r in (4, 5)} == {"cancelled"}


def test_a_cancel_ends_the_runs_not_started_with_the_run_that_stops(jobs: JobStore) -> None:
    job_id = create(jobs, arms=2, candidates=3)
    jobs.claim(job_id, "a", "w")
    assert jobs.request_cancel(job_id) == "cancelling" and jobs.run_check(job_id, 0, "a") == "cancelled"
    assert jobs.end_run(job_id, 0, "a", ended("cancelled"), abandon="cancelled") is RunEnd.LAST
    outcomes = jobs.run_outcomes(job_id)
    assert sorted(outcomes) == list(range(8))  # run 1 (queued) and the six waiting confirm runs
    assert {o.outcome.stop_reason for o in outcomes.values()} == {"cancelled"}
