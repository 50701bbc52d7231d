"""The dashboard in a real headless Chromium, against the real API, Redis and a real Celery worker.

What a person does: give the API key once, submit a digits job through the form, watch the chart
fill in while it runs, read the recommendation when it ends, download the results, cancel a job from
its page, and get validation errors next to the fields they concern. Every test also fails on any
error the browser reports (console, uncaught exceptions, failed requests) that it did not expect.
Screenshots land in test-artifacts/dashboard/.
"""

from __future__ import annotations

import copy
import csv
import hashlib
import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.service.dashboard.conftest import API_KEY, REPO, screenshot

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("dashboard_worker")]

AUTH = {"Authorization": f"Bearer {API_KEY}"}
REPO_EXAMPLE = REPO / "service" / "dashboard" / "static" / "examples" / "digits-mlp.json"

#: Records, in the page, every change of the loss chart's point count with the job's status then.
RECORD_POINTS = """() => {
  window.__points = [];
  const chart = document.querySelector('[data-testid=loss-chart]');
  const status = () => document.querySelector('[data-testid=job-status]').className.replace('badge', '').trim();
  const note = () => window.__points.push([status(), Number(chart.dataset.points)]);
  note();
  new MutationObserver(note).observe(chart, {attributes: true, attributeFilter: ['data-points']});
}"""


def test_asks_for_the_api_key_once_and_keeps_it(new_page: Any, console: Any) -> None:
    console.allow("status of 401")  # the request that tells the page auth is on
    page = new_page(with_key=False)
    page.goto("/")
    dialog = page.locator("#key-dialog")
    dialog.wait_for(state="visible")
    screenshot(page, "api-key-dialog", full_page=False)
    page.fill("#key-input", API_KEY)
    page.click("#key-form button[type=submit]")
    page.wait_for_selector("[data-testid=jobs-table], .empty h2")
    assert page.evaluate("localStorage.getItem('lrrt.apiKey')") == API_KEY
    page.reload()
    page.wait_for_selector("[data-testid=jobs-table], .empty h2")
    assert not dialog.is_visible()
    assert page.locator("#key-status").is_visible()


