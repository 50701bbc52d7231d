"""End-to-end fixtures: a real `lrrt worker` (Celery, prefork, real Keras on the CPU) and a real
`lrrt api` (uvicorn), both subprocesses on this session's Redis prefix and queue.

One warm worker serves the whole session (TensorFlow's import and the first compile cost seconds);
tests that kill or restart a process bring it back before they return.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from lrrt.client.api import Client
from lrrt.settings import Settings
from lrrt.store.keys import Keys
from service.standalone import free_port

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"


def wait_until(check: Callable[[], Any], timeout: float, what: str, interval: float = 0.1) -> Any:
    """Poll `check` until it returns something truthy; fail the test with `what` after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = check()
        except (httpx.TransportError, redis.ConnectionError):  # not up yet
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def children_of(pid: int) -> list[int]:
    """Direct child pids, from /proc (Linux)."""
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(entry.name))
    return out


class Proc:
    """A server subprocess in its own process group, logging to a file the failure message shows."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log_dir: Path) -> None:
        self.name, self.argv, self.env = name, argv, env
        self.log_path = log_dir / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(self.argv, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                     start_new_session=True, cwd=REPO)
        log.close()

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20) -> None:
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, sig)
            self.proc.wait(timeout)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        try:  # anything left in the group (pool children)
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def tail(self, n: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""


def server_env_for(settings: Settings) -> dict[str, str]:
    """The environment a server process (`lrrt api`, `lrrt worker`) needs to read `settings` back:
    the Redis prefix, queue, data root and tenants; Keras on the CPU."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LRRT_")}
    env.update(
        LRRT_REDIS_URL=settings.redis_url,
        LRRT_KEY_PREFIX=settings.key_prefix,
        LRRT_QUEUE=settings.queue,
        LRRT_DATA_ROOT=str(settings.data_root),
        LRRT_API_KEYS=settings.api_keys,
        LRRT_MAX_UNFINISHED_JOBS=str(settings.max_unfinished_jobs),
        PYTHONUNBUFFERED="1",
        TF_CPP_MIN_LOG_LEVEL="2",
        CUDA_VISIBLE_DEVICES="",  # the tests run Keras on the CPU
    )
    return env


@pytest.fixture(scope="session")
def e2e_settings(settings: Settings) -> Settings:
    """The session's settings on a queue of our own: other suites may run workers on the session queue,
    and these tests must know which worker runs their jobs (to kill it, or to keep a job queued)."""
    return settings.model_copy(update={"queue": f"{settings.queue}-e2e"})


@pytest.fixture(scope="session")
def server_env(e2e_settings: Settings) -> dict[str, str]:
    return server_env_for(e2e_settings)


class Worker(Proc):
    def __init__(self, env: dict[str, str], log_dir: Path, hostname: str, keys: Keys, r: redis.Redis,
                 backend: str = "tensorflow") -> None:
        argv = [sys.executable, "-m", "service.cli", "worker", "--concurrency", "1", "--hostname", hostname,
                "--loglevel", "INFO", "--backend", backend]
        super().__init__("worker" if backend == "tensorflow" else f"worker-{backend}", argv, env, log_dir)
        self.heartbeat_key = keys.worker_heartbeat(hostname)
        self.r = r

    def start(self) -> None:
        self.r.delete(self.heartbeat_key)
        super().start()
        wait_until(lambda: self.r.exists(self.heartbeat_key) or not self.alive(), 120, "the worker's heartbeat")
        if not self.alive():
            pytest.fail(f"the worker exited while starting:\n{self.tail()}")


@contextlib.contextmanager
def running_worker(env: dict[str, str], log_dir: Path, name: str, settings: Settings, r: redis.Redis,
                   concurrency: int = 1, module: str = "service.cli") -> Iterator[Worker]:
    """A started worker `name@<host>` of `concurrency` pool children, stopped warm on exit; `module` is the
    command run as `python -m <module> worker ...` (a test's own wrapper of `lrrt worker`, say)."""
    w = Worker(env, log_dir, f"{name}@{socket.gethostname()}", Keys(settings.key_prefix), r)
    w.argv[w.argv.index("--concurrency") + 1] = str(concurrency)
    w.argv[w.argv.index("service.cli")] = module
    w.start()
    try:
        yield w
    finally:
        w.stop(signal.SIGQUIT)


