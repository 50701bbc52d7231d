"""The `lrrt` client commands as a user runs them: subprocesses against the running API and worker."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import EXAMPLES, REPO, Api, Worker

pytestmark = pytest.mark.e2e


def lrrt(api: Api, *args: str, key: str = "key-alice", timeout: float = 240,
         columns: int = 160) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LRRT_")}
    env.update(LRRT_URL=api.url, LRRT_API_KEY=key, COLUMNS=str(columns))
    return subprocess.run([sys.executable, "-m", "service.cli", *args], env=env, cwd=REPO, capture_output=True,
                          text=True, timeout=timeout)


def test_submit_wait_shows_the_recommendation_then_result_status_jobs(api_server: Api, worker_proc: Worker,
                                                                      tmp_path: Path) -> None:
    run = lrrt(api_server, "submit", str(EXAMPLES / "digits_mlp.json"), "--dataset", "builtin:digits",
               "--optimizer", "sgd:momentum=0.9@SGD momentum", "--optimizer", "adam",
               "--start-lr", "1e-4", "--end-lr", "1", "--steps", "40", "--batch-size", "32", "--wait")
    assert run.returncode == 0, run.stderr
    job_id = run.stdout.splitlines()[0]
    assert re.fullmatch(r"[0-9a-f]{32}", job_id)
    assert "SGD momentum" in run.stdout and "adam" in run.stdout
    assert "Recommendation:" in run.stdout
    assert "Traceback" not in run.stderr

    status = lrrt(api_server, "status", job_id)
    assert status.returncode == 0 and "succeeded" in status.stdout

    plot = tmp_path / "curves.png"
    result = lrrt(api_server, "result", job_id, "--json", "--plot", str(plot))
    assert result.returncode == 0, result.stderr
    assert [a["label"] for a in json.loads(result.stdout)["arms"]] == ["SGD momentum", "adam"]
    assert plot.read_bytes().startswith(b"\x89PNG")

    jobs = lrrt(api_server, "jobs")
    assert jobs.returncode == 0 and job_id in jobs.stdout


def test_submit_then_cancel(api_server: Api, worker_proc: Worker) -> None:
    run = lrrt(api_server, "submit", str(EXAMPLES / "digits_mlp.json"), "--dataset", "builtin:digits",
               "--steps", "20000", "--end-lr", "1e-3", "--batch-size", "16")
    assert run.returncode == 0, run.stderr
    job_id = run.stdout.strip()
    cancel = lrrt(api_server, "cancel", job_id)
    assert cancel.returncode == 0, cancel.stderr
    again = lrrt(api_server, "cancel", job_id)  # cancelled while queued, or stopping: both settle
    assert again.returncode in (0, 1) and "Traceback" not in again.stderr


def test_api_problems_are_readable_messages_with_exit_1(api_server: Api) -> None:
    unknown = lrrt(api_server, "status", "0" * 32)
    assert unknown.returncode == 1
    assert "error:" in unknown.stderr and "Traceback" not in unknown.stderr

    bad_key = lrrt(api_server, "jobs", key="wrong")
    assert bad_key.returncode == 1 and "Traceback" not in bad_key.stderr

    rejected = lrrt(api_server, "submit", str(EXAMPLES / "digits_mlp.json"), "--dataset", "nowhere:x")
    assert rejected.returncode == 1
    assert "dataset" in rejected.stderr and "Traceback" not in rejected.stderr
