"""A curve that cannot support a recommendation gets none, through the real API, worker and CLI."""

from __future__ import annotations

from typing import Any

import pytest

from lrrt.client.api import Client

from .conftest import Api
from .test_cli import lrrt

pytestmark = pytest.mark.e2e


def test_a_flat_sweep_gives_no_recommendation_and_says_what_to_change(client: Client, api_server: Api,
                                                                      digits_mlp: dict[str, Any]) -> None:
    # At 1e-7..2e-7 nothing trains in 60 steps: the loss stays where it started.
    job = client.submit(digits_mlp, {"uri": "builtin:digits", "normalize": True}, optimizers=["adam", "sgd"],
                        sweep={"start_lr": 1e-7, "end_lr": 2e-7, "num_steps": 60, "batch_size": 64})
    done = client.wait(job["id"], timeout=240)
    assert done["status"] == "succeeded", done.get("error")
    result = client.result(job["id"])

    for arm in result["arms"]:
        assert arm["recommended_lr"] is None and arm["recommended_rule"] is None
        flat = [f for f in arm["diagnostics"] if f["code"] == "flat"]
        assert flat and "widen the LR range" in flat[0]["message"]
    assert result["best_arm"] is None and result["recommendation"] is None
    assert "adam: the smoothed loss moved by" in result["recommendation_reason"]

    shown = lrrt(api_server, "result", job["id"])
    assert shown.returncode == 0, shown.stderr
    assert "No recommendation: adam: the smoothed loss moved by" in shown.stdout
    assert "Recommendation:" not in shown.stdout
