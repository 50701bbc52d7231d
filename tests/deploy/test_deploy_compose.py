"""The compose files: what docs/operations.md promises about the deployment, checked on the YAML.

Docker's engine is not available to the tests, so the files are parsed with PyYAML (anchors and
merge keys resolved) and, where a `docker compose` or `docker-compose` binary exists, also validated
by it (`config -q`, which interpolates .env and checks the schema). Without one the tests still
check the YAML and say so in a warning.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import warnings
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
MAIN = ROOT / "docker-compose.yml"
WORKERS = ROOT / "docker-compose.workers.yml"
REDIS_TLS = ROOT / "deploy" / "docker-compose.redis-tls.yml"
CPU = ROOT / "docker-compose.cpu.yml"
LOCAL = ROOT / "deploy" / "docker-compose.local.yml"
ENV_EXAMPLE = ROOT / ".env.example"

#: Values the compose files need from .env that .env.example deliberately leaves empty.
DUMMY_ENV = {
    "LRRT_API_KEYS": "ci:not-a-real-key",
    "REDIS_PASSWORD": "0123456789abcdef",
    "LRRT_REDIS_URL": "rediss://:0123456789abcdef@redis.example.internal:6380/0?ssl_cert_reqs=required",
    "DATA_DIR": "/mnt/lrrt-data",
}


def load(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text())


@pytest.fixture(scope="module")
def main() -> dict[str, Any]:
    return load(MAIN)


def services(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return doc["services"]


def workers(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every worker service: those built from Dockerfile.gpu (GPU and CPU variants)."""
    return {
        name: svc
        for name, svc in services(doc).items()
        if isinstance(svc.get("build"), dict) and svc["build"].get("dockerfile") == "Dockerfile.gpu"
    }


def gpu_workers(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: svc for name, svc in workers(doc).items() if "deploy" in svc}


def env_of(svc: dict[str, Any]) -> dict[str, str]:
    env = svc.get("environment") or {}
    assert isinstance(env, dict), "environment must be a mapping (so anchors merge)"
    return {k: str(v) for k, v in env.items()}


def seconds(duration: str) -> int:
    total = 0
    for amount, unit in re.findall(r"(\d+)(h|m|s)", duration):
        total += int(amount) * {"h": 3600, "m": 60, "s": 1}[unit]
    assert total, f"unparsable duration {duration!r}"
    return total


def waits_for_healthy_redis(svc: dict[str, Any]) -> bool:
    return (svc.get("depends_on") or {}).get("redis", {}).get("condition") == "service_healthy"


# ------------------------------------------------------------------------------------------ redis
def test_redis_is_durable_and_never_evicts(main: dict[str, Any]) -> None:
    redis = services(main)["redis"]
    conf_mounts = [v for v in redis["volumes"] if v.endswith(":/usr/local/etc/redis/redis.conf:ro")]
    assert conf_mounts, "redis.conf must be mounted read-only"
    conf_path = ROOT / conf_mounts[0].split(":")[0]
    directives = {
        line.split(None, 1)[0]: line.split(None, 1)[1].strip()
        for line in conf_path.read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    }
    assert directives["appendonly"] == "yes"
    assert directives["appendfsync"] == "everysec"
    assert directives["maxmemory-policy"] == "noeviction"
    assert directives["dir"] == "/data"
    assert "/usr/local/etc/redis/redis.conf" in redis["command"], "the config file must be loaded"
    # No command-line flag may undo the file.
    assert "--appendonly" not in redis["command"] and "--maxmemory-policy" not in redis["command"]

    data = [v for v in redis["volumes"] if v.endswith(":/data")]
    assert data and data[0].split(":")[0] in main["volumes"], "Redis data must live on a named volume"


def test_redis_password_comes_from_env_and_is_used_by_every_client(main: dict[str, Any]) -> None:
    redis = services(main)["redis"]
    cmd = redis["command"]
    assert cmd[cmd.index("--requirepass") + 1] == "${REDIS_PASSWORD:-}"
    assert "REDISCLI_AUTH" in " ".join(redis["healthcheck"]["test"]), "healthcheck must authenticate"
    clients = {name: env_of(svc)["LRRT_REDIS_URL"] for name, svc in services(main).items() if "LRRT_REDIS_URL" in env_of(svc)}
    assert {"api", "worker"} <= clients.keys()
    for name, url in clients.items():
        assert url == "redis://:${REDIS_PASSWORD:-}@redis:6379/0", name
    assert env_of(services(main)["flower"])["CELERY_BROKER_URL"] == "redis://:${REDIS_PASSWORD:-}@redis:6379/0"
    assert "ports" not in redis, "plain Redis must not be published; use the TLS override"


