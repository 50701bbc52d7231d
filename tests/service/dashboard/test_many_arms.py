"""With 4 or more arms the job page's charts stay readable: only the recommended marker is named (the
other suggestions are dots, their values in the arms table), and no label is drawn over another."""

from __future__ import annotations

import copy
import time
from typing import Any

import httpx
import pytest

from tests.service.dashboard.conftest import API_KEY, screenshot

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("dashboard_worker")]

AUTH = {"Authorization": f"Bearer {API_KEY}"}


def test_five_arms_name_only_the_recommended_marker(new_page: Any, dashboard_url: str,
                                                     digits_mlp: dict[str, Any]) -> None:
    body = {
        "model": copy.deepcopy(digits_mlp),
        "dataset": {"uri": "builtin:digits", "normalize": True},
        "optimizers": [{"name": "sgd"}, {"name": "sgd", "label": "SGD momentum", "params": {"momentum": 0.9}},
                       {"name": "adam"}, {"name": "rmsprop"}, {"name": "adamw"}],
        "sweep": {"start_lr": 1e-4, "end_lr": 10.0, "num_steps": 40, "batch_size": 32},
    }
    job = httpx.post(f"{dashboard_url}/v1/jobs", json=body, headers=AUTH).json()
    deadline = time.monotonic() + 240
    while (state := httpx.get(f"{dashboard_url}/v1/jobs/{job['id']}", headers=AUTH).json()["status"]) != "succeeded":
        assert state in ("queued", "running") and time.monotonic() < deadline, state
        time.sleep(1)
    result = httpx.get(f"{dashboard_url}/v1/jobs/{job['id']}/result", headers=AUTH).json()
    total = sum(len(arm["lrs"]) for arm in result["arms"])
    suggestions = sum(1 for arm in result["arms"] for lr in (arm.get("suggestions") or {}).values() if lr)
    assert suggestions > 8  # enough markers that naming them all would crowd the chart

    page = new_page()
    page.goto(f"/#/jobs/{job['id']}")
    page.wait_for_function(f"() => document.querySelector('[data-testid=loss-chart]')?.dataset.points == '{total}'")
    page.wait_for_function("() => document.querySelector('[data-testid=loss-chart]')?.dataset.labels !== undefined")
    chart = page.locator("[data-testid=loss-chart]")
    named = 1 if result["recommendation"] and result["recommendation"]["learning_rate"] else 0
    assert chart.get_attribute("data-labels") == str(named)
    assert chart.get_attribute("data-labels-skipped") == "0"
    screenshot(page, "job-five-arms")