def test_submit_a_digits_job_and_watch_it_to_the_recommendation(new_page: Any, tmp_path: Path) -> None:
    page = new_page()
    page.goto("/#/new")
    page.wait_for_selector("[data-testid=submit-form]")
    # Defaults come from the job spec.
    assert page.input_value("#f-sweep\\.start_lr") == "1e-5"
    assert page.input_value("#f-sweep\\.end_lr") == "10"
    assert page.input_value("#f-sweep\\.batch_size") == "64"
    assert page.input_value("#f-loss") == "sparse_categorical_crossentropy"
    assert page.locator("[data-testid=optimizer-row]").count() == 1

    page.click("[data-testid=example-model]")
    page.wait_for_selector(".model-summary.ok")
    page.check("#f-dataset\\.normalize")
    page.click("[data-testid=add-optimizer]")  # SGD with momentum 0.9 beside the default Adam
    page.fill("#f-sweep\\.start_lr", "1e-4")
    page.fill("#f-sweep\\.num_steps", "800")
    page.fill("#f-sweep\\.batch_size", "256")
    page.fill("#f-labels", "team=vision, case=dashboard")
    screenshot(page, "submit-form")
    page.click("[data-testid=submit-button]")

    page.wait_for_url(re.compile(r"#/jobs/[0-9a-f]{32}$"))
    job_id = page.url.rsplit("/", 1)[1]
    page.wait_for_selector("[data-testid=loss-chart]")
    page.evaluate(RECORD_POINTS)

    # The chart gains points while the job runs.
    page.wait_for_function(
        "() => document.querySelector('[data-testid=job-status]').classList.contains('running')"
        " && Number(document.querySelector('[data-testid=loss-chart]').dataset.points) > 0",
        timeout=120_000,
    )
    screenshot(page, "job-running")
    card = page.locator("[data-testid=recommendation-card]")
    card.wait_for(timeout=120_000)
    running_counts = [points for status, points in page.evaluate("window.__points") if status == "running"]
    growth = [b for a, b in zip(running_counts, running_counts[1:]) if b > a]
    assert len(growth) >= 2, f"the chart should gain points while running, saw {running_counts}"

    # It settles on the final curves and the recommendation.
    assert page.locator("[data-testid=job-status]").inner_text().lower() == "succeeded"
    result = httpx.get(f"{page.url.split('#')[0]}v1/jobs/{job_id}/result", headers=AUTH).json()
    total_points = sum(len(arm["lrs"]) for arm in result["arms"])
    page.wait_for_function(f"() => document.querySelector('[data-testid=loss-chart]').dataset.points == '{total_points}'")
    lr_text = card.locator("[data-testid=recommended-lr]").inner_text()
    assert float(lr_text) == pytest.approx(result["recommendation"]["learning_rate"], rel=0.01)
    assert result["recommendation"]["optimizer"] in card.inner_text()
    assert "base_lr" in card.inner_text() and "Rule" in card.inner_text()
    page.wait_for_selector("[data-testid=arms-table]")
    assert page.locator("[data-testid=arms-table] tbody tr").count() == 2
    page.wait_for_selector("[data-testid=diagnostics] li")
    screenshot(page, "job-succeeded")

    # The Keras code runs as it is.
    constant = page.locator("[data-testid=keras-code]").inner_text()
    page.click("text=One-cycle schedule")
    one_cycle = page.locator("[data-testid=keras-code]").inner_text()
    assert "CosineDecay" in one_cycle and "warmup_target=max_lr" in one_cycle
    keras_check = start_keras([
        constant + f"\nassert abs(float(optimizer.learning_rate) - {float(lr_text)!r}) < 1e-6\n",
        one_cycle + "\nassert float(optimizer.learning_rate) > 0\n",
    ])

    # Downloads: JSON (the result), CSV (one row per arm and step), PNG (the server's chart).
    downloaded = {kind: download(page, kind, tmp_path) for kind in ("json", "csv", "png")}
    assert json.loads(downloaded["json"].read_text())["recommendation"] == result["recommendation"]
    rows = list(csv.DictReader(io.StringIO(downloaded["csv"].read_text())))
    assert len(rows) == total_points and {"arm", "step", "lr", "loss", "loss_delta"} <= rows[0].keys()
    assert downloaded["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # The jobs page lists it with its recommendation.
    page.click("text=← All jobs")
    row = page.locator(f"tr[data-job-id='{job_id}']")
    row.wait_for()
    assert row.get_attribute("data-status") == "succeeded"
    page.wait_for_function(f"() => document.querySelector(\"tr[data-job-id='{job_id}'] [data-testid=recommended-lr]\")")
    assert row.locator("[data-testid=recommended-lr]").inner_text() == lr_text
    screenshot(page, "jobs-list")

    out, err = keras_check.communicate(timeout=180)
    assert keras_check.returncode == 0, f"the Keras code the page offers failed:\n{constant}\n{one_cycle}\n{err[-2000:]}"


def test_cancel_a_running_job_from_its_page(new_page: Any, dashboard_url: str, digits_mlp: dict[str, Any]) -> None:
    body = {
        "model": copy.deepcopy(digits_mlp),
        "dataset": {"uri": "builtin:digits", "normalize": True},
        "optimizers": [{"name": "sgd", "label": "SGD (long)"}],
        # Long enough to be cancelled mid-way, and never diverging.
        "sweep": {"start_lr": 1e-5, "end_lr": 1e-3, "num_steps": 20_000, "batch_size": 16, "divergence_threshold": None},
        "labels": {"case": "cancel"},
    }
    job = httpx.post(f"{dashboard_url}/v1/jobs", json=body, headers=AUTH).json()
    page = new_page()
    page.goto(f"/#/jobs/{job['id']}")
    page.wait_for_function(
        "() => Number(document.querySelector('[data-testid=loss-chart]')?.dataset.points) > 1", timeout=120_000)
    page.click("[data-testid=cancel-button]")
    page.wait_for_function(
        "() => document.querySelector('[data-testid=job-status]').classList.contains('cancelled')", timeout=60_000)
    page.wait_for_selector("text=The job was cancelled")
    assert not page.locator("[data-testid=cancel-button]").is_visible()
    assert int(page.get_attribute("[data-testid=loss-chart]", "data-points")) > 1  # the partial curve stays
    screenshot(page, "job-cancelled")
    assert httpx.get(f"{dashboard_url}/v1/jobs/{job['id']}", headers=AUTH).json()["status"] == "cancelled"


def test_validation_errors_show_next_to_their_fields(new_page: Any, console: Any, digits_mlp: dict[str, Any],
                                                     dashboard_url: str) -> None:
    console.allow("status of 422")  # the API's answers to the bad submissions, shown in the form
    before = len(httpx.get(f"{dashboard_url}/v1/jobs", headers=AUTH, params={"page_size": 100}).json()["items"])
    page = new_page()
    page.goto("/#/new")
    page.wait_for_selector("[data-testid=submit-form]")

    page.fill("[data-testid=model-input]", "{not json")
    page.click("[data-testid=submit-button]")
    assert "Not valid JSON" in page.locator("[data-testid='error-model']").inner_text()

    page.click("[data-testid=example-model]")
    page.wait_for_selector(".model-summary.ok")
    page.fill("#f-sweep\\.start_lr", "-1")
    page.click("[data-testid=submit-button]")
    start_lr_error = page.locator("[data-field='sweep.start_lr'] .field-error")
    start_lr_error.wait_for()
    assert "greater than 0" in start_lr_error.inner_text()
    assert "invalid" in page.get_attribute("[data-field='sweep.start_lr']", "class")

    page.fill("#f-sweep\\.start_lr", "1e-5")
    page.fill("#f-sweep\\.end_lr", "1e-6")
    page.click("[data-testid=submit-button]")
    sweep_error = page.locator("[data-testid=error-sweep]")
    sweep_error.wait_for()
    assert "end_lr must be greater than start_lr" in sweep_error.inner_text()
    assert page.locator("[data-field='sweep.start_lr'] .field-error").inner_text() == ""

    page.fill("#f-sweep\\.end_lr", "10")
    lambda_model = copy.deepcopy(digits_mlp)
    lambda_model["config"]["layers"].insert(1, {
        "module": "keras.layers", "class_name": "Lambda", "registered_name": None,
        "config": {"name": "sneaky", "function": {"class_name": "__lambda__", "config": {"code": "print(1)"}}},
    })
    page.fill("[data-testid=model-input]", json.dumps(lambda_model))
    page.click("[data-testid=submit-button]")
    model_error = page.locator("[data-testid='error-model']")
    page.wait_for_function("() => document.querySelector(\"[data-testid='error-model']\").textContent.includes('Lambda')")
    assert "Not allowed" in model_error.inner_text()
    screenshot(page, "submit-errors")
    after = len(httpx.get(f"{dashboard_url}/v1/jobs", headers=AUTH, params={"page_size": 100}).json()["items"])
    assert after == before, "a rejected submission must create no job"


def download(page: Any, kind: str, folder: Path) -> Path:
    page.click("[data-testid=download-menu]")
    with page.expect_download() as info:
        page.click(f"[data-testid=download-{kind}]")
    path = folder / info.value.suggested_filename
    info.value.save_as(path)
    assert path.suffix == f".{kind}"
    return path


def start_keras(snippets: list[str]) -> subprocess.Popen[str]:
    """Run the snippets the page offers for copying, each as it is, in one fresh interpreter with Keras
    (started in the background: importing TensorFlow takes a while on 2 cores)."""
    code = "\n".join(f"exec({snippet!r}, {{}})" for snippet in snippets)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
    return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env)