def test_redis_tls_override_requires_a_password_and_publishes_only_tls() -> None:
    redis = services(load(REDIS_TLS))["redis"]
    cmd = redis["command"]
    assert cmd[cmd.index("--requirepass") + 1].startswith("${REDIS_PASSWORD:?")
    assert cmd[cmd.index("--tls-port") + 1] == "6380"
    for flag in ("--tls-cert-file", "--tls-key-file", "--tls-ca-cert-file"):
        assert cmd[cmd.index(flag) + 1].startswith("/certs/")
    assert [p.rsplit(":", 1)[1] for p in redis["ports"]] == ["6380"]
    base = services(load(MAIN))["redis"]["command"]
    assert cmd[: len(base) - 2] == base[:-2], "the override must keep the base config and maxmemory"


# ------------------------------------------------------------------------------------------- api
def test_api_service(main: dict[str, Any]) -> None:
    api = services(main)["api"]
    assert api["build"]["dockerfile"] == "Dockerfile"
    cmd = api["command"]
    assert cmd[:2] == ["lrrt", "api"] and cmd[cmd.index("--host") + 1] == "0.0.0.0"
    env = env_of(api)
    assert env["LRRT_API_KEYS"].startswith("${LRRT_API_KEYS:?"), "off loopback the keys are mandatory"
    assert env["LRRT_DATA_ROOT"] == "/data"
    assert "/healthz" in (ROOT / "deploy" / "healthcheck.py").read_text()
    assert api["healthcheck"]["test"][-1] == "api"
    assert waits_for_healthy_redis(api)
    assert api["restart"] in {"unless-stopped", "always"}
    assert all(p.startswith("${API_BIND:-127.0.0.1}:") for p in api["ports"]), "published on loopback by default"


def test_uploads_volume_is_shared_by_api_and_every_worker(main: dict[str, Any]) -> None:
    def data_volume(svc: dict[str, Any]) -> str:
        (mount,) = [v for v in svc["volumes"] if v.split(":")[1] == env_of(svc)["LRRT_DATA_ROOT"]]
        return mount.split(":")[0]

    api_volume = data_volume(services(main)["api"])
    assert api_volume in main["volumes"]
    assert "worker-cpu" in workers(main)
    for name, svc in workers(main).items():
        assert data_volume(svc) == api_volume, name


# ---------------------------------------------------------------------------------------- workers
@pytest.mark.parametrize("path", [MAIN, WORKERS], ids=lambda p: p.name)
def test_gpu_workers(path: Path) -> None:
    workers = gpu_workers(load(path))
    assert "worker" in workers and "profiles" not in workers["worker"], "GPU 0's worker must always run"
    gpu_ids: list[str] = []
    for name, svc in workers.items():
        (device,) = svc["deploy"]["resources"]["reservations"]["devices"]
        assert device["driver"] == "nvidia" and device["capabilities"] == ["gpu"], name
        assert ("count" in device) != ("device_ids" in device), name
        gpu_ids += device.get("device_ids", [])
        env = env_of(svc)
        assert env["CUDA_VISIBLE_DEVICES"] == "0", f"{name}: the container's one GPU is device 0"
        assert env["TF_FORCE_GPU_ALLOW_GROWTH"] == "true", name
        cmd = svc["command"]
        assert cmd[:2] == ["lrrt", "worker"] and "--concurrency" in cmd, name
        node = cmd[cmd.index("--hostname") + 1]
        assert node.endswith("@%h"), f"{name}: the health check finds the heartbeat by @<container hostname>"
        assert seconds(svc["stop_grace_period"]) >= 60, f"{name}: too short for a warm shutdown"
        assert svc["restart"] in {"unless-stopped", "always"}, name
        assert svc["healthcheck"]["test"][-1] == "worker", name
        if path == MAIN:
            assert waits_for_healthy_redis(svc), name
        if name != "worker":
            assert svc["profiles"] == [f"gpu{device['device_ids'][0]}"], name
    assert len(gpu_ids) == len(set(gpu_ids)), f"two workers reserve the same GPU: {gpu_ids}"
    nodes = [svc["command"][svc["command"].index("--hostname") + 1] for svc in workers.values()]
    assert len(nodes) == len(set(nodes)), "Celery node names must differ per GPU"


def test_cpu_worker_is_the_gpu_worker_without_the_gpu(main: dict[str, Any]) -> None:
    """Hosts without GPUs: worker-cpu (profile `cpu`) has the GPU worker's settings, the CPU image and no
    reservation; docker-compose.cpu.yml only parks the GPU worker behind a profile."""
    gpu, cpu = services(main)["worker"], services(main)["worker-cpu"]
    assert cpu["profiles"] == ["cpu"] and "deploy" not in cpu
    assert cpu["build"]["args"] == {"BASE_IMAGE": "python:3.11.14-slim-bookworm", "ACCELERATOR": "cpu"}
    assert cpu["image"] != gpu["image"], "the CPU image must not take the GPU image's tag"
    for key in ("environment", "volumes", "healthcheck", "depends_on", "restart", "stop_grace_period", "env_file"):
        assert cpu[key] == gpu[key], key
    cmd = cpu["command"]
    assert cmd[:2] == ["lrrt", "worker"] and cmd[cmd.index("--hostname") + 1].endswith("@%h")
    assert load(CPU) == {"services": {"worker": {"profiles": ["gpu"]}}}
    local = services(load(LOCAL))
    assert set(local) == {"redis", "api", "worker-cpu"} and "ports" not in local["redis"], "no Redis port on the host"


