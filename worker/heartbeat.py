"""What a worker process does besides running tasks: tell the API it is alive, and reap orphans.

In the worker's main process (never in the pool children), once Celery says the worker is ready, a
daemon thread every `INTERVAL_S`:

- sets `Keys.worker_heartbeat(hostname)` with a TTL, which the API's `/readyz` looks for;
- runs `reaper.reap_if_free` (a `reap_once` pass under the `Keys.reaper_lock()` NX lock), so that of all the API and worker
  processes only one reaps at a time, and orphaned jobs are recovered even when no API is running.

Pool children warm up in the background: Keras is imported right after the fork, so the first job
does not pay for the import (the parent never imports it: CUDA and fork do not mix).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from typing import Any

from celery import Celery, signals

from lrrt.liveness import HEARTBEAT_TTL_S
from lrrt.reaper import reap_if_free
from lrrt.routing import device_kind
from lrrt.settings import get_settings
from lrrt.store.jobs import store_from_settings

log = logging.getLogger(__name__)

INTERVAL_S = 10.0


class Heartbeat:
    def __init__(self, app: Celery, hostname: str, queues: list[str], concurrency: int | None) -> None:
        self.app = app
        self.settings = get_settings()
        self.store = store_from_settings(self.settings)
        self.hostname = hostname
        self.info = {"hostname": hostname, "pid": os.getpid(), "queues": queues, "concurrency": concurrency,
                     "backend": os.environ.get("KERAS_BACKEND") or self.settings.backend, "device": device_kind()}
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, name="lrrt-heartbeat", daemon=True)

    def beat(self) -> None:
        self.store.fleet.beat(self.hostname, self.info, HEARTBEAT_TTL_S)
        reap_if_free(self.store, self.app, self.settings, owner=f"worker:{self.hostname}", lock_ttl_s=int(INTERVAL_S))

    def _loop(self) -> None:
        while not self.stop.is_set():
            started = time.monotonic()
            try:
                self.beat()
            except Exception as exc:  # Redis down or restarting: the next beat tries again
                log.warning("heartbeat failed: %s", exc)
            self.stop.wait(max(0.0, INTERVAL_S - (time.monotonic() - started)))

    def close(self) -> None:
        self.stop.set()
        try:
            self.store.fleet.forget(self.hostname)
        except Exception:  # best effort: the key expires on its own
            pass


_current: dict[str, Heartbeat] = {}


def connect(app: Celery) -> None:
    """Hook the heartbeat and the child warm-up into the worker's lifecycle signals."""

    @signals.worker_ready.connect(weak=False)
    def _start(sender: Any = None, **_: Any) -> None:
        hostname = getattr(sender, "hostname", None) or f"{socket.gethostname()}-{os.getpid()}"
        queues = sorted(q.name for q in app.amqp.queues.consume_from.values()) if app.amqp.queues else []
        pool = getattr(getattr(sender, "controller", None), "concurrency", None)
        hb = Heartbeat(app, hostname, queues, pool)
        _current["hb"] = hb
        try:
            hb.beat()  # ready for /readyz now, not INTERVAL_S from now
        except Exception as exc:
            log.warning("first heartbeat failed: %s", exc)
        hb.thread.start()

    @signals.worker_shutdown.connect(weak=False)
    def _stop(**_: Any) -> None:
        hb = _current.pop("hb", None)
        if hb is not None:
            hb.close()

    @signals.worker_process_init.connect(weak=False)
    def _warm_child(**_: Any) -> None:
        _warmup.start()


#: Held by whichever thread of a pool child imports Keras first. Two threads importing TensorFlow at
#: once deadlock on its module locks (seen: the warm-up thread racing the first job's import), so the
#: warm-up and the task both import through `import_keras`.
_keras_import = threading.Lock()


def import_keras() -> None:
    """Import Keras (and its backend) in this process, one thread at a time; free once imported."""
    with _keras_import:
        import keras  # noqa: F401


def _warm_up() -> None:
    try:
        import_keras()
    except Exception as exc:  # the task's own import will raise it again, with a traceback, if it persists
        log.warning("warm-up import of Keras failed: %s", exc)


_warmup = threading.Thread(target=_warm_up, name="lrrt-warmup", daemon=True)
