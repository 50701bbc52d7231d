"""`sweep.confirm` with real worker processes: the confirm runs wait for the range test, fan out over
two workers, train the candidates the stored curves give (the first round's, then a second round's
from the first's held-out losses), and set a verified recommendation from the measured winner; a
cancel during the confirm phase ends the job `cancelled` with what ran. The store's
own rules for the phase (waiting runs, their release, a lost release re-sent) are checked on Redis
without a worker.
"""

from __future__ import annotations

import math
from typing import Any

import pytest

from lrrt import confirm
from lrrt.client.api import Client
from lrrt.result_model import RunOutcome, RunReport
from lrrt.spec import JobSpec
from lrrt.store.jobs import JobStore
from lrrt.store.keys import Keys

from .conftest import Api, Worker, wait_until
from .test_cli import lrrt

pytestmark = pytest.mark.e2e

DATASET = {"uri": "builtin:digits", "normalize": True, "validation_split": 0.2}
SWEEP = {"start_lr": 1e-4, "end_lr": 1.0, "num_steps": 100, "batch_size": 32}


@pytest.fixture(scope="module")
def confirmed(client: Client, second: Worker, digits_mlp: dict[str, Any]) -> dict[str, Any]:
    """A two-arm job confirming up to four candidates per arm (two rounds), run to its end on two workers."""
    job = client.submit(digits_mlp, DATASET, optimizers=["sgd", "adam"],
                        sweep={**SWEEP, "confirm": {"candidates": 4, "steps": 60}})
    done = client.wait(job["id"], timeout=300)
    assert done["status"] == "succeeded", done.get("error")
    return done


def test_confirm_runs_fan_out_and_verify_the_recommendation(client: Client, store: JobStore,
                                                            confirmed: dict[str, Any]) -> None:
    job = confirmed
    assert job["progress"]["phase"] == "confirm"
    result = client.result(job["id"])
    rows = []
    for arm in result["arms"]:
        # each worker worked out the candidates from the stored curves and the first round's losses: the
        # ones the result's own arm gives
        first = confirm.planned_lrs(arm, 4, start_lr=1e-4, end_lr=1.0, losses={})
        by_lr = {c["lr"]: c for c in arm["confirm"]}
        losses = {slot: confirm.score(RunOutcome.model_validate(by_lr[lr])) for slot, lr in enumerate(first)}
        planned = confirm.planned_lrs(arm, 4, start_lr=1e-4, end_lr=1.0, losses=losses)
        assert [c["lr"] for c in arm["confirm"]] == sorted(lr for lr in planned if lr is not None)
        assert [c["round"] for c in arm["confirm"] if c["lr"] in first] == [0, 0, 0]
        assert arm["confirm_bracket"]["enclosed"] == (arm["confirm_bracket"]["edge"] is None)
        for c in arm["confirm"]:
            assert c["stop_reason"] in ("completed", "diverged", "nan")
            assert len(c["losses"]) == c["steps"] and (c["steps"] == 60) == (c["stop_reason"] == "completed")
            assert (c["val_loss"] is not None and math.isfinite(c["val_loss"])) == (c["stop_reason"] == "completed")
        assert sum(c["winner"] for c in arm["confirm"]) == 1
        rows += [(c["val_loss"], arm["label"], c["lr"]) for c in arm["confirm"] if c["winner"]]
    best = min(rows)
    rec = result["recommendation"]
    assert rec["verified"] is True and "60 steps" in rec["criterion"] and rec["rule"] == "confirm"
    assert (rec["optimizer"], rec["learning_rate"], rec["val_loss"]) == (best[1], best[2], best[0])
    assert result["best_arm"] == best[1]
    confirm_runs = sorted((r["arm_index"], r["slot"]) for r in result["engine"]["runs"] if "slot" in r)
    assert confirm_runs[:3] == [(0, 0), (0, 1), (0, 2)] and len(confirm_runs) == sum(len(a["confirm"]) for a in result["arms"])
    assert len({r["worker"] for r in result["engine"]["runs"]}) == 2  # the job's runs used both workers
    states = [store.r.hget(store.k.job(job["id"]), f"run:{i}:state") for i in range(10)]
    assert states == [b"ended"] * 10


