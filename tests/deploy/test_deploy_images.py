"""The two Dockerfiles and their lock files: pinned, slim where it matters, non-root, health-checked.

No Docker engine here, so these read the files; the images themselves are built by `docker compose
build` on a host with Docker (docs/operations.md, "Deploy").
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import tomllib
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[2]
API_DOCKERFILE = ROOT / "Dockerfile"
GPU_DOCKERFILE = ROOT / "Dockerfile.gpu"
HEAVY = {"tensorflow", "tensorflow-cpu", "keras", "jax", "jaxlib", "torch", "scikit-learn"}


def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", path.read_text())
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line.strip() else "")
        for line in (raw.strip() for raw in text.splitlines())
        if line and not line.startswith("#")
    ]


def pins(name: str) -> dict[str, str]:
    lines = [ln for ln in (ROOT / "deploy" / f"requirements-{name}.txt").read_text().splitlines() if ln and not ln.startswith("#")]
    parsed = {}
    for line in lines:
        match = re.fullmatch(r"([a-z0-9][a-z0-9.-]*)==([0-9][0-9A-Za-z.+-]*)", line)
        assert match, f"requirements-{name}.txt: {line!r} is not an exact pin"
        parsed[match[1]] = match[2]
    return parsed


def normalize(requirement: str) -> str:
    return re.split(r"[\[<>=!~ ;]", requirement, maxsplit=1)[0].lower().replace("_", "-")


@pytest.mark.parametrize("path", [API_DOCKERFILE, GPU_DOCKERFILE], ids=lambda p: p.name)
def test_dockerfile_basics(path: Path) -> None:
    steps = instructions(path)
    froms = [args for op, args in steps if op == "FROM"]
    assert froms, path.name
    for image in froms:
        repo, _, tag = image.split()[0].rpartition(":")
        assert repo and re.fullmatch(r"\d+(\.\d+)+(-[a-z0-9.-]+)?", tag), f"{path.name}: FROM {image} is not pinned"
    users = [args for op, args in steps if op == "USER"]
    assert users and users[-1] not in {"root", "0"}, f"{path.name}: must not run as root"
    assert any(op == "HEALTHCHECK" for op, _ in steps), path.name
    assert any(op == "CMD" for op, _ in steps), path.name
    copied = " ".join(args for op, args in steps if op == "COPY")
    assert "deploy/healthcheck.py" in copied and "COPY . " not in f"COPY {copied} ", path.name


def test_api_image_is_slim() -> None:
    steps = instructions(API_DOCKERFILE)
    assert steps[0][1].startswith("python:3.11") and "slim" in steps[0][1]
    runs = " ".join(args for op, args in steps if op == "RUN")
    assert "requirements-api.txt" in runs and "--no-deps" in runs
    heavy = HEAVY & pins("api").keys()
    assert not heavy, f"the API image would install {heavy}"
    assert "lrrt api" in " ".join(args for op, args in steps if op == "CMD").replace('", "', " ")


def test_gpu_image_matches_the_worker_pins() -> None:
    steps = instructions(GPU_DOCKERFILE)
    base = steps[0][1]
    match = re.fullmatch(r"tensorflow/tensorflow:(\d+\.\d+\.\d+)-gpu", base)
    assert match, f"worker base must be a pinned tensorflow/tensorflow:<version>-gpu, not {base}"
    worker = pins("worker")
    assert worker["tensorflow"] == match[1], "the lock file must keep the base image's TensorFlow"
    keras = tuple(int(p) for p in worker["keras"].split(".")[:3])
    assert keras >= (3, 15, 1), "Keras >= 3.15.1 is the security floor for untrusted model JSON"
    runs = " ".join(args for op, args in steps if op == "RUN")
    assert "requirements-worker.txt" in runs and "3.15.1" in runs, "the build must assert the Keras floor"


def test_lock_files_cover_pyproject() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    base = {normalize(r) for r in project["dependencies"]}
    worker_extra = {normalize(r) for r in project["optional-dependencies"]["worker"]}
    api, worker = pins("api"), pins("worker")
    assert base - api.keys() == set(), "deploy/requirements-api.txt is stale: run deploy/lock.sh"
    assert (base | worker_extra) - worker.keys() == set(), "deploy/requirements-worker.txt is stale: run deploy/lock.sh"
    shared = api.keys() & worker.keys()
    drift = {n: (api[n], worker[n]) for n in shared if api[n] != worker[n]}
    assert not drift, f"the two images would run different versions of {drift}"


def test_lock_files_satisfy_pyproject_bounds() -> None:
    """The images run versions pyproject allows: its upper bounds guard the Celery, kombu and Keras internals
    the code relies on, so the lock must not step past them."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    locked = {**pins("api"), **pins("worker")}
    for text in [*project["dependencies"], *project["optional-dependencies"]["worker"]]:
        requirement = Requirement(text)
        pinned = locked[normalize(text)]
        assert requirement.specifier.contains(pinned), f"the lock pins {requirement.name}=={pinned}, outside {text!r}"

def test_dockerignore_keeps_secrets_and_junk_out() -> None:
    ignored = set((ROOT / ".dockerignore").read_text().split())
    assert {".env", ".git", ".venv", "deploy/redis/tls"} <= ignored
