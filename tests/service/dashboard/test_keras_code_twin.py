"""`lrrt.client.keras_code` (what `lrrt code` and `RangeTestResult.keras_code` print) and the dashboard's
`kerasCode` (recommend.js) give the same code for the same result, run in the browser on the real
module the dashboard serves."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from lrrt.client.keras_code import keras_code, lr_text

JOB_ID = "a1ba4435e3c24ef5bf851829e9623bf0"


def result(optimizer: dict[str, Any], recommendation: dict[str, Any], arm: dict[str, Any]) -> dict[str, Any]:
    return {"id": JOB_ID, "best_arm": recommendation["optimizer"], "recommendation": recommendation,
            "arms": [{"label": recommendation["optimizer"], "optimizer": optimizer, **arm}]}


CASES = [
    result({"name": "adamw", "params": {}},
           {"optimizer": "adamw", "learning_rate": 0.0215, "rule": "median3",
            "one_cycle": {"max_lr": 0.215, "base_lr": 0.00215}},
           {"suggestions": {"valley": 0.0113}}),
    result({"name": "sgd", "params": {"momentum": 0.9, "nesterov": True}},
           {"optimizer": "SGD momentum", "learning_rate": 3.07e-5},
           {"suggestions": {"steepest": 3.07e-5, "valley": 1e-5}, "lr_bounds": {"base_lr": 1e-5, "max_lr": 1.23e-4}}),
    result({"name": "rmsprop", "params": {"rho": 0.8, "centered": False}},
           {"optimizer": "rmsprop", "learning_rate": 1.0,
            "one_cycle": {"max_lr": 50.0, "base_lr": 0.5, "final_lr": 0.005, "pct_start": 0.25}},
           {}),
    # sweep.confirm: the measured winner's LR, not the one the range test read off its curve
    result({"name": "adam", "params": {}},
           {"optimizer": "adam", "learning_rate": 1.41e-3, "rule": "confirm", "verified": True, "val_loss": 0.48,
            "range_test_lr": 4.23e-3, "one_cycle": {"max_lr": 1.06e-2, "base_lr": 4.23e-4}},
           {"suggestions": {"valley": 2.85e-3}, "recommended_lr": 4.23e-3}),
]


@pytest.mark.parametrize("case", CASES, ids=["median3", "sgd-params", "explicit-cycle", "verified"])
def test_python_and_dashboard_print_the_same_code(browser: Any, dashboard_url: str, case: dict[str, Any]) -> None:
    page = browser.new_page()
    try:
        page.goto(f"{dashboard_url}/healthz")
        js = page.evaluate(
            "async (result) => (await import('/dashboard/js/recommend.js')).kerasCode(result, result.id)", case)
    finally:
        page.close()
    assert keras_code(case) == js["constant"]
    written = re.search(r"learning_rate=([^,]+),", js["constant"])
    assert written and float(written[1]) == pytest.approx(case["recommendation"]["learning_rate"], rel=0.01)
    assert keras_code(case, one_cycle=True) == js["oneCycle"]


@pytest.mark.parametrize("value", [0.0215, 1.0, 50.0, 3.07e-5, 1.234e-3, 0.01, 99.99, 123.0, 1e-7])
def test_numbers_read_as_the_dashboard_writes_them(browser: Any, dashboard_url: str, value: float) -> None:
    page = browser.new_page()
    try:
        page.goto(f"{dashboard_url}/healthz")
        js = page.evaluate(f"async () => (await import('/dashboard/js/format.js')).lr({json.dumps(value)})")
    finally:
        page.close()
    assert lr_text(value) == js
