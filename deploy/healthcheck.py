"""Container health checks for the lrrt images: `healthcheck.py api` or `healthcheck.py worker`.

Exit 0 when healthy, 1 otherwise (Docker's HEALTHCHECK contract), with one line saying why.

- api: GET http://127.0.0.1:8000/healthz answers 200 (the images run `lrrt api --port 8000`).
- worker: a heartbeat key of a worker in *this* container exists in Redis. `worker.heartbeat` writes
  `Keys.worker_heartbeat(<celery node name>)` every 10 s with a 30 s TTL from the worker's main
  process, and the node name ends in `@<container hostname>` (`--hostname gpu0@%h`), so a missing
  key means the worker is not running, cannot reach Redis, or is wedged.
"""

from __future__ import annotations

import socket
import sys
import urllib.request


def check_api() -> str | None:
    url = "http://127.0.0.1:8000/healthz"
    try:
        with urllib.request.urlopen(url, timeout=4) as response:
            return None if response.status == 200 else f"{url} answered {response.status}"
    except OSError as exc:
        return f"{url}: {exc}"


def check_worker() -> str | None:
    import redis

    from lrrt.settings import get_settings
    from lrrt.store.keys import Keys

    settings = get_settings()
    pattern = Keys(settings.key_prefix).worker_heartbeat(f"*@{socket.gethostname()}*")
    try:
        client = redis.Redis.from_url(settings.redis_url, socket_timeout=5, socket_connect_timeout=5)
        found = next(iter(client.scan_iter(match=pattern, count=1000)), None)
    except redis.RedisError as exc:
        return f"Redis unreachable: {exc}"
    return None if found else f"no heartbeat key matching {pattern!r}"


def main(argv: list[str]) -> int:
    checks = {"api": check_api, "worker": check_worker}
    if len(argv) != 2 or argv[1] not in checks:
        print(f"usage: {argv[0]} {{{'|'.join(checks)}}}", file=sys.stderr)
        return 2
    problem = checks[argv[1]]()
    print(problem or "ok")
    return 1 if problem else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
