"""The API's share of orphan recovery: `lrrt.reaper.reap_if_free` every few seconds in a daemon thread.

Workers reap too (from their heartbeat), so jobs whose worker died are recovered whether or not an API
is running; whoever takes the `Keys.reaper_lock()` NX lock first does a pass, so several API and worker
processes never re-send the same orphan twice.
"""

from __future__ import annotations

import logging
import os
import socket
import threading

from celery import Celery

from lrrt.reaper import reap_if_free
from lrrt.settings import Settings
from lrrt.store.jobs import JobStore

log = logging.getLogger(__name__)


class ReaperThread:
    def __init__(self, store: JobStore, celery: Celery, settings: Settings, interval_s: float) -> None:
        self.store = store
        self.celery = celery
        self.settings = settings
        self.interval_s = interval_s
        self.owner = f"api:{socket.gethostname()}:{os.getpid()}"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="lrrt-api-reaper", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                reap_if_free(self.store, self.celery, self.settings, owner=self.owner, lock_ttl_s=int(self.interval_s))
            except Exception as exc:  # Redis restarting, broker down: the next pass tries again
                log.warning("reaper pass failed: %s", exc)
