"""A job's runs can be run one at a time, in any order, and put back together: each (arm, repeat) run
alone gives the curves it gives inside a whole sweep, the result stitched from the recorded chunks
equals `run_sweep`'s, and each run's fingerprint names its real starting weights and first batch."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from lrrt.progress import Chunk
from lrrt.result_model import RunOutcome
from lrrt.results import chunk_record, stitched_result
from tests.keras_models import make_spec
from worker.engine.sweep import run_sweep, sweep_runs

ARMS = [{"name": "sgd", "params": {"momentum": 0.9}}, {"name": "adam"}]


def _without_engine(result: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in result.items() if k != "engine"}


def test_runs_one_by_one_in_reverse_order_stitch_back_to_the_whole_sweep(engine_root: Path, caps) -> None:
    """What the last run of a fanned-out job assembles is the one-process result: same curves, same
    suggestions, same recommendation, same fingerprints (two seeds, so the spread is compared too)."""
    spec = make_spec(optimizers=ARMS, num_steps=40, repeats=2)
    whole = run_sweep(spec, data_root=engine_root, caps=caps)

    chunks: list[dict[str, Any]] = []

    def record(chunk: Chunk) -> None:
        chunks.append(chunk_record(chunk))

    outcomes: dict[tuple[int, int], RunOutcome] = {}
    for pair in [(1, 1), (0, 1), (1, 0), (0, 0)]:  # not the order run_sweep runs them in
        done = sweep_runs(spec, runs=[pair], data_root=engine_root, caps=caps, on_chunk=record)
        curves = done.curves[pair]
        outcomes[pair] = RunOutcome(stop_reason=curves.stop_reason, fingerprint=curves.fingerprint)
    stitched = stitched_result(spec, chunks, outcomes, stopped=None, engine=None)

    assert _without_engine(stitched) == _without_engine(whole)
    assert stitched["arms"][0]["repeats"]["fingerprints"] == whole["arms"][0]["repeats"]["fingerprints"]


def test_every_arm_starts_from_the_same_fingerprinted_weights_and_batch(engine_root: Path, caps) -> None:
    """Equal fingerprints across arms, different ones across seeds; and the first-batch fingerprint is
    the batch of the first recorded loss: the loss of the initial weights on that batch."""
    import keras

    from lrrt.vetting.vet import vet_model_json
    from worker.engine import sweep
    from worker.engine.data import load_arrays, prepare
    from worker.engine.models import build_model, input_specs

    spec = make_spec(optimizers=ARMS, num_steps=30, repeats=2)
    arms = run_sweep(spec, data_root=engine_root, caps=caps)["arms"]
    assert arms[0]["fingerprint"] == arms[1]["fingerprint"]
    seeds = arms[0]["repeats"]["fingerprints"]
    assert seeds[0] == arms[0]["fingerprint"] and seeds[1] != seeds[0]
    assert all(len(v) == 16 for v in seeds[1].values())

    config = vet_model_json(spec.model, caps)
    keras.utils.set_random_seed(spec.sweep.seed)
    model = build_model(config, caps)
    data = prepare(load_arrays("builtin:digits", data_root=engine_root, max_bytes=caps.max_dataset_bytes),
                   spec.dataset, inputs=input_specs(model), outputs=[model.outputs[0].name], seed=spec.sweep.seed)
    x, y, _, steps_per_epoch = sweep._epochs(data, spec.sweep.batch_size, spec.sweep.num_steps)
    bx, by = sweep._first_batch(x, y, spec.sweep.batch_size, steps_per_epoch, spec.sweep.seed)
    assert sweep._digest([bx, by]) == arms[0]["fingerprint"]["first_batch"]
    assert sweep._digest(sweep._variables(model)) == arms[0]["fingerprint"]["initial_weights"]
    first_loss = float(np.mean(keras.losses.sparse_categorical_crossentropy(by, model(bx, training=True))))
    assert arms[1]["losses"][0] == arms[0]["losses"][0]
    np.testing.assert_allclose(arms[0]["losses"][0], first_loss, rtol=1e-5)
