"""What one message of a job does before a run starts, for whoever takes the job's messages off its
queue: the Celery task (`worker.tasks.run_job`) and the tests' workers on a real queue
(`tests/fake_worker.py`), so both take a message the same way.

The API sends one message per job. The first runner to take it sends one more per further run
(`needs_fanout`) before claiming, so free workers take the job's runs in parallel; a crash between
the two loses no run. `claim` then takes the job's next queued run (or one whose worker died). A
message with nothing left to claim (`busy`), or whose job is terminal (`skip`: cancelled while
queued), runs nothing; a run whose workers died too often (`exhausted`) fails the job here.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from lrrt.coordinator import Claimed
from lrrt.reaper import fail_worker_lost
from lrrt.store.jobs import JobStore
from lrrt.store.outcomes import ClaimOutcome

log = logging.getLogger(__name__)


def take(store: JobStore, job_id: str, worker: str, *, default_queue: str,
         send: Callable[[str], None]) -> Claimed | ClaimOutcome:
    """Fan the job out and claim one of its runs for `worker`: the run to hand to the coordinator, or
    why the message runs nothing (`send(queue)` sends one more message for the job to `queue`)."""
    job = store.get(job_id)
    if job is not None:
        for _ in range(store.needs_fanout(job_id)):
            send(job.queue or default_queue)
    token = store.new_token()
    claim = store.claim(job_id, token, worker)
    if claim.outcome in (ClaimOutcome.BUSY, ClaimOutcome.SKIP):
        log.info("job %s not run: %s %s", job_id, claim.outcome.value, claim.status or "")
        return claim.outcome
    if claim.outcome is ClaimOutcome.EXHAUSTED:
        fail_worker_lost(store, job_id, claim.attempts)
        return claim.outcome
    assert claim.run is not None  # claimed
    return Claimed(job_id, claim.run, claim.attempts, token, worker)
