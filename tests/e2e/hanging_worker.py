"""`lrrt worker` with one run that hangs: run (arm 1, repeat 0) of every job blocks forever after its
first chunk on its first attempt, as a pool child stuck inside TensorFlow did, so the watchdog
(`worker.tasks._Lease`) must notice, release the run and replace the child.

Run as `python -m tests.e2e.hanging_worker worker ...` (the arguments of `lrrt worker`): the hook is
installed in the worker's main process, before it forks its pool children, which inherit it; no
deployment runs this module (tests/e2e/test_fanout.py does).
"""

from __future__ import annotations

import logging
import threading

from lrrt.progress import Chunk
from service.cli import app
from worker import tasks

log = logging.getLogger(__name__)
HANGS = (1, 0)  # (arm index, repeat)

_after_chunk = tasks.JobRun._after_chunk


def _hang_after_first_chunk(run: tasks.JobRun, chunk: Chunk, seconds: float) -> None:
    _after_chunk(run, chunk, seconds)
    if (chunk.arm_index, chunk.repeat) == HANGS and chunk.candidate is None and run.coordinator.claimed.attempts == 1:
        log.warning("hanging run %s:%s (test only)", *HANGS)
        threading.Event().wait()


tasks.JobRun._after_chunk = _hang_after_first_chunk  # type: ignore[method-assign]

if __name__ == "__main__":
    app()
