"""Start a Celery worker process for one Keras backend: `lrrt worker` calls `serve`.

The order matters: KERAS_BACKEND and the JAX allocator settings must be in the environment before the
task module (and, in the pool children it forks, Keras) is imported, because Keras reads them once.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import os
import socket
import sys
import time
from collections.abc import Callable, Sequence
from types import ModuleType

from lrrt.routing import queue_for
from lrrt.settings import Settings

#: Pause before Celery is started again after it stopped on an unrecoverable error.
WORKER_RESTART_S = 2.0


class _NoTensorFlow(importlib.abc.MetaPathFinder):
    """Refuses to import `tensorflow` (and its submodules) as if it were not installed."""

    def find_spec(self, name: str, path: Sequence[str] | None, target: ModuleType | None = None,
                  ) -> importlib.machinery.ModuleSpec | None:
        if name == "tensorflow" or name.startswith("tensorflow."):
            raise ModuleNotFoundError(f"No module named {name!r} (a JAX worker does not load TensorFlow)", name=name)
        return None


def block_tensorflow() -> None:
    """Make this process (a JAX worker) run as if TensorFlow were not installed.

    Why: Keras's `set_random_seed` imports TensorFlow whenever it is installed, only to seed it, which
    costs each JAX pool child hundreds of MB for nothing (docs/design.md, "The TensorFlow block in JAX
    workers", has the measurement). Why a finder and not `sys.modules["tensorflow"] = None`: that
    sentinel makes `"tensorflow" in sys.modules` true, and Keras reads exactly that as "TensorFlow is
    loaded" (`keras.src.utils.backend_utils.in_tf_graph`, asked by every preprocessing layer's
    `__call__`), then fails to import it, so no model with `Rescaling`, `Normalization` or a `Random*`
    layer (MobileNetV3, EfficientNet, ConvNeXt, augmentation) could build. A finder leaves
    `sys.modules` as on a machine without TensorFlow, which Keras supports. Idempotent.
    """
    if not any(isinstance(finder, _NoTensorFlow) for finder in sys.meta_path):
        sys.meta_path.insert(0, _NoTensorFlow())


def serve(settings: Settings, backend: str, *, queues: list[str] | None, concurrency: int, hostname: str | None,
          pool: str, loglevel: str, log: Callable[[str], None]) -> None:
    """Run a Celery worker on `backend`'s queue until a shutdown signal stops it."""
    os.environ["KERAS_BACKEND"] = backend
    # JAX takes 75% of a GPU's memory at start by default; grow instead, as TensorFlow workers do, so several
    # worker processes can share a GPU.
    os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    if backend == "jax":
        block_tensorflow()  # before Keras is imported; the pool children fork from here and inherit it
    from celery.worker import state as worker_state

    from worker.tasks import app as celery_app

    argv = [
        "worker",
        "--queues", ",".join(queues or [queue_for(settings.queue, backend)]),
        "--concurrency", str(concurrency),
        "--hostname", hostname or f"lrrt@{socket.gethostname()}",
        "--pool", pool,
        "--loglevel", loglevel,
        "--without-gossip", "--without-mingle",  # no chatter between workers: nothing here uses it
    ]
    # Celery ends `worker_main` on an "Unrecoverable error" as if asked to stop (status 0), and kombu 5.7.0
    # raises one when a reconnect after a Redis restart races its restore of unacked messages. Unless a
    # shutdown signal set Celery's stop flags, start it again: a Redis blip must not leave this host
    # without a worker.
    while True:
        try:
            celery_app.worker_main(argv)
        except SystemExit as exc:
            if exc.code not in (None, 0, 1):
                raise
        if worker_state.should_stop is not None or worker_state.should_terminate is not None:
            return
        log(f"the Celery worker stopped on an unrecoverable error; starting it again in {WORKER_RESTART_S:.0f} s")
        time.sleep(WORKER_RESTART_S)
