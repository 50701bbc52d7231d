"""The worker checks the tenant's grant again before it reads (issue 22): a job submitted while its tenant
could read a prefix, run by a worker whose LRRT_DATA_PREFIXES no longer grants it, fails with the API's
422 `dataset-invalid` and never asks the store for the object. The real coordinator, job store and
worker engine (`worker.tasks._KerasEngine`), against moto's S3 server (tests/fixtures/s3.py)."""

from __future__ import annotations

import uuid
from pathlib import Path

import numpy as np

from lrrt.coordinator import Claimed, Coordinator
from lrrt.routing import Choice
from lrrt.settings import Settings
from lrrt.store.jobs import JobStore
from lrrt.store.keys import Keys
from lrrt.store.outcomes import ClaimOutcome
from tests.fixtures.s3 import PREFIXES, PUBLIC, S3Server, npz_bytes
from tests.keras_models import make_spec
from worker.tasks import _KerasEngine


def run_once(jobs: JobStore, job_id: str, settings: Settings) -> str:
    """Claim and run the job's one run as a worker with `settings` would."""
    token = jobs.new_token()
    claim = jobs.claim(job_id, token, "w0")
    assert claim.outcome is ClaimOutcome.CLAIMED and claim.run is not None
    return Coordinator(jobs, _KerasEngine(settings), Claimed(job_id, claim.run, claim.attempts, token, "w0"),
                       time_limit_s=600, default_queue="q", send=lambda queue: None).run()


def asked_for(log: Path, key: str) -> list[str]:
    """The requests for `key` in moto's access log other than the test's own upload (PUT)."""
    return [line for line in log.read_text(errors="replace").splitlines() if key in line and '"PUT ' not in line]


def test_a_grant_revoked_after_submit_fails_the_job_unread(s3: S3Server, store: JobStore, engine_root: Path,
                                                          tmp_path: Path) -> None:
    jobs = JobStore(store.r, Keys(f"{store.k.prefix}:grant-{uuid.uuid4().hex[:8]}"), result_ttl_s=60,
                    max_redeliveries=1)
    rng = np.random.default_rng(0)
    key = f"alice/recheck-{uuid.uuid4().hex[:8]}.npz"
    uri = s3.put(key, npz_bytes(x=rng.random((128, 64), dtype=np.float32), y=rng.integers(0, 10, 128)))
    spec = make_spec(dataset={"uri": uri, "validation_split": 0.0}, num_steps=4, batch_size=32)
    routed = Choice("tensorflow", "requested: tensorflow")
    worker = {"data_root": engine_root, "s3_endpoint_url": s3.url}
    log = Path(s3.log.name)

    revoked = jobs.create(tenant="alice", spec=spec, max_unfinished=10, queue="q", routing=routed).job.id
    without_alice = ";".join(p for p in PREFIXES.split(";") if not p.startswith("alice="))
    assert run_once(jobs, revoked, Settings(**worker, data_prefixes=without_alice)) == "failed"
    record = jobs.get(revoked)
    assert record is not None and record.status == "failed" and record.error is not None
    assert record.error["type"].endswith("dataset-invalid") and record.error["status"] == 422
    assert "not under a prefix your tenant may read" in record.error["detail"], record.error
    assert record.error["granted"] == [f"s3://{PUBLIC}/"]  # what the tenant may read now, as the API says it
    assert asked_for(log, key) == []  # the store was never asked for it

    granted = jobs.create(tenant="alice", spec=spec, max_unfinished=10, queue="q", routing=routed).job.id
    assert run_once(jobs, granted, Settings(**worker, data_prefixes=PREFIXES)) == "succeeded"
    assert asked_for(log, key)  # the log does show what the store was asked for
