"""The confirm phase in the engine: each candidate trains at its own constant LR from the job's initial
weights with the job's batch order, candidates run one at a time (a round's in any order, rounds in
turn) put back together equal `run_sweep`'s confirmed result, and a job without held-out rows is refused before anything trains."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from lrrt import confirm
from lrrt.problems import DatasetError
from lrrt.progress import Chunk
from lrrt.result_model import RunOutcome
from lrrt.results import chunk_record, stitched_result
from tests.keras_models import make_spec, mlp_json
from worker.engine.data import Arrays
from worker.engine.sweep import confirm_runs, run_sweep, sweep_runs

ARMS = [{"name": "sgd", "params": {"momentum": 0.9}}, {"name": "adam"}]
CONFIRM = {"candidates": 4, "steps": 40}


def _without_engine(result: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in result.items() if k != "engine"}


def test_candidates_run_one_by_one_in_any_order_give_run_sweeps_result(engine_root: Path, caps) -> None:
    """What a fanned-out job assembles from its confirm runs (each worker working out its own candidate
    from the stored curves) is the one-process result, candidates, scores and recommendation alike."""
    spec = make_spec(optimizers=ARMS, num_steps=60, confirm=CONFIRM)
    whole = run_sweep(spec, data_root=engine_root, caps=caps)
    assert whole["recommendation"]["verified"] is True

    chunks: list[dict[str, Any]] = []

    def record(chunk: Chunk) -> None:
        chunks.append(chunk_record(chunk))

    outcomes: dict[tuple[int, int], RunOutcome] = {}
    for pair in [(1, 0), (0, 0)]:
        curves = sweep_runs(spec, runs=[pair], data_root=engine_root, caps=caps, on_chunk=record).curves[pair]
        outcomes[pair] = RunOutcome(stop_reason=curves.stop_reason, fingerprint=curves.fingerprint)
    ranged = stitched_result(spec, chunks, outcomes, stopped=None, engine=None)
    confirmed: dict[tuple[int, int], RunOutcome] = {}
    # the first round's slots in a shuffled order, then each arm's second round from its first's losses
    for arm_index, slot in [(1, 2), (0, 1), (1, 0), (0, 2), (1, 1), (0, 0), (1, 3), (0, 3)]:
        lr = confirm.slot_lr(ranged["arms"][arm_index], spec, slot, confirm.slot_losses(confirmed, arm_index))
        if lr is None:  # the first round enclosed a minimum: the coordinator ends the slot skipped
            confirmed[(arm_index, slot)] = RunOutcome(stop_reason="skipped")
            continue
        done = confirm_runs(spec, [(arm_index, slot, lr)], data_root=engine_root, caps=caps, on_chunk=record)
        confirmed[(arm_index, slot)] = done.curves[(arm_index, slot)].outcome()
    stitched = stitched_result(spec, chunks, outcomes, confirmed=confirmed, stopped=None,
                               engine=None)
    assert _without_engine(stitched) == _without_engine(whole)
    for arm in stitched["arms"]:
        assert len(arm["confirm"]) in (3, 4) and sum(c["winner"] for c in arm["confirm"]) == 1


def test_a_candidate_is_the_range_test_run_at_a_constant_lr(engine_root: Path, caps) -> None:
    """A candidate at lr trains exactly as a range test whose schedule stays at lr: same initial weights,
    same batches, same optimizer; so the LR variable is really the one the steps use."""
    lr = 0.05
    spec = make_spec(num_steps=40, confirm={"candidates": 1, "steps": 40})
    candidate = confirm_runs(spec, [(0, 0, lr)], data_root=engine_root, caps=caps).curves[(0, 0)]
    flat = make_spec(num_steps=40, start_lr=lr, end_lr=lr * (1 + 1e-9), mode="linear", divergence_threshold=None)
    ranged = sweep_runs(flat, data_root=engine_root, caps=caps).curves[(0, 0)]
    np.testing.assert_allclose(candidate.curves.losses, ranged.losses, rtol=1e-4)
    assert candidate.curves.fingerprint == ranged.fingerprint
    assert candidate.curves.lrs == [lr] * 40
    other = confirm_runs(spec, [(0, 0, lr / 10)], data_root=engine_root, caps=caps).curves[(0, 0)]
    assert other.curves.losses[0] == candidate.curves.losses[0]  # the same first step, before any update
    assert abs(other.curves.losses[-1] - candidate.curves.losses[-1]) > 1e-3
    assert candidate.val_loss is not None and math.isfinite(candidate.val_loss)


def test_a_candidate_that_blows_up_to_nan_stops_and_cannot_win(engine_root: Path, caps) -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(512, 8)).astype("float32")
    data = Arrays(x, (x @ rng.normal(size=8)).astype("float32"))
    spec = make_spec(mlp_json(inputs=(8,), outputs=1, activation="linear"), loss="mse", num_steps=40,
                     confirm={"candidates": 1, "steps": 200})
    done = confirm_runs(spec, [(0, 0, 1e6)], data_root=engine_root, caps=caps, data=data).curves[(0, 0)]
    assert done.curves.stop_reason == "nan" and done.val_loss is None
    assert len(done.curves.losses) < 200
    (row,) = confirm.entries([done.outcome()])
    assert row["winner"] is False


def test_a_candidate_that_blows_up_but_stays_finite_trains_its_budget_and_loses(engine_root: Path, caps) -> None:
    spec = make_spec(num_steps=40, confirm={"candidates": 2, "steps": 100})
    ran = confirm_runs(spec, [(0, 0, 0.05), (0, 1, 50.0)], data_root=engine_root, caps=caps).curves
    wild = ran[(0, 1)]
    assert wild.curves.stop_reason == "completed" and len(wild.curves.losses) == 100
    assert max(wild.curves.losses) > 4 * min(wild.curves.losses)  # what the range test's stop would have ended
    rows = confirm.entries([ran[(0, 0)].outcome(), wild.outcome()])
    assert [(row["lr"], row["winner"]) for row in rows] == [(0.05, True), (50.0, False)]


def test_the_divergence_stop_ends_a_range_test_but_not_a_candidate(engine_root: Path, caps) -> None:
    """A loss that rises above `divergence_threshold` x its best ends a range-test arm; a candidate trains
    its whole budget and is scored (a transient spike must not throw a good candidate away)."""
    lr = 0.5
    touchy = {"divergence_threshold": 1.0001, "smoothing": 0.0}  # any step above the best so far
    spec = make_spec(num_steps=60, confirm={"candidates": 1, "steps": 60}, **touchy)
    flat = make_spec(num_steps=60, start_lr=lr, end_lr=lr * (1 + 1e-9), mode="linear", **touchy)
    ranged = sweep_runs(flat, data_root=engine_root, caps=caps).curves[(0, 0)]
    assert ranged.stop_reason == "diverged" and len(ranged.losses) < 60
    candidate = confirm_runs(spec, [(0, 0, lr)], data_root=engine_root, caps=caps).curves[(0, 0)]
    assert candidate.curves.stop_reason == "completed" and len(candidate.curves.losses) == 60
    assert candidate.curves.losses[: len(ranged.losses)] == pytest.approx(ranged.losses, rel=1e-4)
    assert candidate.val_loss is not None and math.isfinite(candidate.val_loss)
    (row,) = confirm.entries([candidate.outcome()])
    assert row["winner"] is True


def test_confirm_without_held_out_rows_is_a_dataset_error(engine_root: Path, caps) -> None:
    rng = np.random.default_rng(0)
    arrays = Arrays(rng.random((200, 64), dtype=np.float32), rng.integers(0, 10, 200))
    # an upload without x_val: the spec cannot know it holds out no rows, the engine finds out
    spec = make_spec(num_steps=20, confirm=True, dataset={"uri": "dataset:in-memory", "validation_split": 0.0})
    with pytest.raises(DatasetError, match="held-out rows"):
        run_sweep(spec, data_root=engine_root, caps=caps, data=arrays)
