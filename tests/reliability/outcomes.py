"""What every fault test asserts at the end: each job ended, for a reason, with an intact result.

- Terminal: `succeeded`, `cancelled` or `failed`; never left `queued` or `running`.
- A failed job carries a problem object whose `type`, `title` and `detail` say why.
- Any curves served parse as JSON, every per-step array of an arm has the same length, and the learning
  rates increase step by step (a retried job's curve replaces, never interleaves with, the first try's).
- The store holds no trace of unfinished work: the tenant's unfinished set and the running index are empty.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Iterable
from typing import Any

from lrrt.client.api import Client, LrrtError
from lrrt.status import TERMINAL
from lrrt.store.jobs import JobStore

PER_STEP = ("lrs", "losses", "smoothed_losses", "loss_deltas")


def wait_all(client: Client, job_ids: Iterable[str], timeout: float, interval: float = 1.0) -> dict[str, dict[str, Any]]:
    """Poll every job until all are terminal; returns the final records. Fails naming the stuck ones."""
    pending = set(job_ids)
    final: dict[str, dict[str, Any]] = {}
    deadline = time.monotonic() + timeout
    while pending:
        for job_id in sorted(pending):
            job = client.status(job_id)
            if job["status"] in TERMINAL:
                final[job_id] = job
                pending.discard(job_id)
        if not pending:
            break
        if time.monotonic() > deadline:
            stuck = {j: client.status(j)["status"] for j in pending}
            raise AssertionError(f"{len(stuck)} job(s) not terminal after {timeout:.0f} s: {stuck}")
        time.sleep(interval)
    return final


def check_result(result: dict[str, Any], *, start_lr: float | None = None) -> int:
    """A served result is intact: per-step arrays of equal length, increasing LRs. Returns the steps seen."""
    steps = 0
    assert isinstance(result.get("arms"), list) and result["arms"], result
    for arm in result["arms"]:
        lengths = {key: len(arm[key]) for key in PER_STEP if arm.get(key) is not None}
        assert "lrs" in lengths and "losses" in lengths, arm.keys()
        assert len(set(lengths.values())) == 1, f"arm {arm['label']}: unequal lengths {lengths}"
        if arm.get("val_losses") is not None:
            assert len(arm["val_losses"]) == lengths["lrs"], arm["label"]
        lrs = arm["lrs"]
        assert all(isinstance(v, (int, float)) and math.isfinite(v) for v in lrs), lrs
        assert all(b > a for a, b in zip(lrs, lrs[1:])), f"arm {arm['label']}: LRs not increasing"
        if start_lr is not None and lrs:
            assert math.isclose(lrs[0], start_lr, rel_tol=1e-4), (lrs[0], start_lr)
        steps += len(lrs)
    return steps


def check_ending(client: Client, job: dict[str, Any], start_lr: float | None = None) -> str:
    """One terminal job: a reason when failed, an intact result when it has curves. Returns its status,
    or 'failed:<problem type>'."""
    status = job["status"]
    assert status in TERMINAL, job
    if status == "failed":
        error = job["error"]
        assert isinstance(error, dict), job
        assert error.get("type", "").startswith("urn:lrrt:problem:"), error
        assert error.get("title") and len(error.get("detail", "")) > 20, error
    try:
        result = client.result(job["id"])
    except LrrtError as exc:  # 409: ended before any step ran (or still running, which would be a bug)
        assert exc.status == 409 and status != "succeeded", (job["id"], status, exc.problem)
    else:
        assert result["id"] == job["id"]
        steps = check_result(result, start_lr=start_lr)
        if status == "succeeded":
            assert steps > 0
    return status if status != "failed" else f"failed:{job['error']['type'].rsplit(':', 1)[1]}"


def check_all(client: Client, final: dict[str, dict[str, Any]], start_lr: float | None = None) -> Counter[str]:
    """Check every job's ending; counts them by outcome (for the test's report line)."""
    return Counter(check_ending(client, job, start_lr) for job in final.values())


def assert_nothing_unfinished(store: JobStore, tenants: Iterable[str]) -> None:
    """No job of these tenants is counted unfinished, and no job at all is indexed as running."""
    for tenant in tenants:
        assert store.unfinished_count(tenant) == 0, (tenant, store.r.smembers(store.k.tenant_unfinished(tenant)))
    assert store.r.zcard(store.k.running()) == 0, store.r.zrange(store.k.running(), 0, -1)


def listed_ids(client: Client) -> set[str]:
    """Every job id the tenant's listing shows (all pages): none may go missing."""
    ids: set[str] = set()
    token = None
    while True:
        page = client.jobs(page_size=100, page_token=token)
        ids |= {j["id"] for j in page["items"]}
        token = page.get("next_page_token")
        if not token:
            return ids


def report(row: dict[str, Any]) -> None:
    """One measured row for docs/reliability.md: printed (pytest -s shows it) and, when
    LRRT_REL_REPORT names a file, appended to it as a JSON line."""
    import json
    import os

    line = json.dumps(row, sort_keys=True)
    print(f"RELIABILITY {line}")
    target = os.environ.get("LRRT_REL_REPORT")
    if target:
        with open(target, "a", encoding="utf-8") as out:
            out.write(line + "\n")
