"""Operations routes, the loopback rule, the OpenAPI document, and the API's freedom from TensorFlow/Keras."""

from __future__ import annotations

import subprocess
import sys

import pytest
import redis
from fastapi.testclient import TestClient

from lrrt.routing import BACKENDS, queue_for
from lrrt.settings import Settings
from lrrt.store.jobs import JobStore
from lrrt.store.keys import Keys
from service.app import create_app
from service.auth import UnsafeBind, ensure_safe_bind
from tests.service.api.conftest import ALICE, submit


def test_healthz_and_dashboard(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    missing = client.get("/dashboard/no-such-asset.js")
    assert missing.status_code == 404 and missing.headers["content-type"] == "application/problem+json"


def test_readyz_needs_a_live_worker(client: TestClient, redis_client: redis.Redis, settings: Settings) -> None:
    missing = client.get("/readyz")
    assert missing.status_code == 503
    assert missing.headers["content-type"] == "application/problem+json"
    assert "No live worker" in missing.json()["detail"] and "lrrt worker" in missing.json()["detail"]
    heartbeat = Keys(settings.key_prefix).worker_heartbeat("gpu-host-1")
    redis_client.set(heartbeat, "{}", ex=30)
    try:
        ready = client.get("/readyz")
        assert ready.status_code == 200
        assert ready.json()["workers"] == ["gpu-host-1"]
    finally:
        redis_client.delete(heartbeat)


def test_readyz_names_redis_when_unreachable(settings: Settings) -> None:
    down = Settings(**{**settings.model_dump(), "redis_url": "redis://127.0.0.1:1/0"})
    with TestClient(create_app(down, reaper_interval_s=None)) as client:
        response = client.get("/readyz")
        assert response.status_code == 503 and "Redis is not reachable" in response.json()["detail"]
        store_down = client.get("/v1/jobs", headers=ALICE)
        assert store_down.status_code == 503 and store_down.headers["retry-after"] == "5"


def test_metrics_exports_requests_jobs_queue_and_worker_stats(
    client: TestClient, redis_client: redis.Redis, settings: Settings, store: JobStore
) -> None:
    job = submit(client)
    submit(client, backend="jax")  # no live worker: queued for JAX all the same
    client.get(f"/v1/jobs/{job['id']}", headers=ALICE)
    keys = Keys(settings.key_prefix)
    store.stats.add_steps(400, 2.0)
    store.stats.add_finished("succeeded", 12.0)
    text = client.get("/metrics").text
    assert 'lrrt_http_requests_total{method="GET",route="/v1/jobs/{job_id}",status="200"}' in text
    assert 'lrrt_http_request_duration_seconds_bucket{le="0.005",method="POST",route="/v1/jobs"}' in text
    assert 'lrrt_jobs{status="queued"}' in text
    for backend in BACKENDS:  # one series per backend's queue, each counting only its own messages
        queue = queue_for(settings.queue, backend)
        depth = next(line for line in text.splitlines()
                     if line.startswith(f'lrrt_queue_depth{{backend="{backend}",queue="{queue}"}} '))
        assert float(depth.split()[1]) == redis_client.llen(queue) > 0
    assert "lrrt_sweep_steps_total 400.0" in text and "lrrt_sweep_steps_per_second 200.0" in text
    assert 'lrrt_jobs_finished_total{status="succeeded"} 1.0' in text
    assert 'lrrt_job_duration_seconds_bucket{le="15.0"} 1.0' in text
    assert 'lrrt_job_duration_seconds_bucket{le="5.0"} 0.0' in text
    assert 'lrrt_job_duration_seconds_bucket{le="+Inf"} 1.0' in text
    assert "lrrt_redis_up 1.0" in text
    alive = next(line for line in text.splitlines() if line.startswith("lrrt_workers_alive "))
    assert float(alive.split()[1]) == len(list(redis_client.scan_iter(match=keys.worker_heartbeat("") + "*")))


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::1", "[::1]", "127.0.0.2"])
def test_loopback_without_keys_may_start(host: str) -> None:
    ensure_safe_bind(host, Settings(api_keys=""))


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.5", "api.example.com"])
def test_exposed_bind_without_keys_refuses_with_reason(host: str) -> None:
    with pytest.raises(UnsafeBind, match="LRRT_API_KEYS") as refused:
        ensure_safe_bind(host, Settings(api_keys=""))
    assert host in str(refused.value) and "127.0.0.1" in str(refused.value)
    ensure_safe_bind(host, Settings(api_keys="team:secret"))


def test_openapi_documents_contract(client: TestClient) -> None:
    doc = client.get("/openapi.json").json()
    expected = {
        ("post", "/v1/jobs"): "202", ("get", "/v1/jobs"): "200", ("get", "/v1/jobs/{job_id}"): "200",
        ("get", "/v1/jobs/{job_id}/result"): "200", ("get", "/v1/jobs/{job_id}/plot.png"): "200",
        ("get", "/v1/jobs/{job_id}/plot.svg"): "200", ("get", "/v1/jobs/{job_id}/events"): "200",
        ("post", "/v1/jobs/{job_id}/cancel"): "202", ("delete", "/v1/jobs/{job_id}"): "204",
        ("post", "/v1/datasets"): "201", ("get", "/v1/datasets"): "200", ("get", "/v1/datasets/{dataset_id}"): "200",
        ("delete", "/v1/datasets/{dataset_id}"): "204", ("get", "/healthz"): "200", ("get", "/readyz"): "200",
        ("get", "/metrics"): "200",
    }
    for (method, path), status in expected.items():
        operation = doc["paths"][path][method]
        assert status in operation["responses"], (method, path)
        assert operation.get("summary"), (method, path)
        for code, response in operation["responses"].items():
            if code[0] in "45":
                assert set(response["content"]) == {"application/problem+json"}, (method, path, code)
    submit_op = doc["paths"]["/v1/jobs"]["post"]
    assert submit_op["requestBody"]["content"]["application/json"]["schema"]["$ref"] == "#/components/schemas/JobSpec"
    assert {"JobSpec", "Sweep", "OptimizerArm", "DatasetRef", "Problem", "Job"} <= doc["components"]["schemas"].keys()
    assert "HTTPValidationError" not in doc["components"]["schemas"]
    result_op = doc["paths"]["/v1/jobs/{job_id}/result"]["get"]["responses"]["200"]["content"]["application/json"]
    assert result_op["schema"]["$ref"] == "#/components/schemas/Result"  # the real result, documented
    schemas = doc["components"]["schemas"]
    assert {"fingerprint", "confirm", "suggestions", "repeats"} <= schemas["ArmResult"]["properties"].keys()
    assert "runs" in schemas["EngineFigures"]["properties"] and "winner" in schemas["ConfirmCandidate"]["properties"]
    assert client.get("/docs").status_code == 200


def test_service_never_imports_tensorflow_or_keras() -> None:
    code = (
        "import sys\n"
        "from service.app import create_app\n"
        "from lrrt.settings import Settings\n"
        "create_app(Settings(api_keys='a:b')).openapi()\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in {'tensorflow', 'keras', 'jax', 'torch'})\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
