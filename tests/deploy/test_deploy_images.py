"""The Dockerfiles and their lock files: pinned, slim where it matters, non-root, health-checked.

These read the files; the images themselves are built and run by tests/deploy/test_compose_e2e.py
(LRRT_COMPOSE_E2E=1) and by `docker compose build` on a deployment host (docs/operations.md, "Deploy").
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


def base_image(steps: list[tuple[str, str]]) -> str:
    """The image the (single-stage) Dockerfile builds FROM by default: `FROM ${ARG}` resolved with the
    ARG's default, the public image (deploy/docker-compose.local.yml overrides it where no registry is)."""
    (image,) = [args.split()[0] for op, args in steps if op == "FROM"]
    defaults = dict(args.split("=", 1) for op, args in steps if op == "ARG" and "=" in args)
    return re.sub(r"\$\{(\w+)\}", lambda m: defaults[m[1]], image)


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
    image = base_image(steps)
    repo, _, tag = image.rpartition(":")
    assert repo and re.fullmatch(r"\d+(\.\d+)+(-[a-z0-9.-]+)?", tag), f"{path.name}: FROM {image} is not pinned"
    assert [op for op, _ in steps][:2] == ["ARG", "FROM"] and "BASE_IMAGE=" in steps[0][1], \
        f"{path.name}: the base is the BASE_IMAGE build arg (deploy/docker-compose.local.yml sets it)"
    users = [args for op, args in steps if op == "USER"]
    assert users and users[-1] not in {"root", "0"}, f"{path.name}: must not run as root"
    assert any(op == "HEALTHCHECK" for op, _ in steps), path.name
    assert any(op == "CMD" for op, _ in steps), path.name
    copied = [args for op, args in steps if op == "COPY"]
    assert any("deploy/healthcheck.py" in args for args in copied), path.name
    # The project comes in with one `COPY . ./`: safe only because .dockerignore is an allow-list.
    assert copied.count(". ./") == 1, f"{path.name}: copy the project once, with COPY . ./"


def test_api_image_is_slim() -> None:
    steps = instructions(API_DOCKERFILE)
    assert base_image(steps).startswith("python:3.11") and "slim" in base_image(steps)
    runs = " ".join(args for op, args in steps if op == "RUN")
    assert "requirements-api.txt" in runs and "--no-deps" in runs
    heavy = HEAVY & pins("api").keys()
    assert not heavy, f"the API image would install {heavy}"
    assert "lrrt api" in " ".join(args for op, args in steps if op == "CMD").replace('", "', " ")


def test_gpu_image_matches_the_worker_pins() -> None:
    steps = instructions(GPU_DOCKERFILE)
    base = base_image(steps)
    assert "ACCELERATOR=gpu" in [args for op, args in steps if op == "ARG"], "the file builds the GPU image by default"
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

def test_dockerignore_is_an_allow_list_of_the_packages() -> None:
    """The build context is what the images copy and nothing else; every package pyproject installs is in
    it (a new top-level package is one `!name` line), and no secret or junk is let back in."""
    patterns = [ln for ln in (ROOT / ".dockerignore").read_text().splitlines() if ln and not ln.startswith("#")]
    assert patterns[0] == "*", "start by ignoring everything"
    allowed = [p[1:] for p in patterns if p.startswith("!")]
    includes = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]["include"]
    packages = {pattern.rstrip("*") for pattern in includes}
    assert packages <= set(allowed), f".dockerignore must let in every package pyproject installs: {packages - set(allowed)}"
    assert "pyproject.toml" in allowed and "deploy/healthcheck.py" in allowed
    for name in allowed:
        assert not re.search(r"(^|/)(\.env|\.git|\.venv|tls|lrrt-data|tests|docs)(/|$)", name), name
        assert "*" not in name.replace("requirements-*.txt", ""), f"{name}: allow exact paths"
    for junk in ("**/__pycache__", "**/*.pyc"):
        assert patterns.index(junk) > max(patterns.index("!" + a) for a in allowed), f"{junk} must come after the allows"


def test_local_build_overrides_the_base_the_dockerfiles_declare() -> None:
    """deploy/docker-compose.local.yml (no image registry) sets the build arg each Dockerfile reads, and
    Redis there is Debian's redis-server as the redis user, on the same base."""
    import yaml

    local = yaml.safe_load((ROOT / "deploy" / "docker-compose.local.yml").read_text())["services"]
    for name in ("api", "worker-cpu", "redis"):
        assert local[name]["build"]["args"]["BASE_IMAGE"] == "${LOCAL_BASE_IMAGE:-lrrt-local/bookworm-python:3.11}", name
    redis = instructions(ROOT / "deploy" / "redis" / "Dockerfile")
    assert "redis-server" in " ".join(args for op, args in redis if op == "RUN")
    assert [args for op, args in redis if op == "USER"] == ["redis"]
    assert "lrrt-local/bookworm-python:3.11" in (ROOT / "deploy" / "base-image.sh").read_text()