def test_worker_only_file_runs_nothing_but_workers() -> None:
    doc = load(WORKERS)
    assert set(services(doc)) == set(gpu_workers(doc)), "no redis, api or monitoring on extra GPU hosts"
    for name, svc in services(doc).items():
        env = env_of(svc)
        assert env["LRRT_REDIS_URL"].startswith("${LRRT_REDIS_URL:?"), name
        assert any(v.startswith("${DATA_DIR:?") and v.endswith(":/data") for v in svc["volumes"]), name
        assert "depends_on" not in svc, name


# ------------------------------------------------------------------------------------- monitoring
@pytest.mark.parametrize("name", ["flower", "prometheus"])
def test_monitoring_is_opt_in_and_local_only(main: dict[str, Any], name: str) -> None:
    svc = services(main)[name]
    assert svc["profiles"] == ["monitoring"]
    assert svc["ports"] and all(p.startswith("127.0.0.1:") for p in svc["ports"]), svc["ports"]


def test_flower_requires_basic_auth(main: dict[str, Any]) -> None:
    flower = services(main)["flower"]
    assert env_of(flower)["FLOWER_BASIC_AUTH"] == "${FLOWER_BASIC_AUTH:-}"
    script = flower["command"][-1]
    assert '[ -n "$$FLOWER_BASIC_AUTH" ] ||' in script and "exit 1" in script, "must refuse to start without auth"


def test_prometheus_scrapes_the_api_and_loads_the_alerts(main: dict[str, Any]) -> None:
    prom = services(main)["prometheus"]
    mounts = {v.split(":")[1]: ROOT / v.split(":")[0] for v in prom["volumes"] if v.startswith("./")}
    config = yaml.safe_load(mounts["/etc/prometheus/prometheus.yml"].read_text())
    targets = {t for job in config["scrape_configs"] for sc in job["static_configs"] for t in sc["targets"]}
    assert "api:8000" in targets
    assert config["rule_files"] == ["/etc/prometheus/alerts.yml"]
    rules = yaml.safe_load(mounts["/etc/prometheus/alerts.yml"].read_text())
    alerts = [rule for group in rules["groups"] for rule in group["rules"]]
    assert len(alerts) >= 5 and all({"alert", "expr", "annotations"} <= rule.keys() for rule in alerts)


def test_alerts_use_metrics_the_api_exports() -> None:
    """Every lrrt_* series an alert or the manual names is one service/metrics.py defines."""
    source = (ROOT / "service" / "metrics.py").read_text()
    defined = set(re.findall(r'"(lrrt_[a-z_]+)"', source))
    assert defined, "service/metrics.py defines no lrrt_* metric"
    exposed = set(defined)
    for name in defined:  # Prometheus exposition suffixes
        exposed |= {f"{name}_total", f"{name}_bucket", f"{name}_sum", f"{name}_count"}
    text = (ROOT / "deploy" / "prometheus" / "alerts.yml").read_text() + (ROOT / "docs" / "operations.md").read_text()
    used = set(re.findall(r"(?<![\w-])(lrrt_[a-z_]+)(?![\w-])", text))  # not volume names like lrrt_redis-data
    assert used - exposed == set(), f"unknown metrics named: {sorted(used - exposed)}"


# ---------------------------------------------------------------------------------------- general
@pytest.mark.parametrize("path", [MAIN, WORKERS], ids=lambda p: p.name)
def test_every_image_is_pinned(path: Path) -> None:
    for name, svc in services(load(path)).items():
        image = svc.get("image")
        if image is None:
            assert "build" in svc, name
            continue
        # Our own images are tagged ${IMAGE_TAG:-<version>}: check the default an operator gets.
        resolved = re.sub(r"\$\{IMAGE_TAG:-([^}]+)\}", r"\1", image)
        assert "$" not in resolved, f"{name}: {image} depends on an unpinned variable"
        repo, _, tag = resolved.rpartition(":")
        assert repo and tag and "/" not in tag, f"{name}: {image} has no tag"
        assert tag != "latest" and re.fullmatch(r"v?\d+(\.\d+)+(-[a-z0-9.]+)?", tag), f"{name}: {image}"