@pytest.fixture(scope="session")
def worker_proc(server_env: dict[str, str], settings: Settings, redis_client: redis.Redis,
                tmp_path_factory: pytest.TempPathFactory) -> Iterator[Worker]:
    with running_worker(server_env, tmp_path_factory.mktemp("logs"), f"e2e-{settings.key_prefix}", settings,
                        redis_client) as w:
        yield w


@pytest.fixture(scope="module")
def jax_worker(server_env: dict[str, str], settings: Settings, redis_client: redis.Redis, worker_proc: Worker,
               tmp_path_factory: pytest.TempPathFactory) -> Iterator[Worker]:
    """A JAX worker beside the session's TensorFlow one, for the requesting module only (other modules expect
    `auto` jobs on TensorFlow, the only backend live there). It is up once the API can route to it: the
    API reads live backends through a cache of `LIVE_BACKENDS_MAX_AGE_S`, so it waits that long after the
    first heartbeat, or an `auto` job submitted at once could still go to TensorFlow."""
    from service.routing import LIVE_BACKENDS_MAX_AGE_S

    w = Worker(server_env, tmp_path_factory.mktemp("logs"), f"e2e-jax-{settings.key_prefix}@{socket.gethostname()}",
               Keys(settings.key_prefix), redis_client, backend="jax")
    w.start()
    time.sleep(LIVE_BACKENDS_MAX_AGE_S + 1)
    yield w
    w.stop(signal.SIGQUIT)
    redis_client.delete(w.heartbeat_key)  # a cold shutdown may leave it to expire: later modules must not see JAX


class Api(Proc):
    def __init__(self, env: dict[str, str], log_dir: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        argv = [sys.executable, "-m", "service.cli", "api", "--host", "127.0.0.1", "--port", str(self.port)]
        super().__init__("api", argv, env, log_dir)

    def start(self) -> None:
        super().start()
        wait_until(lambda: httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200 or not self.alive(),
                   60, "the API's /healthz")
        if not self.alive():
            pytest.fail(f"the API exited while starting:\n{self.tail()}")

    def restart(self) -> None:
        self.stop()
        self.start()


@pytest.fixture(scope="session")
def api_server(server_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    a = Api(server_env, tmp_path_factory.mktemp("logs"))
    a.start()
    yield a
    a.stop()


@pytest.fixture(scope="session")
def client(api_server: Api, worker_proc: Worker) -> Iterator[Client]:
    """Tenant alice's client against the running API, with a worker behind it."""
    with Client(api_server.url, api_key="key-alice", timeout=30) as c:
        yield c


@pytest.fixture(scope="session")
def digits_mlp() -> dict[str, Any]:
    return json.loads((EXAMPLES / "digits_mlp.json").read_text())


def long_sweep(steps: int = 20_000) -> dict[str, Any]:
    """A sweep that runs long enough to be interrupted: no early stop, LRs that never diverge."""
    return {"start_lr": 1e-5, "end_lr": 1e-3, "num_steps": steps, "batch_size": 16, "divergence_threshold": None}


def wait_for_steps(client: Client, job_id: str, steps: int = 1, timeout: float = 120) -> dict[str, Any]:
    """Wait until the job is running and has recorded at least `steps` steps; returns the job."""
    def check() -> dict[str, Any] | None:
        job = client.status(job_id)
        assert job["status"] in ("queued", "running"), job
        progress = job.get("progress") or {}
        return job if job["status"] == "running" and progress.get("steps_done", 0) >= steps else None

    return wait_until(check, timeout, f"job {job_id} to record {steps} steps", interval=0.2)


@pytest.fixture(scope="module")
def second(server_env: dict[str, str], settings: Settings, redis_client: redis.Redis, worker_proc: Worker,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[Worker]:
    """A second one-child worker on the e2e queue, next to the session's, for the modules that spread a
    job's runs over two workers."""
    with running_worker(server_env, tmp_path_factory.mktemp("logs"), f"e2e2-{settings.key_prefix}", settings,
                        redis_client) as w:
        yield w
