"""A user's round trip through the real API, a real Celery worker and real Keras on the CPU."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from lrrt.client.api import Client, LrrtError
from lrrt.settings import Settings

from .conftest import long_sweep, wait_for_steps

pytestmark = pytest.mark.e2e


def test_digits_two_arms_succeed_with_result_and_charts(client: Client, digits_mlp: dict[str, Any]) -> None:
    job = client.submit(
        digits_mlp,
        {"uri": "builtin:digits", "normalize": True},
        optimizers=[{"name": "sgd", "label": "SGD optimizer", "params": {"momentum": 0.9}}, "adam"],
        sweep={"start_lr": 1e-4, "end_lr": 1.0, "num_steps": 60, "batch_size": 32},
        labels={"suite": "e2e"},
    )
    assert job["status"] == "queued"
    seen: list[str] = []
    done = client.wait(job["id"], timeout=240, on_update=lambda j: seen.append(j["status"]))
    assert done["status"] == "succeeded", done.get("error")
    assert done["started_at"] and done["finished_at"] and done["error"] is None
    assert done["labels"] == {"suite": "e2e"}
    progress = done["progress"]
    assert [a["label"] for a in progress["arms"]] == ["SGD optimizer", "adam"]
    assert 0 < progress["steps_done"] <= progress["steps_total"] == 120

    result = client.result(job["id"])
    assert [a["label"] for a in result["arms"]] == ["SGD optimizer", "adam"]
    for arm in result["arms"]:
        assert 0 < len(arm["lrs"]) == len(arm["losses"]) <= 60
        assert arm["lrs"][0] == pytest.approx(1e-4)
        assert arm["lrs"] == sorted(arm["lrs"])
        assert arm["stop_reason"] in ("completed", "diverged", "nan")
    # Same initial weights and the same first batch for every arm: the first losses agree.
    assert result["arms"][0]["losses"][0] == pytest.approx(result["arms"][1]["losses"][0], rel=1e-5)
    assert result["best_arm"] in ("SGD optimizer", "adam")
    assert result["recommendation"]["optimizer"] == result["best_arm"]

    png = client.plot(job["id"], "png")
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 5_000
    svg = client.plot(job["id"], "svg", kind="delta")
    assert b"<svg" in svg[:2_000]


def test_cancel_running_job_keeps_partial_curves(client: Client, digits_mlp: dict[str, Any]) -> None:
    job = client.submit(digits_mlp, "builtin:digits", optimizers=["sgd", "adam"], sweep=long_sweep())
    wait_for_steps(client, job["id"])
    client.cancel(job["id"])
    done = client.wait(job["id"], timeout=60)
    assert done["status"] == "cancelled"
    result = client.result(job["id"])
    assert result["stopped"] == "cancelled"
    recorded = result["arms"][0]
    assert 0 < len(recorded["losses"]) == len(recorded["lrs"]) < 20_000
    assert client.plot(job["id"], "png").startswith(b"\x89PNG")
    with pytest.raises(LrrtError) as exc:  # already terminal
        client.cancel(job["id"])
    assert exc.value.status == 409


def test_cancel_queued_job_never_starts(client: Client, digits_mlp: dict[str, Any]) -> None:
    blocker = client.submit(digits_mlp, "builtin:digits", sweep=long_sweep())
    wait_for_steps(client, blocker["id"])  # the one worker child is busy: the next job stays queued
    queued = client.submit(digits_mlp, "builtin:digits", sweep={"num_steps": 20})
    assert client.status(queued["id"])["status"] == "queued"
    client.cancel(queued["id"])
    client.cancel(blocker["id"])
    assert client.wait(blocker["id"], timeout=60)["status"] == "cancelled"
    # The worker then receives the cancelled job's message and drops it without running it.
    job = client.status(queued["id"])
    assert job["status"] == "cancelled" and job["started_at"] is None


def test_dataset_that_does_not_fit_the_model_fails_with_a_clear_error(client: Client, settings: Settings,
                                                                       digits_mlp: dict[str, Any]) -> None:
    """Only the worker can know the shapes do not fit: the job fails with a problem naming both."""
    np.savez(settings.data_root / "five-features.npz", x=np.zeros((40, 5), "float32"), y=np.zeros(40, "int64"))
    job = client.submit(digits_mlp, "file:five-features.npz", sweep={"num_steps": 10})
    done = client.wait(job["id"], timeout=120)
    assert done["status"] == "failed"
    error = done["error"]
    assert error["type"] == "urn:lrrt:problem:dataset-error"
    assert "5" in error["detail"] and "64" in error["detail"]
    assert "Traceback" not in str(error)