def test_a_failed_job_says_what_to_change(new_page: Any, dashboard_url: str, digits_mlp: dict[str, Any]) -> None:
    model = copy.deepcopy(digits_mlp)  # an unknown loss is a 422 at submit now; this only the worker can know:
    model["config"]["layers"][-1]["config"]["units"] = 5  # digits has 10 classes, the model's output 5
    body = {"model": model, "dataset": {"uri": "builtin:digits"}, "sweep": {"num_steps": 20}}
    job = httpx.post(f"{dashboard_url}/v1/jobs", json=body, headers=AUTH).json()
    page = new_page()
    page.goto(f"/#/jobs/{job['id']}")
    error = page.locator("[data-testid=job-error]")
    error.wait_for(timeout=60_000)
    failed = httpx.get(f"{dashboard_url}/v1/jobs/{job['id']}", headers=AUTH).json()
    assert failed["status"] == "failed"
    assert failed["error"]["title"] in error.inner_text() and failed["error"]["detail"] in error.inner_text()
    assert page.locator("[data-testid=loss-chart]").get_attribute("data-points") == "0"
    assert not page.locator("[data-testid=loss-chart]").is_visible()  # nothing to chart: no empty axes
    screenshot(page, "job-failed")


def test_upload_a_dataset_from_the_form(new_page: Any, tmp_path: Path) -> None:
    np = pytest.importorskip("numpy")
    path = tmp_path / "tiny.npz"
    rng = np.random.default_rng(0)
    np.savez(path, x=rng.random((120, 64), dtype=np.float32), y=rng.integers(0, 10, 120))
    page = new_page()
    page.goto("/#/new")
    page.wait_for_selector("[data-testid=submit-form]")
    page.click("[data-testid=dataset-source-upload]")
    page.set_input_files("[data-testid=npz-file]", str(path))
    page.wait_for_selector("text=Uploaded tiny.npz")
    uri = page.input_value("[data-testid=uploaded-datasets]")
    assert re.fullmatch(r"dataset:[0-9a-f]+", uri), uri
    assert page.locator("[data-testid=uploaded-datasets]").is_visible()
    assert uri in page.locator(".summary-list").inner_text()


