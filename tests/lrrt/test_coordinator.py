"""The coordinator runs a job's runs against the real store with a fake engine (`tests/fake_engine.py`):
fan-out, seeds, confirm candidates, cancel, failure, the time limit and a lost lease, each in
milliseconds; and against memory (`lrrt.inprocess`), where a job gives the fanned-out result. `play`
delivers the job's messages as Celery would to workers that each claim one run (`worker.tasks.run_job`,
without the Keras engine and the lease thread)."""

from __future__ import annotations

import math
import uuid
from typing import Any

import pytest

from lrrt import confirm
from lrrt.coordinator import Claimed, Coordinator
from lrrt.inprocess import run_here
from lrrt.problems import ModelInvalid
from lrrt.progress import Chunk
from lrrt.routing import Choice
from lrrt.spec import JobSpec
from lrrt.store.jobs import JobStore
from lrrt.store.keys import Keys
from lrrt.store.outcomes import ClaimOutcome
from tests.fake_engine import FakeEngine

SWEEP = {"start_lr": 1e-4, "end_lr": 1.0, "num_steps": 100}
#: The routing choice the API would store at submission: the result's `engine.backend_reason`
ROUTED = Choice("tensorflow", "auto: only tensorflow workers were live at submission")
HERE = {"backend": "fake", "backend_reason": "in-process: the fake engine"}


@pytest.fixture()
def jobs(store: JobStore) -> JobStore:
    return JobStore(store.r, Keys(f"{store.k.prefix}:co-{uuid.uuid4().hex[:8]}"), result_ttl_s=60, max_redeliveries=1)


def _spec_body(arms: int) -> dict[str, Any]:
    return {"model": {"class_name": "Sequential", "config": {"layers": []}},
            "dataset": {"uri": "builtin:digits", "validation_split": 0.2},
            "optimizers": [{"name": n} for n in ("adam", "sgd", "rmsprop")[:arms]]}


def submit(jobs: JobStore, arms: int = 1, **sweep: Any) -> str:
    spec = JobSpec.model_validate({**_spec_body(arms), "sweep": {**SWEEP, **sweep}})
    return jobs.create(tenant="t", spec=spec, max_unfinished=100, queue="q", routing=ROUTED).job.id


def play(jobs: JobStore, engine: FakeEngine, job_id: str, *, time_limit_s: int = 3600) -> list[str]:
    """Deliver the job's messages (the API's, the fan-out's, the confirm runs') one at a time, each to a
    worker that claims and runs one run; returns what each message did."""
    messages, did = ["q"], []
    while messages:
        messages.pop()
        messages += ["q"] * jobs.needs_fanout(job_id)
        token = jobs.new_token()
        claim = jobs.claim(job_id, token, f"w{len(did)}")
        if claim.outcome is not ClaimOutcome.CLAIMED:
            did.append(claim.outcome.value)
            continue
        assert claim.run is not None
        claimed = Claimed(job_id, claim.run, claim.attempts, token, f"w{len(did)}")
        did.append(Coordinator(jobs, engine, claimed, time_limit_s=time_limit_s, default_queue="default",
                               send=messages.append).run())
    return did


def test_a_fanned_out_job_is_assembled_from_every_run(jobs: JobStore) -> None:
    engine = FakeEngine()
    job_id = submit(jobs, arms=2, repeats=2)
    assert play(jobs, engine, job_id) == ["more", "more", "more", "succeeded"]
    job, result = jobs.get(job_id), jobs.result(job_id)
    assert job is not None and job.status == "succeeded" and result is not None
    assert job.progress is not None and job.progress["steps_done"] == job.progress["steps_total"]
    spec = job.spec
    for i, arm in enumerate(result["arms"]):
        assert (arm["lrs"], arm["losses"]) == engine.curve(spec, i)
        assert arm["repeats"]["fingerprints"] == [{"initial_weights": "seed0"}, {"initial_weights": "seed1"}]
    runs = result["engine"]["runs"]
    assert [(r["arm_index"], r["repeat"]) for r in runs] == [(0, 0), (0, 1), (1, 0), (1, 1)]
    assert {r["worker"] for r in runs} == {"w0", "w1", "w2", "w3"} and result["stopped"] is None
    assert result["engine"]["backend_reason"] == ROUTED.reason  # the record's choice, not worked out again


def test_confirm_candidates_come_from_the_recorded_range_test_and_verify_the_recommendation(jobs: JobStore) -> None:
    engine = FakeEngine()
    job_id = submit(jobs, arms=2, confirm={"candidates": 3, "steps": 40})
    did = play(jobs, engine, job_id)
    assert did[:2] == ["more", "confirm"] and did[-1] == "succeeded" and len(did) == 8  # 2 range tests, 6 candidates
    result = jobs.result(job_id)
    assert result is not None
    for i, arm in enumerate(result["arms"]):  # each worker found the candidates one process would
        assert [engine.trained[(i, s)] for s in range(3)] == confirm.planned_lrs(arm, 3, start_lr=1e-4, end_lr=1.0, losses={})
    reco = result["recommendation"]
    best = min(engine.trained.items(), key=lambda kv: abs(math.log10(kv[1]) - engine.best[kv[0][0]]))
    assert reco["verified"] is True and reco["learning_rate"] == best[1]
    assert reco["optimizer"] == result["arms"][best[0][0]]["label"]


