"""API benchmark, side by side in one run on one machine:

1. `GET /v1/jobs/{id}` requests/s of the real app (`lrrt api`: auth, Redis read, ETag) against a bare
   FastAPI endpoint returning the same JSON, both under uvicorn with the same settings, driven by the
   same load generator in alternating rounds (the machine's speed drifts between runs). Target: the
   real app's rate >= 0.5 x the bare one.
2. Submit-to-running latency with an idle real worker (`lrrt worker`, warmed by one job first): from
   just before `POST /v1/jobs` until the worker's claim stamps `started_at`. Target: p50 < 100 ms.

Needs a real Redis (LRRT_BENCH_REDIS_URL, default redis://127.0.0.1:6379/15); works under its own
key prefix and queue and deletes them afterwards. The last line printed is one JSON object.

    python bench/api.py [--rounds 5] [--seconds 3] [--connections 32] [--submits 30]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import redis

from service.standalone import free_port

REPO = Path(__file__).resolve().parents[1]
REDIS_URL = os.environ.get("LRRT_BENCH_REDIS_URL", "redis://127.0.0.1:6379/15")
API_KEY = "bench-key"


# ---------------------------------------------------------------------------------------- load
async def _connection(host: str, port: int, request: bytes, stop_at: float, counts: list[int]) -> None:
    """One keep-alive HTTP/1.1 connection sending `request` back to back until `stop_at`.

    A minimal client on purpose: a full HTTP client library spends more CPU per request than the
    servers under test, and would measure itself."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        while time.perf_counter() < stop_at:
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head[9:12])
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            if length:
                await reader.readexactly(length)
            if status != 200:
                raise RuntimeError(f"unexpected HTTP {status}: {head[:200]!r}")
            counts[0] += 1
    finally:
        writer.close()


def requests_per_second(port: int, path: str, headers: dict[str, str], seconds: float, connections: int) -> float:
    lines = [f"GET {path} HTTP/1.1", "Host: 127.0.0.1", *(f"{k}: {v}" for k, v in headers.items())]
    request = ("\r\n".join(lines) + "\r\n\r\n").encode()

    async def run() -> float:
        counts = [0]
        start = time.perf_counter()
        await asyncio.gather(*(_connection("127.0.0.1", port, request, start + seconds, counts)
                               for _ in range(connections)))
        return counts[0] / (time.perf_counter() - start)

    return asyncio.run(run())


