"""Shared fixtures: a real Redis on 127.0.0.1:6379 under a key prefix unique to this test session.

Tests never use fakeredis. Each session gets its own prefix and Celery queue, so a developer's
running service (prefix `lrrt`) and parallel sessions are untouched; only our own keys are deleted.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from lrrt.settings import Settings
from lrrt.store.jobs import JobStore
from lrrt.store.keys import Keys

# The `s3` and `gcs` fixtures: moto's S3 server and fake-gcs-server on 127.0.0.1 (tests/fixtures/).
pytest_plugins = ["tests.fixtures.s3", "tests.fixtures.gcs"]

REDIS_URL = os.environ.get("LRRT_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


@pytest.fixture(scope="session")
def redis_client() -> redis.Redis:
    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.ping()
    except redis.ConnectionError as exc:  # a clear failure, never a skip: the suite needs a real Redis
        pytest.fail(f"tests need a real Redis at {REDIS_URL} (run .ci/run, or start redis-server): {exc}")
    return client


@pytest.fixture(scope="session")
def session_prefix() -> str:
    return f"lrrt-test-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="session")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("data-root")
    (root / "datasets").mkdir()
    return root


@pytest.fixture(scope="session")
def settings(session_prefix: str, data_root: Path) -> Settings:
    """Server settings for tests: auth on with two tenants, small caps, this session's prefix and queue."""
    return Settings(
        redis_url=REDIS_URL,
        key_prefix=session_prefix,
        queue=session_prefix,
        api_keys="alice:key-alice,bob:key-bob",
        data_root=data_root,
        max_unfinished_jobs=50,
    )


@pytest.fixture(scope="session", autouse=True)
def _cleanup_keys(redis_client: redis.Redis, session_prefix: str) -> Iterator[None]:
    yield
    for key in redis_client.scan_iter(match=f"{session_prefix}*", count=1000):
        redis_client.delete(key)
    # Celery's own keys for our queue (the list and its bindings) are named after the queue.
    for key in redis_client.scan_iter(match=f"*{session_prefix}*", count=1000):
        redis_client.delete(key)


@pytest.fixture()
def store(redis_client: redis.Redis, settings: Settings) -> JobStore:
    return JobStore(
        redis_client,
        Keys(settings.key_prefix),
        result_ttl_s=settings.result_ttl_s,
        max_redeliveries=settings.max_redeliveries,
    )


@pytest.fixture()
def engine_root(tmp_path: Path) -> Path:
    """A fresh data root for one engine run (uploads under `datasets/`)."""
    (tmp_path / "datasets").mkdir()
    return tmp_path


@pytest.fixture()
def caps(engine_root: Path) -> Settings:
    """The settings (caps) an engine run reads, rooted at `engine_root`."""
    return Settings(data_root=engine_root)