def test_confirm_rounds_move_the_bracket_to_an_optimum_above_the_recommendation(jobs: JobStore) -> None:
    """Arm 0's best LR lies a decade above its range test's pick, arm 1's below: each arm's rounds, run
    by different workers against the one store, extend the bracket that way until worse candidates
    enclose the winner; the slots the search does not need end skipped. (Arm 0's range-test loss blows
    up late, so the optimum lies under confirm's ceiling.)"""
    engine = FakeEngine(best=[-0.5, -3.0], blowup=2.5)
    job_id = submit(jobs, arms=2, confirm={"candidates": 5, "steps": 40})
    did = play(jobs, engine, job_id)
    assert did[-1] == "succeeded" and did.count("round") >= 2 and len(did) == 2 + 10
    result = jobs.result(job_id)
    assert result is not None
    for i, arm in enumerate(result["arms"]):
        rows = arm["confirm"]
        winner = next(r for r in rows if r["winner"])
        assert abs(math.log10(winner["lr"]) - engine.best[i]) < 0.25  # within half a bracket of the optimum
        assert (winner["lr"] > arm["recommended_lr"]) == (i == 0)
        assert arm["confirm_bracket"]["enclosed"] and arm["confirm_bracket"]["edge"] is None
        assert max(r["round"] for r in rows) >= 1 and len({r["lr"] for r in rows}) == len(rows)
    skipped = [o for o in jobs.run_outcomes(job_id).values() if o.outcome.stop_reason == "skipped"]
    assert len(skipped) == 10 - len(engine.trained)
    winners = [r for arm in result["arms"] for r in arm["confirm"] if r["winner"]]
    assert result["recommendation"]["learning_rate"] == min(winners, key=lambda r: r["val_loss"])["lr"]


def test_a_winner_at_the_edge_when_the_candidates_are_spent_says_what_to_change(jobs: JobStore) -> None:
    engine = FakeEngine(best=[-0.2], blowup=2.5)
    job_id = submit(jobs, arms=1, confirm={"candidates": 4, "steps": 40})
    assert play(jobs, engine, job_id)[-1] == "succeeded"
    result = jobs.result(job_id)
    assert result is not None
    bracket = result["arms"][0]["confirm_bracket"]
    assert bracket["edge"] == "high" and not bracket["enclosed"] and bracket["candidates"] == 4
    assert "raise sweep.confirm.candidates" in bracket["advice"]


def test_the_search_stops_below_the_range_tests_minimum_and_says_so(jobs: JobStore) -> None:
    """An optimum beyond a third of the range test's lowest-loss LR is not chased (a constant LR there
    diverges over a long training): the winner sits at the ceiling and the bracket says what to do."""
    engine = FakeEngine(best=[0.0])
    job_id = submit(jobs, arms=1, confirm={"candidates": 5, "steps": 40})
    assert play(jobs, engine, job_id)[-1] == "succeeded"
    result = jobs.result(job_id)
    assert result is not None
    (arm,) = result["arms"]
    top = arm["min_loss_lr"] / 3
    assert all(lr <= top * 1.001 for lr in engine.trained.values())  # none above the ceiling
    assert max(engine.trained.values()) > top / 10**confirm.MIN_SEPARATION_DECADES  # it went up to it
    bracket = arm["confirm_bracket"]
    assert bracket["edge"] == "high" and "ceiling" in bracket["advice"]


def test_a_cancel_mid_round_ends_the_rounds_not_started(jobs: JobStore) -> None:
    job_id = submit(jobs, arms=1, confirm={"candidates": 5, "steps": 40})

    def cancel_in_the_first_round(chunk: Chunk) -> None:
        if chunk.candidate == 1:
            jobs.request_cancel(job_id)

    did = play(jobs, FakeEngine(on_step=cancel_in_the_first_round, best=[-0.5]), job_id)
    assert "cancelled" in did and "round" not in did, did
    result, outcomes = jobs.result(job_id), jobs.run_outcomes(job_id)
    assert result is not None and result["stopped"] == "cancelled"
    assert [outcomes[r].outcome.stop_reason for r in (4, 5)] == ["cancelled", "cancelled"]  # rounds 1 and 2 never ran


def test_a_cancel_stops_the_running_run_and_ends_the_others_unstarted(jobs: JobStore) -> None:
    job_id = submit(jobs, arms=2)

    def cancel_at_the_second_chunk(chunk: Chunk) -> None:
        if chunk.step_start == 25:
            jobs.request_cancel(job_id)

    engine = FakeEngine(on_step=cancel_at_the_second_chunk)
    assert play(jobs, engine, job_id) == ["cancelled", "skip"]  # the fan-out's message finds the job ended
    job, result = jobs.get(job_id), jobs.result(job_id)
    assert job is not None and job.status == "cancelled" and result is not None and result["stopped"] == "cancelled"
    assert len(result["arms"][0]["losses"]) == 50  # the two chunks recorded, the cancel seen after the second
    assert result["arms"][1]["lrs"] == [] and {o.outcome.stop_reason for o in jobs.run_outcomes(job_id).values()} == {"cancelled"}


