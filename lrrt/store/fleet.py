"""The workers as Redis sees them: heartbeats, the watchdog's stuck marks, the reaper's lock and the
Celery queues' depth (`JobStore.fleet`).

The API reads them for `/readyz`, `/metrics` and routing (`lrrt.liveness`); the workers write them
(`worker/heartbeat.py`, the watchdog in `worker/tasks.py`); the reaper takes its lock here.
"""

from __future__ import annotations

import json
from typing import Any

import redis

from lrrt.store.keys import Keys


class Fleet:
    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self._r = client
        self._k = keys

    def ping(self) -> None:
        """Raises redis.RedisError when Redis does not answer."""
        self._r.ping()

    # ------------------------------------------------------------------ heartbeats
    def beat(self, hostname: str, info: dict[str, Any], ttl_s: int) -> None:
        """The worker `hostname` is alive for `ttl_s` more seconds; `info` says what it runs."""
        self._r.set(self._k.worker_heartbeat(hostname), json.dumps(info), ex=ttl_s)

    def forget(self, hostname: str) -> None:
        """The worker stopped cleanly: drop its heartbeat before it expires."""
        self._r.delete(self._k.worker_heartbeat(hostname))

    def live_workers(self) -> list[str]:
        """Hostnames with an unexpired heartbeat, sorted."""
        return sorted(name.removeprefix(self._k.worker_heartbeat("")) for name in self._scan(self._k.worker_heartbeat("")))

    def heartbeats(self) -> list[dict[str, Any]]:
        """The unexpired heartbeats' info; one that is not a JSON object reads as `{}` (a worker that wrote
        none of the fields this version reads)."""
        names = [self._k.worker_heartbeat(h) for h in self.live_workers()]
        return [_object(raw) for raw in (self._r.mget(names) if names else [])]

    # ------------------------------------------------------------------ stuck runs
    def mark_stuck(self, worker: str, note: dict[str, Any], ttl_s: int) -> None:
        """The watchdog of `worker` replaced a pool child stuck on the run in `note`."""
        self._r.set(self._k.worker_stuck(worker), json.dumps(note), ex=ttl_s)

    def stuck(self) -> list[dict[str, Any]]:
        """The unexpired stuck marks' notes, by worker."""
        names = list(self._scan(self._k.worker_stuck("")))
        notes = [_object(raw) for raw in (self._r.mget(names) if names else [])]
        return sorted((n for n in notes if n), key=lambda n: str(n.get("worker") or ""))

    # ------------------------------------------------------------------ reaper, queues
    def take_reaper_lock(self, owner: str, ttl_s: int) -> bool:
        """True when `owner` now holds the reaper's lock for `ttl_s` seconds (no other process reaps)."""
        return bool(self._r.set(self._k.reaper_lock(), owner, nx=True, ex=max(1, ttl_s)))

    def queue_depth(self, queue: str) -> int:
        """Messages waiting in a Celery queue (kombu's Redis transport keeps each queue as a list)."""
        return int(self._r.llen(queue))

    def _scan(self, prefix: str) -> list[str]:
        return [k.decode() if isinstance(k, bytes) else k for k in self._r.scan_iter(match=prefix + "*", count=500)]


def _object(raw: bytes | str | None) -> dict[str, Any]:
    try:
        value = json.loads(raw) if raw else {}
    except (json.JSONDecodeError, UnicodeDecodeError):
        return {}
    return value if isinstance(value, dict) else {}