def test_start_a_job_from_weights_uploaded_in_the_form(new_page: Any, dashboard_url: str, tmp_path: Path) -> None:
    """Fine-tuning from the form: upload a `.weights.h5` of the example model, submit, and the job's
    result names those weights (the sha256 of the file the browser sent)."""
    example = REPO_EXAMPLE.read_text()
    path = tmp_path / "digits-mlp.weights.h5"
    made = start_keras([f"import keras\nkeras.models.model_from_json({example!r}).save_weights({str(path)!r})"])
    _, err = made.communicate(timeout=180)
    assert made.returncode == 0, err[-2000:]
    page = new_page()
    page.goto("/#/new")
    page.wait_for_selector("[data-testid=submit-form]")
    assert page.input_value("[data-testid=weights-select]") == ""  # a fresh initialisation unless chosen
    page.click("[data-testid=example-model]")
    page.wait_for_selector(".model-summary.ok")
    page.set_input_files("[data-testid=weights-file]", str(path))
    page.wait_for_selector("text=Uploaded digits-mlp.weights.h5")
    uri = page.input_value("[data-testid=weights-select]")
    assert re.fullmatch(r"weights:[0-9a-f]+", uri), uri
    assert uri in page.locator(".summary-list").inner_text()
    page.fill("#f-sweep\\.num_steps", "30")
    screenshot(page, "submit-form-weights")
    page.click("[data-testid=submit-button]")
    page.wait_for_url(re.compile(r"#/jobs/[0-9a-f]{32}$"))
    job_id = page.url.rsplit("/", 1)[1]
    page.locator("[data-testid=recommendation-card], [data-testid=job-error]").first.wait_for(timeout=120_000)
    job = httpx.get(f"{dashboard_url}/v1/jobs/{job_id}", headers=AUTH).json()
    assert job["status"] == "succeeded", job.get("error")
    assert job["spec"]["weights"] == uri
    result = httpx.get(f"{dashboard_url}/v1/jobs/{job_id}/result", headers=AUTH).json()
    assert result["engine"]["weights"] == {"uri": uri, "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}
    # The next form lists it among the weights uploaded before, to pick again without uploading.
    again = new_page()
    again.goto("/#/new")
    again.wait_for_selector(f"[data-testid=weights-select] option[value='{uri}']", state="attached")
    again.select_option("[data-testid=weights-select]", uri)
    assert uri in again.locator(".summary-list").inner_text()
