"""The rest of the `lrrt` client commands against the real API and worker: the whole spec as flags,
--json, CSV, copy-ready code, datasets, delete, and unmistakable failed and cancelled jobs."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from lrrt.client.api import Client
from lrrt.results import partial_result
from lrrt.settings import Settings
from lrrt.spec import JobSpec
from lrrt.store.jobs import JobStore

from .conftest import EXAMPLES, REPO, Api, Worker, long_sweep, wait_for_steps
from .test_cli import lrrt

pytestmark = pytest.mark.e2e
MLP = str(EXAMPLES / "digits_mlp.json")


def run_with_keras(script: str) -> None:
    """Run Python that imports Keras in a fresh process (the test process stays Keras-free)."""
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "TF_CPP_MIN_LOG_LEVEL": "2"}
    done = subprocess.run([sys.executable, "-c", script], env=env, cwd=REPO, capture_output=True, text=True, check=False,
                          timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]


def test_every_spec_flag_reaches_the_job_then_json_csv_code_jobs_delete(api_server: Api, worker_proc: Worker,
                                                                        client: Client) -> None:
    run = lrrt(api_server, "submit", MLP, "--dataset", "builtin:digits", "--normalize", "--validation-split", "0.2",
               "--max-samples", "600", "-o", "sgd:momentum=0.9@SGD m", "-o", "adam", "--start-lr", "1e-4",
               "--end-lr", "1", "--mode", "exponential", "--steps", "30", "--batch-size", "32",
               "--divergence-threshold", "none", "--smoothing", "0.9", "--moving-average", "5",
               "--evaluate-on", "validation", "--seed", "3", "--labels", "team=vision", "--labels", "run=cli",
               "--json")
    assert run.returncode == 0, run.stderr
    job = json.loads(run.stdout)
    spec = job["spec"]
    assert spec["dataset"] == {"uri": "builtin:digits", "normalize": True, "validation_split": 0.2, "max_samples": 600,
                               "format": None, "columns": None}  # the object-storage fields, left to their defaults
    assert spec["sweep"]["divergence_threshold"] is None and spec["sweep"]["evaluate_on"] == "validation"
    assert (spec["sweep"]["seed"], spec["sweep"]["moving_average"], spec["sweep"]["num_steps"]) == (3, 5, 30)
    assert job["labels"] == {"team": "vision", "run": "cli"}
    job_id = job["id"]
    assert client.wait(job_id, timeout=240)["status"] == "succeeded"

    status = lrrt(api_server, "status", job_id, "--json")
    assert status.returncode == 0 and json.loads(status.stdout)["status"] == "succeeded"

    table = lrrt(api_server, "result", job_id, "--csv")
    assert table.returncode == 0, table.stderr
    rows = list(csv.DictReader(io.StringIO(table.stdout)))
    result = client.result(job_id)
    assert len(rows) == sum(len(arm["lrs"]) for arm in result["arms"])
    assert list(rows[0]) == ["label", "step", "lr", "loss", "smoothed_loss", "loss_delta", "val_loss"]
    assert {r["label"] for r in rows} == {"SGD m", "adam"} and any(r["val_loss"] for r in rows)

    constant = lrrt(api_server, "code", job_id)
    one_cycle = lrrt(api_server, "code", job_id, "--one-cycle")
    assert constant.returncode == one_cycle.returncode == 0
    assert "CosineDecay" in one_cycle.stdout and result["recommendation"]["optimizer"] in constant.stdout
    lr = result["recommendation"]["learning_rate"]
    run_with_keras(constant.stdout + f"\nassert abs(float(optimizer.learning_rate) - {lr!r}) / {lr!r} < 0.01\n"
                   + one_cycle.stdout + "\nassert float(optimizer.learning_rate) > 0\n")

    listed = lrrt(api_server, "jobs", "--json")
    assert job_id in [j["id"] for j in json.loads(listed.stdout)["items"]]
    narrow = lrrt(api_server, "jobs", columns=80)
    assert narrow.returncode == 0 and job_id in narrow.stdout  # the whole id, on one line

    deleted = lrrt(api_server, "delete", job_id)
    assert deleted.returncode == 0 and "deleted" in deleted.stdout
    gone = lrrt(api_server, "status", job_id)
    assert gone.returncode == 1 and "No job" in gone.stderr


def test_datasets_upload_list_show_delete_and_submit_against_one(api_server: Api, worker_proc: Worker,
                                                                 tmp_path: Path, client: Client) -> None:
    path = tmp_path / "blobs.npz"
    rng = np.random.default_rng(0)
    np.savez(path, x=rng.normal(size=(256, 64)).astype("float32"), y=rng.integers(0, 10, 256))
    upload = lrrt(api_server, "datasets", "upload", str(path))
    assert upload.returncode == 0, upload.stderr
    uri = upload.stdout.strip()
    assert uri.startswith("dataset:")
    listed = lrrt(api_server, "datasets", "list", "--json")
    assert uri in [d["uri"] for d in json.loads(listed.stdout)]
    shown = lrrt(api_server, "datasets", "show", uri)
    assert shown.returncode == 0 and "(256, 64)" in shown.stdout

    run = lrrt(api_server, "submit", MLP, "--dataset", uri, "--steps", "10", "--batch-size", "32", "--wait")
    assert run.returncode == 0, run.stderr
    assert "Recommendation" in run.stdout or "No recommendation" in run.stdout

    deleted = lrrt(api_server, "datasets", "delete", uri, "--json")
    assert deleted.returncode == 0 and json.loads(deleted.stdout)["deleted"] is True
    again = lrrt(api_server, "datasets", "show", uri)
    assert again.returncode == 1 and "No dataset" in again.stderr


def test_cancelled_job_says_so_first_exits_4_and_its_recommendation_is_partial(
        api_server: Api, worker_proc: Worker, client: Client, digits_mlp: dict[str, Any]) -> None:
    job = client.submit(digits_mlp, "builtin:digits", sweep=long_sweep())
    wait_for_steps(client, job["id"], steps=40)
    cancel = lrrt(api_server, "cancel", job["id"], "--wait")
    assert cancel.returncode == 0, cancel.stderr
    assert "cancelled" in cancel.stdout and f"lrrt result {job['id']}" in cancel.stdout

    status = lrrt(api_server, "status", job["id"])
    assert status.returncode == 4 and "cancelled" in status.stdout
    assert "running" not in status.stdout  # its arm was interrupted, not running

    result = lrrt(api_server, "result", job["id"])
    assert result.returncode == 4, result.stderr
    first = result.stdout.splitlines()[0]
    assert "CANCELLED" in first
    assert "PARTIAL" in result.stdout and "(partial)" in result.stdout
    assert "Partial recommendation" in result.stdout or "No recommendation" in result.stdout
    assert "\nRecommendation:" not in result.stdout


def test_failed_job_with_partial_curves_says_failed_first_and_exits_3(
        api_server: Api, client: Client, store: JobStore, e2e_settings: Settings, digits_mlp: dict[str, Any]) -> None:
    """A job that hit the time limit after recording steps. Its record is written with the store calls
    the worker makes (create without a Celery message, claim, record_chunk, finish), so it fails the
    same way every run; the API and the CLI are the real ones."""
    spec = JobSpec.model_validate({"model": digits_mlp, "dataset": {"uri": "builtin:digits"},
                                   "optimizers": [{"name": "sgd"}, {"name": "adam"}], "sweep": {"num_steps": 100}})
    job_id = store.create(tenant="alice", spec=spec, max_unfinished=e2e_settings.max_unfinished_jobs).job.id
    token = store.new_token()
    assert store.claim(job_id, token).outcome == "claimed"
    lrs = list(np.logspace(-4, -1, 60))
    losses = list(2.3 - np.linspace(0, 1.5, 60) + np.linspace(0, 1, 60) ** 6)
    chunk = {"arm_index": 0, "arm_label": "sgd", "repeat": 0, "step_start": 0, "state": "running",
             "steps_total": 100, "lrs": lrs, "losses": losses, "val_losses": None}
    progress = {"steps_done": 60, "steps_total": 200, "fraction": 0.3,
                "arms": [{"label": "sgd", "state": "running", "steps_done": 60, "lr": lrs[-1], "loss": losses[-1]},
                         {"label": "adam", "state": "pending", "steps_done": 0, "lr": None, "loss": None}]}
    store.record_chunk(job_id, progress, chunk)
    error = {"type": "urn:lrrt:problem:time-limit", "title": "The job ran out of time", "status": 422,
             "detail": "It ran past the 1 s limit: lower num_steps or batch_size."}
    assert store.finish(job_id, "failed", result=partial_result(spec, [chunk], stopped="time_limit"), error=error,
                        token=token)

    status = lrrt(api_server, "status", job_id)
    assert status.returncode == 3
    assert "failed" in status.stdout.splitlines()[0] and "ran out of time" in status.stdout
    assert "running" not in status.stdout and "interrupted" in status.stdout

    result = lrrt(api_server, "result", job_id)
    assert result.returncode == 3
    assert "FAILED" in result.stdout.splitlines()[0] and "ran out of time" in result.stdout.splitlines()[0]
    assert "PARTIAL" in result.stdout and "\nRecommendation:" not in result.stdout

    as_json = lrrt(api_server, "status", job_id, "--json")
    assert as_json.returncode == 3 and json.loads(as_json.stdout)["status"] == "failed"


def test_failed_before_any_step_submit_wait_exits_3(api_server: Api, worker_proc: Worker,
                                                     e2e_settings: Settings) -> None:
    np.savez(e2e_settings.data_root / "five-features-cli.npz", x=np.zeros((40, 5), "float32"), y=np.zeros(40, "int64"))
    run = lrrt(api_server, "submit", MLP, "--dataset", "file:five-features-cli.npz", "--steps", "10", "--wait")
    assert run.returncode == 3, run.stderr
    assert "FAILED" in run.stdout and "64" in run.stdout and "Traceback" not in run.stderr


def lrrt_here(data_root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`lrrt ARGS` with no server anywhere: Keras on the CPU, `file:` datasets under `data_root`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LRRT_")}
    env.update(CUDA_VISIBLE_DEVICES="", TF_CPP_MIN_LOG_LEVEL="2", COLUMNS="160", LRRT_DATA_ROOT=str(data_root))
    return subprocess.run([sys.executable, "-m", "service.cli", *args], env=env, cwd=REPO, capture_output=True,
                          text=True, check=False, timeout=300)


def test_run_locally_without_the_service(tmp_path: Path) -> None:
    plot = tmp_path / "local.png"
    done = lrrt_here(tmp_path, "run", MLP, "--dataset", "builtin:digits", "--normalize", "-o", "sgd", "-o", "adam",
                     "--steps", "30", "--batch-size", "32", "--json", "--plot", str(plot))
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout)
    assert [arm["label"] for arm in result["arms"]] == ["sgd", "adam"]
    assert all(len(arm["lrs"]) == 30 or arm["stop_reason"] != "completed" for arm in result["arms"])
    engine = result["engine"]  # the rule prefers JAX for an MLP: run here on TensorFlow, the reason names no service
    assert engine["backend"] == "jax" or "ran in-process (`lrrt run`, `lr_find`) on tensorflow" in engine["backend_reason"]
    assert plot.read_bytes().startswith(b"\x89PNG")

    bad = lrrt_here(tmp_path, "run", MLP, "--dataset", "builtin:digits", "--start-lr", "1", "--end-lr", "0.1")
    assert bad.returncode == 1 and "end_lr" in bad.stderr and "Traceback" not in bad.stderr


def test_run_locally_from_a_weights_file(tmp_path: Path) -> None:
    """`lrrt run --weights FILE` (a file outside the data root) starts every arm from it: the result names
    its sha256, and weights of another model fail with the variables that differ, as a submitted job does."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    run_with_keras(f"""