# ---------------------------------------------------------------------------------------- processes
def spawn(argv: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(argv, env=env, cwd=REPO, stdout=out, stderr=out, start_new_session=True)


def stop(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(15)
    except ProcessLookupError:
        return
    except subprocess.TimeoutExpired:
        pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def wait_for(check, timeout: float, what: str) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except (httpx.TransportError, redis.ConnectionError):
            pass
        time.sleep(0.05)
    raise SystemExit(f"bench: timed out waiting for {what}")


def serve_bare(port: int, body: str) -> None:
    """The baseline: FastAPI returning a fixed job resource, under the same uvicorn settings as `lrrt api`."""
    import uvicorn
    from fastapi import FastAPI

    app = FastAPI()
    job = json.loads(body)

    @app.get("/v1/jobs/{job_id}")
    def get_job(job_id: str) -> dict[str, Any]:
        return job

    uvicorn.run(app, host="127.0.0.1", port=port)


# ---------------------------------------------------------------------------------------- bench
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds per server")
    parser.add_argument("--seconds", type=float, default=3.0, help="length of one round")
    parser.add_argument("--connections", type=int, default=32, help="concurrent keep-alive connections")
    parser.add_argument("--submits", type=int, default=30, help="jobs timed from submit to running")
    parser.add_argument("--serve-bare", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--body", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_bare:
        return serve_bare(args.serve_bare, args.body)

    prefix = f"lrrt-bench-{uuid.uuid4().hex[:8]}"
    workdir = Path(os.environ.get("TMPDIR", "/tmp")) / prefix
    workdir.mkdir(parents=True)
    (workdir / "data").mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("LRRT_")}
    env.update(LRRT_REDIS_URL=REDIS_URL, LRRT_KEY_PREFIX=prefix, LRRT_QUEUE=prefix, LRRT_API_KEYS=f"bench:{API_KEY}",
               LRRT_DATA_ROOT=str(workdir / "data"), LRRT_MAX_UNFINISHED_JOBS="1000", PYTHONUNBUFFERED="1",
               TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES=os.environ.get("CUDA_VISIBLE_DEVICES", ""))
    r = redis.Redis.from_url(REDIS_URL)
    r.ping()
    procs: list[subprocess.Popen[bytes]] = []
    lrrt = [sys.executable, "-m", "service.cli"]
    try:
        api_port = free_port()
        procs.append(spawn([*lrrt, "api", "--port", str(api_port)], env, workdir / "api.log"))
        url = f"http://127.0.0.1:{api_port}"
        wait_for(lambda: httpx.get(f"{url}/healthz").status_code == 200, 60, "the API")
        auth = {"Authorization": f"Bearer {API_KEY}"}
        client = httpx.Client(base_url=url, headers=auth, timeout=30)
        model = json.loads((REPO / "examples" / "digits_mlp.json").read_text())
        tiny = {"model": model, "dataset": {"uri": "builtin:digits"}, "sweep": {"num_steps": 10, "batch_size": 32}}

        # 1. status requests/s: a queued job (no worker yet), real app vs bare app, alternating rounds
        job = client.post("/v1/jobs", json=tiny).json()
        body = client.get(f"/v1/jobs/{job['id']}").text
        bare_port = free_port()
        procs.append(spawn([sys.executable, __file__, "--serve-bare", str(bare_port), "--body", body], env,
                           workdir / "bare.log"))
        wait_for(lambda: httpx.get(f"http://127.0.0.1:{bare_port}/v1/jobs/x").status_code == 200, 60, "the bare app")
        path = f"/v1/jobs/{job['id']}"
        app_rates, bare_rates = [], []
        requests_per_second(api_port, path, auth, 1.0, args.connections)  # warm both
        requests_per_second(bare_port, path, {}, 1.0, args.connections)
        for i in range(args.rounds):
            app_rates.append(requests_per_second(api_port, path, auth, args.seconds, args.connections))
            bare_rates.append(requests_per_second(bare_port, path, {}, args.seconds, args.connections))
            print(f"round {i + 1}: real app {app_rates[-1]:.0f} req/s, bare FastAPI {bare_rates[-1]:.0f} req/s, "
                  f"ratio {app_rates[-1] / bare_rates[-1]:.2f}")
        stop(procs.pop())  # the bare app

        # 2. submit-to-running with an idle, warm worker
        procs.append(spawn([*lrrt, "worker", "--concurrency", "1", "--hostname", f"{prefix}@bench"], env,
                           workdir / "worker.log"))
        client.post(f"/v1/jobs/{job['id']}/cancel")  # the queued job from part 1 must not be timed
        warm = client.post("/v1/jobs", json=tiny).json()
        wait_for(lambda: client.get(f"/v1/jobs/{warm['id']}").json()["status"] == "succeeded", 180, "the warm-up job")
        latencies = []
        for _ in range(args.submits):
            sent = time.time()
            job_id = client.post("/v1/jobs", json=tiny).json()["id"]
            wait_for(lambda job_id=job_id: client.get(f"/v1/jobs/{job_id}").json()["status"] in ("succeeded", "failed"), 120,
                     f"job {job_id}")
            started = datetime.fromisoformat(client.get(f"/v1/jobs/{job_id}").json()["started_at"].replace("Z", "+00:00"))
            latencies.append((started.timestamp() - sent) * 1000)
        latencies.sort()
        p50 = statistics.median(latencies)
        p95 = latencies[min(len(latencies) - 1, round(0.95 * (len(latencies) - 1)))]
        print(f"submit -> running over {len(latencies)} jobs: p50 {p50:.1f} ms, p95 {p95:.1f} ms")
    finally:
        for proc in reversed(procs):
            stop(proc)
        for key in r.scan_iter(match=f"*{prefix}*", count=1000):
            r.delete(key)

    app_rps, bare_rps = statistics.median(app_rates), statistics.median(bare_rates)
    # Each round's pair ran back to back; the median of their ratios resists the machine's drift.
    ratio = statistics.median(a / b for a, b in zip(app_rates, bare_rates))
    print(json.dumps({
        "status_rps_app": round(app_rps, 1),
        "status_rps_bare": round(bare_rps, 1),
        "status_rps_ratio": round(ratio, 3),
        "status_rps_target": 0.5,
        "submit_to_running_ms_p50": round(p50, 1),
        "submit_to_running_ms_p95": round(p95, 1),
        "submit_to_running_target_p50_ms": 100,
        "submits": len(latencies),
        "rounds": args.rounds,
        "round_seconds": args.seconds,
        "connections": args.connections,
        "cpus": os.cpu_count(),
        "machine": platform.machine(),
        "python": platform.python_version(),
    }))


if __name__ == "__main__":
    main()