def test_a_run_the_engine_cannot_run_fails_the_job_with_its_problem(jobs: JobStore) -> None:
    job_id = submit(jobs, arms=2)
    engine = FakeEngine(fail=ModelInvalid("Dense: unknown argument 'unitz'"))
    assert play(jobs, engine, job_id) == ["failed", "skip"]
    job = jobs.get(job_id)
    assert job is not None and job.status == "failed" and job.error is not None
    assert job.error["type"].endswith("model-invalid") and "unitz" in job.error["detail"]
    assert jobs.result(job_id) is None  # no step ran


def test_a_run_that_starts_past_the_time_limit_fails_the_job(jobs: JobStore) -> None:
    job_id = submit(jobs)
    assert play(jobs, FakeEngine(), job_id, time_limit_s=-1) == ["failed"]
    job = jobs.get(job_id)
    assert job is not None and job.status == "failed" and job.error is not None
    assert job.error["type"].endswith("time-limit") and jobs.chunks(job_id) == []  # it never ran


def test_a_run_whose_lease_was_lost_reports_nothing(jobs: JobStore) -> None:
    job_id = submit(jobs)
    token = jobs.new_token()
    claim = jobs.claim(job_id, token, "w")
    assert claim.run is not None
    engine = FakeEngine()
    coordinator = Coordinator(jobs, engine, Claimed(job_id, claim.run, claim.attempts, token, "w"), time_limit_s=3600,
                              default_queue="q", send=lambda queue: None)
    engine.on_step = lambda chunk: coordinator.lost.set()  # the lease thread found the lease gone
    assert coordinator.run() == "lease-lost"
    job = jobs.get(job_id)
    assert job is not None and job.status == "running" and jobs.run_outcomes(job_id) == {}
    assert jobs.chunks(job_id) == []  # not even the chunk in flight: the run may run elsewhere now


def _without_engine(result: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in result.items() if k != "engine"}


def test_a_job_run_here_in_memory_gives_the_fanned_out_result(jobs: JobStore) -> None:
    """`lrrt.inprocess` (the in-process `lr_find`) runs the same coordinator against memory: seeds and
    confirm candidates give the result the Redis store's fanned-out job assembles."""
    job_id = submit(jobs, arms=2, repeats=2, confirm={"candidates": 4, "steps": 40})
    assert play(jobs, FakeEngine(best=[-0.5, -3.0], blowup=2.5), job_id)[-1] == "succeeded"
    fanned = jobs.result(job_id)
    spec = jobs.get(job_id).spec  # type: ignore[union-attr]
    here = run_here(spec, FakeEngine(best=[-0.5, -3.0], blowup=2.5), **HERE)
    assert here.record.status == "succeeded" and here.result is not None and fanned is not None
    assert _without_engine(here.result.api()) == _without_engine(fanned)  # the same JSON, the typed result's
    assert here.result.recommendation is not None and here.result.recommendation["verified"]
    engine = here.result.engine
    assert here.record.backend == "fake" and engine is not None and engine.backend_reason == HERE["backend_reason"]
    assert [(r.arm_index, r.slot) for r in engine.runs] == [(0, None), (0, None), (1, None), (1, None),
                                                            (0, 0), (0, 1), (0, 2), (0, 3), (1, 0), (1, 1), (1, 2),
                                                            (1, 3)]  # each arm's second round too


def test_a_hook_that_stops_a_job_run_here_cancels_it_with_its_partial_curves(jobs: JobStore) -> None:
    seen: list[Chunk] = []

    def stop_at_50(chunk: Chunk) -> str | None:
        seen.append(chunk)
        return "cancelled" if chunk.job_steps_done >= 50 else None

    spec = JobSpec.model_validate({**_spec_body(arms=2), "sweep": SWEEP})
    here = run_here(spec, FakeEngine(), on_chunk=stop_at_50, **HERE)
    assert here.record.status == "cancelled" and here.result is not None and here.result.stopped == "cancelled"
    first, second = here.result.arms
    assert len(first.losses) == 50 and first.stop_reason == "cancelled"
    assert second.lrs == [] and second.stop_reason == "cancelled"  # never started
    assert [c.job_steps_done for c in seen] == [25, 50] and {c.job_steps_total for c in seen} == {200}


def test_an_engine_error_in_a_job_run_here_is_raised_as_it_was() -> None:
    failure = ModelInvalid("Dense: unknown argument 'unitz'")
    spec = JobSpec.model_validate({**_spec_body(arms=2), "sweep": SWEEP})
    with pytest.raises(ModelInvalid) as raised:
        run_here(spec, FakeEngine(fail=failure), **HERE)
    assert raised.value is failure
