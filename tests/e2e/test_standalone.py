"""`lrrt standalone`: the newcomer's first command. Embedded Redis, API and worker start together,
run a job, stop together on Ctrl-C leaving no process behind, and the jobs survive a restart."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from lrrt.client.api import Client

from .conftest import EXAMPLES, REPO, children_of, free_port, wait_until

pytestmark = pytest.mark.e2e


def _start(port: int, data_dir: Path, log: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LRRT_")}  # no Redis configured
    env.update(TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
    with log.open("ab") as out:
        return subprocess.Popen([sys.executable, "-m", "service.cli", "standalone", "--port", str(port),
                                 "--data-dir", str(data_dir)], env=env, cwd=REPO, stdout=out, stderr=out)


def _descendants(pid: int) -> set[int]:
    found: set[int] = set()
    todo = [pid]
    while todo:
        for child in children_of(todo.pop()):
            found.add(child)
            todo.append(child)
    return found


def _running(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _stop_with_ctrl_c(proc: subprocess.Popen[bytes], log: Path) -> None:
    parts = _descendants(proc.pid)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(60) == 0, log.read_text()
    wait_until(lambda: not any(_running(p) for p in parts), 10, "every part to exit")


def test_standalone_runs_a_job_stops_cleanly_and_keeps_jobs(tmp_path: Path) -> None:
    port, data_dir, log = free_port(), tmp_path / "data", tmp_path / "standalone.log"
    url = f"http://127.0.0.1:{port}"
    proc = _start(port, data_dir, log)
    try:
        wait_until(lambda: httpx.get(f"{url}/readyz", timeout=2).status_code == 200 or proc.poll() is not None,
                   180, "standalone to be ready (Redis, API and a live worker)")
        assert proc.poll() is None, log.read_text()
        wait_until(lambda: f"lrrt is running at {url}" in log.read_text(), 10, "the URL to be printed")
        # A worker per backend, so `auto` can send each job to the faster one.
        wait_until(lambda: {w.split("@")[0].rsplit("-", 1)[-1] for w in httpx.get(f"{url}/readyz").json()["workers"]}
                   == {"tensorflow", "jax"}, 120, "a TensorFlow and a JAX worker")
        with Client(url, api_key="") as client:  # loopback, no keys: auth is off
            model = json.loads((EXAMPLES / "digits_mlp.json").read_text())
            job = client.submit(model, "builtin:digits", sweep={"num_steps": 30, "batch_size": 32})
            assert client.wait(job["id"], timeout=180)["status"] == "succeeded"
        _stop_with_ctrl_c(proc, log)
        assert list((data_dir / "redis").glob("appendonly*"))  # persisted (a file in Redis 6, a dir in 7)
        with pytest.raises(httpx.TransportError):
            httpx.get(f"{url}/healthz", timeout=2)

        proc = _start(port, data_dir, log)  # the same data dir: the job is still there
        wait_until(lambda: httpx.get(f"{url}/healthz", timeout=2).status_code == 200 or proc.poll() is not None,
                   60, "standalone to restart")
        with Client(url, api_key="") as client:
            assert client.status(job["id"])["status"] == "succeeded"
            assert len(client.result(job["id"])["arms"][0]["losses"]) > 0
        _stop_with_ctrl_c(proc, log)
    finally:
        if proc.poll() is None:
            for pid in _descendants(proc.pid):
                os.kill(pid, signal.SIGKILL)
            proc.kill()
