"""Fan-out: the same jobs with one worker process and with two, interleaved, against a real Redis.

    python bench/fanout.py                               # Redis at 127.0.0.1:6379, a prefix of its own
    python bench/fanout.py --rounds 5 --steps 1500 --redis-url redis://127.0.0.1:6379/0

Starts two `lrrt worker` processes of one pool child each, TensorFlow limited to one thread per process
(`TF_NUM_INTEROP_THREADS=1 TF_NUM_INTRAOP_THREADS=1`, so two processes share two cores fairly), and two
`lrrt api` processes on two queues: worker A consumes both queues, worker B only the second. A job
submitted to the first API can therefore only run on A ("one worker"), one submitted to the second
spreads its runs over A and B ("two workers"). Each round submits a 2-arm job (sgd, adam) and a 4-arm x
2-seed job (8 runs) to each, one job at a time, alternating which configuration goes first, and times
submit to result. A warm-up round (every job once on each configuration, so both processes have
imported Keras and compiled every arm) is not counted.

Progress goes to stderr. The last line of stdout is a JSON object: `fanout_speedup_2arm` and
`fanout_speedup_8runs` (median wall time with one worker / with two), every submit-to-result time, and
each run's own seconds in the two-worker jobs (the engine's, from `engine.runs`: arms differ in cost,
so a 2-arm job on two workers waits for its slower arm).
Only keys under its own prefix are touched, and deleted at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import redis

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.load import _free_port, _wait, stop_processes  # noqa: E402
from lrrt.status import TERMINAL  # noqa: E402


class Stack:
    """Two one-child workers (A: both queues, B: the second) and one API per queue, on one prefix."""

    def __init__(self, redis_url: str) -> None:
        self.prefix = f"lrrt-fanout-{uuid.uuid4().hex[:8]}"
        self.queues = [f"{self.prefix}-one", f"{self.prefix}-two"]
        self.redis_url = redis_url
        self.dir = Path(tempfile.mkdtemp(prefix="lrrt-fanout-"))
        env = {k: v for k, v in os.environ.items() if not k.startswith("LRRT_")}
        env.update(LRRT_REDIS_URL=redis_url, LRRT_KEY_PREFIX=self.prefix, LRRT_DATA_ROOT=str(self.dir),
                   LRRT_MAX_UNFINISHED_JOBS="100", TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="",
                   TF_NUM_INTEROP_THREADS="1", TF_NUM_INTRAOP_THREADS="1", PYTHONUNBUFFERED="1")
        self.log = (self.dir / "servers.log").open("ab")
        cli = [sys.executable, "-m", "service.cli"]
        self.procs: list[subprocess.Popen] = []
        for name, queues in (("a", ",".join(self.queues)), ("b", self.queues[1])):
            self._spawn([*cli, "worker", "-Q", queues, "--concurrency", "1", "--hostname",
                         f"fanout-{name}-{os.getpid()}@{socket.gethostname()}"], env)
        self.urls = []
        for queue in self.queues:
            port = _free_port()
            self._spawn([*cli, "api", "--port", str(port)], {**env, "LRRT_QUEUE": queue})
            self.urls.append(f"http://127.0.0.1:{port}")
        for url in self.urls:
            _wait(lambda url=url: len(httpx.get(f"{url}/readyz", timeout=2).json().get("workers", [])) == 2,
                  "the APIs and both workers", 180, self.procs)

    def _spawn(self, argv: list[str], env: dict[str, str]) -> None:
        self.procs.append(subprocess.Popen(argv, env=env, cwd=REPO, stdout=self.log, stderr=self.log,
                                           start_new_session=True))

    def submit_and_wait(self, config: int, body: dict[str, Any]) -> tuple[float, dict[str, Any]]:
        """Seconds from submit to result, and the result (the job must succeed)."""
        url = self.urls[config]
        began = time.perf_counter()
        job_id = httpx.post(f"{url}/v1/jobs", json=body, timeout=60).json()["id"]
        _wait(lambda: httpx.get(f"{url}/v1/jobs/{job_id}", timeout=10).json()["status"] in TERMINAL,
              f"job {job_id}", 1800, self.procs)
        result = httpx.get(f"{url}/v1/jobs/{job_id}/result", timeout=60).json()
        seconds = time.perf_counter() - began
        if result.get("status") != "succeeded":
            raise SystemExit(f"fanout: job {job_id} ended {result.get('status')}: {self.dir / 'servers.log'}")
        return seconds, result

    def stop(self) -> None:
        stop_processes(self.procs)
        client = redis.Redis.from_url(self.redis_url)
        for key in client.scan_iter(match=f"{self.prefix}*", count=500):
            client.delete(key)


def job_bodies(model: dict[str, Any], steps: int) -> dict[str, dict[str, Any]]:
    sweep = {"start_lr": 1e-4, "end_lr": 1.0, "num_steps": steps, "batch_size": 32, "divergence_threshold": None}
    dataset = {"uri": "builtin:digits", "normalize": True}
    return {
        "2arm": {"model": model, "dataset": dataset, "optimizers": [{"name": "sgd"}, {"name": "adam"}], "sweep": sweep},
        "8runs": {"model": model, "dataset": dataset, "sweep": {**sweep, "repeats": 2},
                  "optimizers": [{"name": "sgd"}, {"name": "adam"}, {"name": "rmsprop"}, {"name": "nadam"}]},
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--rounds", type=int, default=3, help="Timed rounds (each: every job on both configurations).")
    parser.add_argument("--steps", type=int, default=6000, help="Steps per run (digits MLP, batch 32): ~7 s a run "
                        "here, so the fixed cost per job does not dominate.")
    args = parser.parse_args()
    model = json.loads((REPO / "examples" / "digits_mlp.json").read_text())
    bodies = job_bodies(model, args.steps)
    stack = Stack(args.redis_url)
    times: dict[str, dict[str, list[float]]] = {kind: {"one": [], "two": []} for kind in bodies}
    workers: dict[str, list[int]] = {kind: [] for kind in bodies}
    run_seconds: dict[str, list[list[float]]] = {kind: [] for kind in bodies}
    try:
        for round_index in range(args.rounds + 1):
            order = (0, 1) if round_index % 2 == 0 else (1, 0)  # alternate which configuration goes first
            for kind, body in bodies.items():
                for config in order:
                    seconds, result = stack.submit_and_wait(config, body)
                    label = ("one", "two")[config]
                    used = len({r["worker"] for r in result["engine"]["runs"]})
                    print(f"round {round_index} {kind} {label} worker(s): {seconds:.2f} s on {used} worker(s)"
                          f"{' (warm-up)' if round_index == 0 else ''}", file=sys.stderr)
                    if round_index:
                        times[kind][label].append(round(seconds, 3))
                        if config == 1:
                            workers[kind].append(used)
                            run_seconds[kind].append([r["seconds"] for r in result["engine"]["runs"]])
    finally:
        stack.stop()
    summary: dict[str, Any] = {"rounds": args.rounds, "steps_per_run": args.steps,
                               "workers_used_with_two": workers, "run_seconds_with_two": run_seconds}
    for kind, by in times.items():
        summary[f"fanout_speedup_{kind}"] = round(statistics.median(by["one"]) / statistics.median(by["two"]), 3)
        summary[f"seconds_{kind}_one_worker"] = by["one"]
        summary[f"seconds_{kind}_two_workers"] = by["two"]
    print(json.dumps(summary, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
