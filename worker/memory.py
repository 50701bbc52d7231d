"""The worker's memory guard: a run may add at most LRRT_MEMORY_LIMIT_BYTES to its pool child's resident
memory, or it fails with `resource-exhausted` after one attempt.

Why a watched RSS and not a kernel limit (docs/design.md, "The worker's memory guard", has the numbers):
under `RLIMIT_AS` TensorFlow and XLA abort the whole process (SIGABRT from a thread pool, no Python
exception) as soon as their thread stacks and arenas reserve more address space than the limit, and
what they reserve grows with the host's core count, so no fixed address-space limit both lets every
model start and stops the large ones; a process killed that way is a lost worker, redelivered up to
LRRT_MAX_REDELIVERIES times. `RLIMIT_DATA` is closer to the RSS, but an allocation outside the
backends' allocators that hits it aborts the process the same way (`std::bad_alloc` in TensorFlow). A
cgroup needs root or a delegated subtree, which a pool child does not have (the deployment's own
container limit is the last line, docs/operations.md). The resident size is what the kernel's OOM killer weighs, and reading
it costs ~44 us: the lease thread of a run (worker/tasks.py `_Lease`) reads it every `TICK_S`,
and on crossing the limit fails the job in the store first, then exits the child, so its memory is
freed and Celery starts a fresh child for the worker's next job.

The limit counts what a run adds above the child's resident size once Keras is imported (`start`,
called when the engine is prepared): the import (~840 MiB TensorFlow, ~300 MiB JAX) and what earlier
runs cached are the process's, not the job's, and the estimate made at submission counts the job's
bytes only. Linux only (`/proc/self/statm`); elsewhere the guard is off.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from lrrt.problems import MemoryLimitExceeded

#: Seconds between two reads of the resident size while a run is guarded. Measured (docs/design.md): the
#: Resizing bomb grows the RSS at 0.1 to 0.2 GiB/s on a CPU, and was stopped 3 to 31 MiB over its ceiling.
TICK_S = 0.05

_STATM = "/proc/self/statm"


def rss_bytes() -> int | None:
    """This process's resident set size in bytes, or None where `/proc/self/statm` does not exist."""
    try:
        with open(_STATM, "rb") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return None


#: Allowed on top of the limit: the backend's fixed cost of a run's first step (tracing and compiling the
#: train function, its thread pools' arenas), which the estimate at submission leaves out by design.
#: Measured with a one-weight model on the CPU: 823 MiB on TensorFlow, 914 MiB on JAX
#: (`bench/memory_estimate.py`, docs/design.md "Memory estimate"). Without it a job estimated just under
#: the limit would pass submission and then be stopped by this guard for a cost that is not its own.
FIRST_STEP_BYTES = 1024 ** 3


@dataclass(frozen=True)
class MemoryGuard:
    """The memory one run may use: `limit_bytes`, plus `FIRST_STEP_BYTES` for the backend, above
    `baseline_bytes`, the resident size it started from."""

    limit_bytes: int
    baseline_bytes: int

    @classmethod
    def start(cls, limit_bytes: int) -> MemoryGuard | None:
        """A guard from this process's resident size now; None when the limit is 0 (off) or the size is unknown."""
        baseline = rss_bytes()
        return None if limit_bytes <= 0 or baseline is None else cls(limit_bytes, baseline)

    @property
    def ceiling_bytes(self) -> int:
        """The resident size at which the run is stopped."""
        return self.baseline_bytes + self.limit_bytes + FIRST_STEP_BYTES

    def exceeded(self, rss: int | None = None) -> MemoryLimitExceeded | None:
        """The problem that fails the run when the resident size (`rss`, or this process's now) is over the
        ceiling; None while it fits."""
        rss = rss_bytes() if rss is None else rss
        if rss is None or rss <= self.ceiling_bytes:
            return None
        return MemoryLimitExceeded(limit_bytes=self.limit_bytes, allowance_bytes=FIRST_STEP_BYTES,
                                   used_bytes=rss - self.baseline_bytes, rss_bytes=rss)
