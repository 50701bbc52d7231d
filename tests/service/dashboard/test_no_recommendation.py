"""A flat sweep in the dashboard: the card says there is no recommendation and why, and offers no code."""

from __future__ import annotations

import copy
from typing import Any

import httpx
import pytest

from tests.service.dashboard.conftest import API_KEY, screenshot

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("dashboard_worker")]

AUTH = {"Authorization": f"Bearer {API_KEY}"}


def test_a_flat_sweep_shows_no_recommendation_and_no_keras_code(new_page: Any, digits_mlp: dict[str, Any],
                                                               dashboard_url: str) -> None:
    body = {
        "model": copy.deepcopy(digits_mlp),
        "dataset": {"uri": "builtin:digits", "normalize": True},
        "optimizers": [{"name": "adam"}],
        "sweep": {"start_lr": 1e-7, "end_lr": 2e-7, "num_steps": 60, "batch_size": 64},  # nothing trains
    }
    job = httpx.post(f"{dashboard_url}/v1/jobs", json=body, headers=AUTH).json()
    page = new_page()
    page.goto(f"/#/jobs/{job['id']}")
    card = page.locator("[data-testid=recommendation-card]")
    card.wait_for(timeout=120_000)
    page.wait_for_selector("[data-testid=no-recommendation]")
    text = card.inner_text()
    assert "No recommendation: adam: the smoothed loss moved by" in text and "widen the LR range" in text
    assert page.locator("[data-testid=keras-code]").count() == 0
    assert page.locator("[data-testid=recommended-lr]").count() == 0
    page.wait_for_selector("[data-testid=diagnostics] li[data-code=flat]")
    screenshot(page, "job-no-recommendation")

    page.click("text=← All jobs")
    row = page.locator(f"tr[data-job-id='{job['id']}']")
    row.wait_for()
    page.wait_for_function(
        f"() => document.querySelector(\"tr[data-job-id='{job['id']}'] [data-testid=no-recommendation]\")")
    assert row.locator("[data-testid=recommended-lr]").count() == 0