def test_long_running_services_restart(main: dict[str, Any]) -> None:
    for name, svc in services(main).items():
        assert svc.get("restart") in {"unless-stopped", "always"}, name
        if name in {"redis", "api"} or name in gpu_workers(main):
            assert "test" in svc.get("healthcheck", {}), name


def compose_variables(*paths: Path) -> set[str]:
    text = "\n".join(p.read_text() for p in paths)
    return set(re.findall(r"(?<!\$)\$\{([A-Z_][A-Z0-9_]*)", text))


def test_every_compose_variable_is_documented_in_env_example() -> None:
    documented = set(re.findall(r"^#?([A-Z_][A-Z0-9_]*)=", ENV_EXAMPLE.read_text(), flags=re.M))
    missing = compose_variables(MAIN, WORKERS, REDIS_TLS, CPU, LOCAL) - documented
    assert not missing, f".env.example does not mention {sorted(missing)}"


def test_no_secret_is_committed() -> None:
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    assert ".env" not in tracked, ".env holds real keys and must never be committed"
    assert not [f for f in tracked if f.startswith("deploy/redis/tls/") and not f.endswith(".gitignore")]
    assert re.search(r"^\.env$", (ROOT / ".gitignore").read_text(), flags=re.M)
    dockerignore = (ROOT / ".dockerignore").read_text().split()
    assert "*" in dockerignore, ".dockerignore is an allow-list (tests/deploy/test_deploy_images.py)"
    assert not [p for p in dockerignore if p.startswith("!") and ".env" in p], ".env must never enter a build context"
    secrets = {"LRRT_API_KEYS", "REDIS_PASSWORD", "FLOWER_BASIC_AUTH"}
    values = dict(re.findall(r"^([A-Z_][A-Z0-9_]*)=(.*)$", ENV_EXAMPLE.read_text(), flags=re.M))
    assert secrets <= values.keys(), "the secrets must be listed, uncommented, so .env gets them"
    assert all(values[s] == "" for s in secrets), "example secrets must be empty"
    for path in (MAIN, WORKERS, REDIS_TLS):
        for name, svc in services(load(path)).items():
            for key, value in env_of(svc).items():
                if re.search(r"PASSWORD|KEYS|AUTH|SECRET|TOKEN", key):
                    assert value.startswith("${"), f"{path.name}:{name}: literal secret in {key}"
            for arg in svc.get("command") or []:
                assert not re.search(r"redis://:[^$@]+@", str(arg)), f"{path.name}:{name}: literal password"


# ------------------------------------------------------------------------------- compose CLI check
def compose_cli() -> list[str] | None:
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "compose", "version"], capture_output=True).returncode == 0:
        return [docker, "compose"]
    legacy = shutil.which("docker-compose")
    return [legacy] if legacy else None


def test_compose_cli_accepts_the_files(tmp_path: Path) -> None:
    """`config -q` on each deployment as an operator would run it (.env copied from .env.example)."""
    for path in (MAIN, WORKERS, REDIS_TLS):
        assert isinstance(load(path).get("services"), dict), path.name
    cli = compose_cli()
    if cli is None:
        warnings.warn("no `docker compose` or `docker-compose` binary: compose files checked with PyYAML only", stacklevel=1)
        return
    for item in ("docker-compose.yml", "docker-compose.workers.yml", "docker-compose.cpu.yml", "Dockerfile", "Dockerfile.gpu", "deploy"):
        src = ROOT / item
        (shutil.copytree if src.is_dir() else shutil.copy)(src, tmp_path / item)
    shutil.copy(ENV_EXAMPLE, tmp_path / ".env")
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(tmp_path), **DUMMY_ENV}

    def config(*files: str, environ: dict[str, str] = env) -> subprocess.CompletedProcess[str]:
        args = [*cli, *(a for f in files for a in ("-f", f)), "config", "-q"]
        return subprocess.run(args, cwd=tmp_path, env=environ, capture_output=True, text=True)

    for files in (["docker-compose.yml"], ["docker-compose.yml", "deploy/docker-compose.redis-tls.yml"],
                  ["docker-compose.workers.yml"], ["docker-compose.yml", "docker-compose.cpu.yml"],
                  ["docker-compose.yml", "docker-compose.cpu.yml", "deploy/docker-compose.local.yml"]):
        done = config(*files)
        assert done.returncode == 0, f"{' '.join(cli)} config rejects {files}:\n{done.stderr}"
    # The required-value guards really stop a misconfigured deployment.
    no_keys = config("docker-compose.yml", environ={k: v for k, v in env.items() if k != "LRRT_API_KEYS"})
    assert no_keys.returncode != 0 and "LRRT_API_KEYS" in no_keys.stderr
    no_url = config("docker-compose.workers.yml", environ={k: v for k, v in env.items() if k != "LRRT_REDIS_URL"})
    assert no_url.returncode != 0 and "LRRT_REDIS_URL" in no_url.stderr
