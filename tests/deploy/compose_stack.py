"""The docker-compose deployment, really built and run: the engine, the images and the stack the
compose end-to-end test (tests/deploy/test_compose_e2e.py) drives from the host.

- `Engine`: a Docker engine that answers; started here (`dockerd`, as root) when none does, and then
  stopped again with what it leaves on the host removed: the `docker0` bridge, its iptables rules and
  chains, and the IPv4 forwarding switch it turned on.
- `Stack`: a copy of the deployment files in a temporary directory (so a developer's `.env` is never
  read or written) run under a unique compose project name: Redis (Debian's redis-server on the local
  base image, AOF on), the API published on a free loopback port, and CPU workers. Its teardown removes
  the project's containers, networks and volumes; the images are kept under the tag `e2e` (the build
  cache of the next run), and the image a rebuild replaced is removed.

Only loopback and the compose network are ever addressed.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import httpx

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"  # git-ignored
BASE_IMAGE = os.environ.get("LRRT_E2E_BASE_IMAGE", "lrrt-local/bookworm-python:3.11")
IMAGE_TAG = "e2e"
COMPOSE_FILES = ("docker-compose.yml", "docker-compose.cpu.yml", "deploy/docker-compose.local.yml")
#: What the stack's copy holds: the build context (see .dockerignore) and the deployment files.
#: What the stack's copy holds: the build context's allow-list (the top-level names of .dockerignore's `!`
#: lines: pyproject.toml, the packages, deploy/) and the files compose itself reads.
COPIED = tuple(sorted({line[1:].split("/")[0] for line in (ROOT / ".dockerignore").read_text().splitlines()
                       if line.startswith("!")})) + (
    "Dockerfile", "Dockerfile.gpu", ".dockerignore", "docker-compose.yml", "docker-compose.cpu.yml")
SERVICES = ("redis", "api", "worker-cpu")
API_KEY = "e2e-" + uuid.uuid4().hex
T = TypeVar("T")


def run(args: list[str], *, timeout: float, check: bool = True, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(args, capture_output=True, text=True, timeout=timeout, **kwargs)
    if check and done.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} exited {done.returncode}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return done


def wait_for(what: str, probe: Callable[[], T | None], timeout: float, interval: float = 1.0,
             on_timeout: Callable[[], str] = lambda: "") -> T:
    """Poll `probe` until it returns something other than None; raise with `on_timeout()`'s diagnostics
    after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value is not None:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {timeout:.0f} s\n{on_timeout()}")
        time.sleep(interval)


# ----------------------------------------------------------------------------------------- engine
class Engine:
    """The Docker engine: the one that answers, or a `dockerd` started (and later stopped) here."""

    def __init__(self) -> None:
        self.docker = shutil.which("docker")
        self.compose = shutil.which("docker-compose")
        self.process: subprocess.Popen[bytes] | None = None
        self.log = Path(os.environ.get("TMPDIR", "/tmp")) / f"lrrt-e2e-dockerd-{os.getpid()}.log"
        self.forwarding_before: str | None = None
        self.iptables_before: dict[str, set[str]] = {}
        self.saved_before: list[str] = []

    def answers(self) -> bool:
        return bool(self.docker) and run([self.docker, "info", "--format", "{{.ServerVersion}}"],
                                         timeout=30, check=False).returncode == 0

    def start(self) -> None:
        missing = [name for name, path in (("docker", self.docker), ("docker-compose", self.compose),
                                           ("dockerd", shutil.which("dockerd"))) if not path]
        if self.answers():
            if missing:
                raise RuntimeError(f"missing {missing}: apt-get install docker.io docker-compose")
            return
        if missing:
            raise RuntimeError(f"no Docker engine answers and {missing} missing: apt-get install docker.io docker-compose")
        if os.geteuid() != 0:
            raise RuntimeError("no Docker engine answers, and starting dockerd needs root")
        self.forwarding_before = Path("/proc/sys/net/ipv4/ip_forward").read_text().strip()
        self.saved_before = self._saved()
        self.iptables_before = {table: set(self._rules(table)) if f"*{table}" in self.saved_before else set()
                                for table in ("filter", "nat")}
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(["dockerd"], stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        wait_for("dockerd answers", lambda: True if self.answers() else None, timeout=60,
                 on_timeout=lambda: self.log.read_text()[-3000:])
        print(f"compose-e2e: started dockerd (pid {self.process.pid}, log {self.log})")

    def stop(self) -> None:
        """Stop the dockerd started here and remove what it left: docker0, its iptables rules, forwarding."""
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=30)
        run(["ip", "link", "delete", "docker0"], timeout=30, check=False)
        for table, before in self.iptables_before.items():
            self._remove_docker_rules(table, before)
            if f"*{table}" not in self.saved_before and shutil.which("nft"):  # docker made the table: drop it
                run(["nft", "delete", "table", "ip", table], timeout=30, check=False)
        if self.forwarding_before is not None:
            Path("/proc/sys/net/ipv4/ip_forward").write_text(self.forwarding_before + "\n")
        same = self._saved() == self.saved_before
        print(f"compose-e2e: stopped dockerd; docker0 removed, iptables {'as found' if same else 'DIFFERS from before'}")
        self.process = None

    @staticmethod
    def _saved() -> list[str]:
        """`iptables-save` without comments and counters (it creates no table, unlike `iptables -S`)."""
        done = run(["iptables-save"], timeout=30, check=False)
        return [re.sub(r" \[\d+:\d+\]$", "", ln) for ln in done.stdout.splitlines() if not ln.startswith("#")]

    @staticmethod
    def _rules(table: str) -> list[str]:
        done = run(["iptables", "-t", table, "-S"], timeout=30, check=False)
        return done.stdout.splitlines() if done.returncode == 0 else []

    def _remove_docker_rules(self, table: str, before: set[str]) -> None:
        rules = self._rules(table)
        # Rules docker added to the built-in chains first (they jump to its chains), then its chains.
        for rule in rules:
            if rule.startswith("-A ") and rule not in before and not rule.split()[1].startswith("DOCKER"):
                run(["iptables", "-t", table, *rule.replace("-A ", "-D ", 1).split()], timeout=30, check=False)
        for rule in rules:
            if rule.startswith("-N DOCKER") and rule not in before:
                run(["iptables", "-t", table, "-F", rule.split()[1]], timeout=30, check=False)
        for rule in rules:
            if rule.startswith("-N DOCKER") and rule not in before:
                run(["iptables", "-t", table, "-X", rule.split()[1]], timeout=30, check=False)
        for rule in rules:  # docker sets FORWARD's policy to DROP when it turns forwarding on
            if rule.startswith("-P ") and rule not in before:
                old = next((r for r in before if r.startswith(" ".join(rule.split()[:2]) + " ")), None)
                policy = old.split()[2] if old else "ACCEPT"
                run(["iptables", "-t", table, "-P", rule.split()[1], policy], timeout=30, check=False)