import json, keras
model = keras.models.model_from_json(open({MLP!r}).read())
model.save_weights({str(elsewhere / "mlp.weights.h5")!r})
keras.Sequential([keras.Input((64,)), keras.layers.Dense(7), keras.layers.Dense(10)]).save_weights(
    {str(elsewhere / "other.weights.h5")!r})
""")
    weights = elsewhere / "mlp.weights.h5"
    done = lrrt_here(tmp_path, "run", MLP, "--dataset", "builtin:digits", "--steps", "10", "--weights", str(weights),
                     "--json")
    assert done.returncode == 0, done.stderr[-3000:]
    sha256 = hashlib.sha256(weights.read_bytes()).hexdigest()
    assert json.loads(done.stdout)["engine"]["weights"]["sha256"] == sha256

    other = lrrt_here(tmp_path, "run", MLP, "--dataset", "builtin:digits", "--steps", "10", "--weights",
                      str(elsewhere / "other.weights.h5"))
    assert other.returncode == 1 and "expected" in other.stderr and "Traceback" not in other.stderr, other.stderr[-3000:]
    uploaded = lrrt_here(tmp_path, "run", MLP, "--dataset", "builtin:digits", "--weights", "weights:0123abcd")
    assert uploaded.returncode == 1 and "lrrt submit" in uploaded.stderr