def test_the_cli_shows_the_candidates_and_the_verified_recommendation(api_server: Api,
                                                                      confirmed: dict[str, Any]) -> None:
    shown = lrrt(api_server, "result", confirmed["id"])
    assert shown.returncode == 0, shown.stderr
    assert "Confirm: trained candidates" in shown.stdout and "held-out loss" in shown.stdout
    assert "Verified recommendation:" in shown.stdout and "chosen by lowest held-out loss after 60 steps" in shown.stdout


def test_cancel_in_the_confirm_phase_ends_the_job_cancelled(client: Client, digits_mlp: dict[str, Any]) -> None:
    job = client.submit(digits_mlp, DATASET, optimizers=["adam"],
                        sweep={**SWEEP, "confirm": {"candidates": 1, "steps": 20_000}})

    def confirming() -> bool:
        status = client.status(job["id"])
        assert status["status"] == "running" or status["status"] == "queued", status
        return any(c["steps_done"] > 0 for c in (status.get("progress") or {}).get("confirm") or [])

    wait_until(confirming, 240, "the confirm candidate training", interval=0.2)
    client.cancel(job["id"])
    done = client.wait(job["id"], timeout=120)
    assert done["status"] == "cancelled"
    result = client.result(job["id"])
    (arm,) = result["arms"]
    assert len(arm["losses"]) == 100 and arm["stop_reason"] == "completed"  # the range test had ended
    (row,) = arm["confirm"]
    assert row["stop_reason"] == "cancelled" and row["val_loss"] is None and 0 < row["steps"] < 20_000
    assert result["recommendation"]["verified"] is False  # nothing measured: the range test's, unverified


def _spec(candidates: int) -> dict[str, Any]:
    return JobSpec.model_validate({"model": {"class_name": "Sequential", "config": {"layers": []}},
                                   "dataset": DATASET, "optimizers": [{"name": "adam"}],
                                   "sweep": {"confirm": {"candidates": candidates}}})


@pytest.fixture()
def own_store(store: JobStore) -> JobStore:
    """The session's store under a prefix of its own: reaping with no grace touches only these jobs."""
    return JobStore(store.r, Keys(f"{store.k.prefix}:confirm"), result_ttl_s=60, max_redeliveries=1)


def test_confirm_runs_wait_for_the_range_test_and_a_lost_release_is_resent(own_store: JobStore) -> None:
    store = own_store
    job_id = store.create(tenant="t", spec=_spec(2), max_unfinished=10).job.id
    assert store.get(job_id).runs == 3
    assert store.needs_fanout(job_id) == 0  # one range-test run: the API's message is enough
    assert store.claim(job_id, "a", "w").outcome == "claimed" and store.run_held_by(job_id, "a") == (0, 1)
    assert store.claim(job_id, "b", "w").outcome == "busy"  # the confirm runs wait for the range test
    assert store.end_run(job_id, 0, "a", RunReport(outcome=RunOutcome(stop_reason="completed"))) == "confirm"
    assert [store.r.hget(store.k.job(job_id), f"run:{i}:state") for i in (1, 2)] == [b"queued"] * 2
    # The releaser died before sending the messages: the reaper sends them, once.
    assert store.reap_orphans(grace_s=0) == [(job_id, "resend"), (job_id, "resend")]
    assert store.reap_orphans(grace_s=0) == []
    for token, run in (("c", 1), ("d", 2)):
        assert store.claim(job_id, token, "w").outcome == "claimed" and store.run_held_by(job_id, token) == (run, 1)
    assert store.end_run(job_id, 1, "c", RunReport(outcome=RunOutcome(stop_reason="completed", lr=0.01))) == "more"
    assert store.end_run(job_id, 2, "d", RunReport(outcome=RunOutcome(stop_reason="skipped"))) == "last"


def test_a_cancel_in_the_range_test_ends_the_waiting_confirm_runs(own_store: JobStore) -> None:
    store = own_store
    job_id = store.create(tenant="t", spec=_spec(3), max_unfinished=10).job.id
    assert store.claim(job_id, "a", "w").outcome == "claimed"
    assert store.end_run(job_id, 0, "a", RunReport(outcome=RunOutcome(stop_reason="cancelled")), abandon="cancelled") == "last"
    assert store.run_outcomes(job_id)[3].outcome.stop_reason == "cancelled"