# ------------------------------------------------------------------------------------------ stack
def free_loopback_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Stack:
    """One compose project of the deployment, in a copy of the files under `workdir`."""

    def __init__(self, engine: Engine, workdir: Path) -> None:
        self.engine = engine
        self.workdir = workdir
        self.project = f"lrrte2e{uuid.uuid4().hex[:8]}"
        self.port = free_loopback_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.timings: dict[str, float] = {}
        for item in COPIED:
            src = ROOT / item
            if src.is_dir():
                shutil.copytree(src, workdir / item, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info"))
            else:
                shutil.copy(src, workdir / item)
        # env_file: .env of the api and worker services; secrets only here, never in the repo.
        (workdir / ".env").write_text(f"LRRT_API_KEYS=e2e:{API_KEY}\n")
        self.env = {
            "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
            "HOME": str(workdir),
            "COMPOSE_PROJECT_NAME": self.project,
            "COMPOSE_PROFILES": "cpu",
            "IMAGE_TAG": IMAGE_TAG,
            "LOCAL_BASE_IMAGE": BASE_IMAGE,
            "API_BIND": "127.0.0.1",
            "API_PORT": str(self.port),
            "LRRT_API_KEYS": f"e2e:{API_KEY}",
        }
        self.http = httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {API_KEY}"}, timeout=30)

    # -- commands
    def compose(self, *args: str, timeout: float = 300, check: bool = True) -> subprocess.CompletedProcess[str]:
        files = [a for f in COMPOSE_FILES for a in ("-f", f)]
        assert self.engine.compose
        return run([self.engine.compose, *files, *args], cwd=self.workdir, env=self.env, timeout=timeout, check=check)

    def docker(self, *args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess[str]:
        assert self.engine.docker
        return run([self.engine.docker, *args], timeout=timeout, check=check)

    def logs(self, tail: int = 150) -> str:
        try:
            ps = self.compose("ps", timeout=60, check=False).stdout
            logs = self.compose("logs", "--no-color", f"--tail={tail}", timeout=120, check=False).stdout
        except subprocess.TimeoutExpired:
            return "(docker-compose ps/logs timed out)"
        return f"--- docker-compose ps ---\n{ps}\n--- docker-compose logs --tail={tail} ---\n{logs}"

    def wait(self, what: str, probe: Callable[[], T | None], timeout: float, interval: float = 1.0) -> T:
        return wait_for(what, probe, timeout, interval, on_timeout=self.logs)

    # -- images
    def image_ids(self) -> dict[str, str]:
        names = [f"lrrt-redis-debian:{IMAGE_TAG}", f"lrrt-api:{IMAGE_TAG}", f"lrrt-worker-cpu:{IMAGE_TAG}"]
        ids = {}
        for name in names:
            done = self.docker("image", "inspect", "--format", "{{.Id}}", name, check=False)
            if done.returncode == 0:
                ids[name] = done.stdout.strip()
        return ids

    def build(self) -> None:
        """Build the three images, one after the other (2 cores), timing each; remove what they replace."""
        before = self.image_ids()
        for service in SERVICES:
            started = time.monotonic()
            self.compose("build", "--force-rm", service, timeout=1800)
            self.timings[f"build {service}"] = time.monotonic() - started
        after = self.image_ids()
        for name, old in before.items():
            if after.get(name) != old:
                self.docker("image", "rm", old, check=False)
        sizes = {name: self.docker("image", "inspect", "--format", "{{.Size}}", name).stdout.strip() for name in after}
        print("compose-e2e: images " + ", ".join(f"{n} {int(s) / 1e6:.0f} MB" for n, s in sizes.items()))

    # -- lifecycle
    def up(self, workers: int) -> None:
        started = time.monotonic()
        self.compose("up", "-d", "--no-build", "--scale", f"worker-cpu={workers}", *SERVICES, timeout=600)
        self.wait_ready(workers)
        self.timings["up to /readyz"] = time.monotonic() - started

    def down(self) -> None:
        self.compose("down", "--volumes", "--remove-orphans", "--timeout", "20", timeout=300, check=False)
        self.http.close()

    def ready(self) -> dict[str, Any] | None:
        try:
            resp = self.http.get("/readyz", timeout=5)
        except httpx.TransportError:
            return None
        return resp.json() if resp.status_code == 200 else None

    def wait_ready(self, workers: int, timeout: float = 300) -> dict[str, Any]:
        def probe() -> dict[str, Any] | None:
            body = self.ready()
            return body if body is not None and len(body.get("workers", [])) == workers else None

        return self.wait(f"/readyz with {workers} live workers", probe, timeout)

    def worker_containers(self) -> list[str]:
        """Ids of the running worker-cpu containers."""
        ids = self.compose("ps", "-q", "worker-cpu", timeout=60).stdout.split()
        running = []
        for cid in ids:
            if self.docker("inspect", "--format", "{{.State.Running}}", cid).stdout.strip() == "true":
                running.append(cid)
        return running

    def exec(self, service: str, *cmd: str, index: int = 1) -> str:
        return self.compose("exec", "-T", "--index", str(index), service, *cmd, timeout=120).stdout

    def redis_cli(self, *args: str) -> str:
        return self.exec("redis", "redis-cli", *args)

    # -- the API, as a platform would call it
    def submit(self, body: dict[str, Any]) -> dict[str, Any]:
        resp = self.http.post("/v1/jobs", json=body)
        assert resp.status_code == 202, f"submit answered {resp.status_code}: {resp.text}"
        return resp.json()

    def job(self, job_id: str) -> dict[str, Any]:
        resp = self.http.get(f"/v1/jobs/{job_id}")
        assert resp.status_code == 200, f"GET job answered {resp.status_code}: {resp.text}"
        return resp.json()

    def poll(self, job_id: str, timeout: float, outage: list[str] | None = None) -> dict[str, Any]:
        """Poll until the job is terminal. Transport errors and 5xx answers are tolerated (and listed in
        `outage`, when given) only when `outage` is given: that is a fault the test made."""
        def probe() -> dict[str, Any] | None:
            try:
                resp = self.http.get(f"/v1/jobs/{job_id}", timeout=10)
            except httpx.TransportError as exc:
                if outage is None:
                    raise
                outage.append(f"{time.monotonic():.1f} {type(exc).__name__}")
                return None
            if resp.status_code >= 500 and outage is not None:
                outage.append(f"{time.monotonic():.1f} HTTP {resp.status_code}")
                return None
            assert resp.status_code == 200, f"GET job answered {resp.status_code}: {resp.text}"
            job = resp.json()
            return job if job["status"] in {"succeeded", "failed", "cancelled"} else None

        return self.wait(f"job {job_id} terminal", probe, timeout)


@contextmanager
def running_stack(workdir: Path, workers: int) -> Iterator[Stack]:
    """Engine, base image, images and stack up with `workers` CPU workers; everything undone after."""
    engine = Engine()
    engine.start()
    stack: Stack | None = None
    try:
        started = time.monotonic()
        base = run([str(ROOT / "deploy" / "base-image.sh"), BASE_IMAGE], timeout=900)
        base_s = time.monotonic() - started
        stack = Stack(engine, workdir)
        stack.timings["base image (made or found)"] = base_s
        stack.build()
        stack.up(workers)
        print(f"compose-e2e: project {stack.project}, API {stack.url}, base {base.stdout.strip()}")
        yield stack
    finally:
        if stack is not None:
            print("compose-e2e timings: " + json.dumps({k: round(v, 1) for k, v in stack.timings.items()}))
            ARTIFACTS.mkdir(exist_ok=True)
            (ARTIFACTS / "compose-e2e.log").write_text(stack.logs(tail=5000))
            print(f"compose-e2e: the services' logs are in {ARTIFACTS / 'compose-e2e.log'}")
            stack.down()
        engine.stop()
