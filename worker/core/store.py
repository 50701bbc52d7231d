"""The job record in Redis: the single source of truth for a job's state.

Celery's own task state is never consulted (it reports any unknown id as PENDING). The API writes the
record before it enqueues; the worker claims it, streams progress into it and finishes it. Every state
change is a Lua script, so two processes racing (a redelivered message and a resent one, a cancel and a
finish) cannot both win.

States: queued -> running -> succeeded | failed | cancelled. A running job holds a *lease* (a key with
a TTL that the worker refreshes from a background thread); a running job without a lease has lost its
worker and is requeued by `reap_orphans` or reclaimed by a redelivered message, up to
`max_redeliveries` times, then failed with an error that says so.
"""

from __future__ import annotations

import json
import secrets
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import redis

from worker.core.keys import Keys
from worker.core.settings import Settings
from worker.core.status import TERMINAL

#: Seconds a lease lives without a refresh; the worker refreshes it every LEASE_TTL_S / 3.
LEASE_TTL_S = 30
#: Most events kept per job stream (progress chunks + status); older ones are trimmed.
EVENTS_MAXLEN = 5000


def now_iso() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def new_id() -> str:
    """Job and dataset ids: random, unguessable, URL-safe."""
    return uuid.uuid4().hex


# KEYS: job, tenant_jobs, tenant_unfinished, idem (or "")
# ARGV: job_id, created_ts, cap, idem_body_sha, idem_ttl, then field/value pairs of the record
_CREATE = """
if KEYS[4] ~= '' then
  local prior = redis.call('GET', KEYS[4])
  if prior then return {'idem', prior} end
end
if tonumber(ARGV[3]) > 0 and redis.call('SCARD', KEYS[3]) >= tonumber(ARGV[3]) then
  return {'cap', tostring(redis.call('SCARD', KEYS[3]))}
end
local fields = {}
for i = 6, #ARGV do fields[#fields + 1] = ARGV[i] end
redis.call('HSET', KEYS[1], unpack(fields))
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
redis.call('SADD', KEYS[3], ARGV[1])
if KEYS[4] ~= '' then
  redis.call('SET', KEYS[4], cjson.encode({job_id = ARGV[1], body_sha256 = ARGV[4]}), 'EX', tonumber(ARGV[5]))
end
return {'ok', ARGV[1]}
"""

# Claim a job for a worker. KEYS: job, lease, running. ARGV: token, lease_ttl, max_attempts, now_iso, now_ts
# Returns {'claimed', attempts} | {'busy'} (another live worker holds it) | {'skip', status}
#        | {'exhausted', attempts} (worker lost too often; caller fails the job)
_CLAIM = """
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return {'skip', 'missing'} end
if status ~= 'queued' and status ~= 'running' then return {'skip', status} end
if redis.call('EXISTS', KEYS[2]) == 1 then return {'busy'} end
local attempts = tonumber(redis.call('HGET', KEYS[1], 'attempts') or '0') + 1
if attempts > tonumber(ARGV[3]) then return {'exhausted', tostring(attempts - 1)} end
redis.call('SET', KEYS[2], ARGV[1], 'EX', tonumber(ARGV[2]))
redis.call('HSET', KEYS[1], 'status', 'running', 'attempts', attempts, 'started_at', ARGV[4])
redis.call('HINCRBY', KEYS[1], 'version', 1)
redis.call('ZADD', KEYS[3], ARGV[5], redis.call('HGET', KEYS[1], 'id'))
return {'claimed', tostring(attempts)}
"""

# Move an unfinished job to a terminal state and store its result, atomically. KEYS: job,
# tenant_unfinished, running, lease, cancel, result, events, curves. ARGV: status, finished_at,
# error_json, ttl, token, expected ('queued' | 'running' | 'any'), result_json ('' keeps none).
# A running job can only be finished by its lease holder when a token is given. Returns 1 or 0.
_FINISH = """
local status = redis.call('HGET', KEYS[1], 'status')
if not status or (status ~= 'queued' and status ~= 'running') then return 0 end
if ARGV[6] ~= 'any' and status ~= ARGV[6] then return 0 end
if ARGV[5] ~= '' and status == 'running' then
  local holder = redis.call('GET', KEYS[4])
  if holder and holder ~= ARGV[5] then return 0 end
end
local id = redis.call('HGET', KEYS[1], 'id')
redis.call('HSET', KEYS[1], 'status', ARGV[1], 'finished_at', ARGV[2], 'error', ARGV[3])
redis.call('HINCRBY', KEYS[1], 'version', 1)
if ARGV[7] ~= '' then redis.call('SET', KEYS[6], ARGV[7]) end
redis.call('SREM', KEYS[2], id)
redis.call('ZREM', KEYS[3], id)
redis.call('DEL', KEYS[4], KEYS[5])
local ttl = tonumber(ARGV[4])
for _, i in ipairs({1, 6, 7, 8}) do redis.call('EXPIRE', KEYS[i], ttl) end
return 1
"""

# Requeue a running job whose lease expired. KEYS: job, lease, running. ARGV: max_attempts
# Returns 'requeued' | 'exhausted' | 'alive' | 'gone'
_REQUEUE_ORPHAN = """
local status = redis.call('HGET', KEYS[1], 'status')
if status ~= 'running' then
  redis.call('ZREM', KEYS[3], ARGV[2])
  return 'gone'
end
if redis.call('EXISTS', KEYS[2]) == 1 then return 'alive' end
local attempts = tonumber(redis.call('HGET', KEYS[1], 'attempts') or '0')
if attempts >= tonumber(ARGV[1]) then return 'exhausted' end
redis.call('HSET', KEYS[1], 'status', 'queued')
redis.call('HINCRBY', KEYS[1], 'version', 1)
redis.call('ZREM', KEYS[3], ARGV[2])
return 'requeued'
"""


class IdempotencyConflict(Exception):
    """The Idempotency-Key was used before with a different body."""

    def __init__(self, job_id: str) -> None:
        super().__init__(job_id)
        self.job_id = job_id


class TenantAtCapacity(Exception):
    """The tenant already has `cap` unfinished jobs."""

    def __init__(self, unfinished: int) -> None:
        super().__init__(unfinished)
        self.unfinished = unfinished


@dataclass(frozen=True)
class Created:
    job: dict[str, Any]
    replayed: bool  # True when an Idempotency-Key returned an earlier job


class JobStore:
    """Reads and writes job records, progress, curves, events and results under one key prefix."""

    def __init__(self, client: redis.Redis, keys: Keys, *, result_ttl_s: int, max_redeliveries: int) -> None:
        self.r = client
        self.k = keys
        self.result_ttl_s = result_ttl_s
        #: a job may be claimed this many times in all: the first run plus the redeliveries
        self.max_attempts = 1 + max_redeliveries
        self._create = client.register_script(_CREATE)
        self._claim = client.register_script(_CLAIM)
        self._finish = client.register_script(_FINISH)
        self._requeue = client.register_script(_REQUEUE_ORPHAN)

    # ------------------------------------------------------------------ submission (API side)
    def create(
        self,
        *,
        tenant: str,
        spec: dict[str, Any],
        max_unfinished: int,
        queue: str = "",
        idempotency_key: str | None = None,
        body_sha256: str = "",
    ) -> Created:
        """Write a queued job record; raises TenantAtCapacity or IdempotencyConflict.

        `queue` is the Celery queue the job is sent to; a requeue after a lost worker uses the same one.
        """
        job_id = new_id()
        created = now_iso()
        record = {
            "id": job_id,
            "tenant": tenant,
            "status": "queued",
            "queue": queue,
            "spec": json.dumps(spec, separators=(",", ":")),
            "labels": json.dumps(spec.get("labels") or {}),
            "created_at": created,
            "started_at": "",
            "finished_at": "",
            "error": "",
            "attempts": 0,
            "version": 1,
            "progress": "",
        }
        idem_key = self.k.idempotency(tenant, idempotency_key) if idempotency_key else ""
        args: list[Any] = [job_id, time.time(), max_unfinished, body_sha256, self.result_ttl_s]
        for field, value in record.items():
            args += [field, value]
        outcome, value = self._create(
            keys=[self.k.job(job_id), self.k.tenant_jobs(tenant), self.k.tenant_unfinished(tenant), idem_key],
            args=args,
        )
        outcome, value = _text(outcome), _text(value)
        if outcome == "idem":
            prior = json.loads(value)
            if prior["body_sha256"] != body_sha256:
                raise IdempotencyConflict(prior["job_id"])
            job = self.get(prior["job_id"], tenant=tenant)
            if job is None:  # the original expired or was deleted: the key no longer protects anything
                self.r.delete(idem_key)
                return self.create(tenant=tenant, spec=spec, max_unfinished=max_unfinished, queue=queue,
                                   idempotency_key=idempotency_key, body_sha256=body_sha256)
            return Created(job=job, replayed=True)
        if outcome == "cap":
            raise TenantAtCapacity(int(value))
        self.add_event(job_id, "status", {"status": "queued"})
        job = self.get(job_id, tenant=tenant)
        assert job is not None
        return Created(job=job, replayed=False)

    # ------------------------------------------------------------------ reading
    def get(self, job_id: str, *, tenant: str | None = None) -> dict[str, Any] | None:
        """The decoded record, or None if unknown or owned by another tenant (callers answer 404)."""
        raw = self.r.hgetall(self.k.job(job_id))
        if not raw:
            return None
        rec = {_text(k): _text(v) for k, v in raw.items()}
        if tenant is not None and rec.get("tenant") != tenant:
            return None
        return {
            "id": rec["id"],
            "tenant": rec["tenant"],
            "status": rec["status"],
            "queue": rec.get("queue") or None,
            "spec": json.loads(rec["spec"]),
            "labels": json.loads(rec.get("labels") or "{}"),
            "created_at": rec["created_at"],
            "started_at": rec.get("started_at") or None,
            "finished_at": rec.get("finished_at") or None,
            "error": json.loads(rec["error"]) if rec.get("error") else None,
            "attempts": int(rec.get("attempts") or 0),
            "version": int(rec.get("version") or 0),
            "progress": json.loads(rec["progress"]) if rec.get("progress") else None,
            "cancel_requested": rec.get("cancel_requested") == "1",
        }

    def list(
        self, tenant: str, *, status: str | None = None, page_size: int = 50, page_token: str | None = None
    ) -> tuple[list[dict[str, Any]], str | None]:
        """Newest first. The page token is the created-timestamp score to continue below (exclusive)."""
        max_score: str = f"({page_token}" if page_token else "+inf"
        items: list[dict[str, Any]] = []
        cursor = max_score
        while len(items) < page_size:
            batch = self.r.zrevrangebyscore(
                self.k.tenant_jobs(tenant), cursor, "-inf", start=0, num=page_size * 2, withscores=True
            )
            if not batch:
                return items, None
            for member, score in batch:
                job = self.get(_text(member), tenant=tenant)
                cursor = f"({score!r}"
                if job is None:  # expired record: drop the stale index entry
                    self.r.zrem(self.k.tenant_jobs(tenant), member)
                    continue
                if status and job["status"] != status:
                    continue
                items.append(job)
                if len(items) == page_size:
                    return items, repr(score)
        return items, None

    def unfinished_count(self, tenant: str) -> int:
        return int(self.r.scard(self.k.tenant_unfinished(tenant)))

    def counts_by_status(self) -> dict[str, int]:
        """For /metrics: scans the job records under this prefix (cheap at service scale)."""
        counts: dict[str, int] = {}
        for key in self.r.scan_iter(match=f"{self.k.prefix}:job:*", count=500):
            name = _text(key)
            if name.count(":") != 2:  # skip job:{id}:result and friends
                continue
            status = self.r.hget(name, "status")
            if status:
                counts[_text(status)] = counts.get(_text(status), 0) + 1
        return counts

    # ------------------------------------------------------------------ running (worker side)
    def claim(self, job_id: str, token: str) -> tuple[str, int | str | None]:
        """Try to become the job's runner. See `_CLAIM` for the outcomes."""
        res = self._claim(
            keys=[self.k.job(job_id), self.k.lease(job_id), self.k.running()],
            args=[token, LEASE_TTL_S, self.max_attempts, now_iso(), time.time()],
        )
        outcome = _text(res[0])
        detail = _text(res[1]) if len(res) > 1 else None
        if outcome == "claimed":
            self.add_event(job_id, "status", {"status": "running"})
            return outcome, int(detail or 0)
        return outcome, detail

    def refresh_lease(self, job_id: str, token: str) -> bool:
        """Extend the lease if we still hold it; False means someone else took the job over."""
        key = self.k.lease(job_id)
        if _text(self.r.get(key)) != token:
            return False
        self.r.expire(key, LEASE_TTL_S)
        return True

    def new_token(self) -> str:
        return secrets.token_hex(8)

    def record_chunk(self, job_id: str, progress: dict[str, Any], chunk: dict[str, Any]) -> None:
        """Store progress, append the chunk's curve points and publish a progress event, atomically."""
        payload = json.dumps(progress, separators=(",", ":"))
        pipe = self.r.pipeline(transaction=True)
        pipe.hset(self.k.job(job_id), "progress", payload)
        pipe.hincrby(self.k.job(job_id), "version", 1)
        pipe.rpush(self.k.curves(job_id), json.dumps(chunk, separators=(",", ":")))
        pipe.xadd(self.k.events(job_id), {"event": "progress", "data": payload}, maxlen=EVENTS_MAXLEN, approximate=True)
        pipe.execute()

    def chunks(self, job_id: str) -> list[dict[str, Any]]:
        """Every curve chunk recorded so far (plots of running jobs, partial results)."""
        return [json.loads(c) for c in self.r.lrange(self.k.curves(job_id), 0, -1)]

    def cancel_requested(self, job_id: str) -> bool:
        return bool(self.r.exists(self.k.cancel(job_id)))

    def set_progress(self, job_id: str, progress: dict[str, Any]) -> None:
        pipe = self.r.pipeline(transaction=True)
        pipe.hset(self.k.job(job_id), "progress", json.dumps(progress, separators=(",", ":")))
        pipe.hincrby(self.k.job(job_id), "version", 1)
        pipe.execute()

    # ------------------------------------------------------------------ ending
    def finish(
        self,
        job_id: str,
        status: str,
        *,
        result: dict[str, Any] | None = None,
        error: dict[str, Any] | None = None,
        token: str = "",
        expected: str = "any",
    ) -> bool:
        """Move to a terminal state, store the result (partial ones too) and set the TTLs, in one step.

        `expected` restricts the state finished from ('queued', 'running' or 'any'); with a `token`,
        only the lease holder may finish a running job. Returns False when the job was already
        terminal (cancelled while queued, say) or is not ours: the caller then drops its outcome.
        """
        assert status in TERMINAL
        tenant = self.r.hget(self.k.job(job_id), "tenant")
        if tenant is None:
            return False
        ok = bool(
            self._finish(
                keys=[
                    self.k.job(job_id),
                    self.k.tenant_unfinished(_text(tenant)),
                    self.k.running(),
                    self.k.lease(job_id),
                    self.k.cancel(job_id),
                    self.k.result(job_id),
                    self.k.events(job_id),
                    self.k.curves(job_id),
                ],
                args=[
                    status,
                    now_iso(),
                    json.dumps(error) if error else "",
                    self.result_ttl_s,
                    token,
                    expected,
                    json.dumps(result, separators=(",", ":")) if result is not None else "",
                ],
            )
        )
        if ok:
            self.add_event(job_id, "status", {"status": status, "error": error})
        return ok

    def request_cancel(self, job_id: str) -> str:
        """Cancel: a queued job ends now and never starts; a running one is flagged for its worker,
        which stops at its next chunk and finishes it `cancelled` with the partial curves.

        Returns 'cancelled' (done now) or 'cancelling' (the worker will finish it).
        """
        if self.finish(job_id, "cancelled", expected="queued"):
            return "cancelled"
        pipe = self.r.pipeline(transaction=True)
        pipe.set(self.k.cancel(job_id), "1", ex=self.result_ttl_s)
        pipe.hset(self.k.job(job_id), "cancel_requested", "1")
        pipe.hincrby(self.k.job(job_id), "version", 1)
        pipe.execute()
        return "cancelling"

    def delete(self, job_id: str, tenant: str) -> None:
        keys = [self.k.job(job_id), self.k.result(job_id), self.k.events(job_id), self.k.curves(job_id),
                self.k.cancel(job_id), self.k.lease(job_id)]
        pipe = self.r.pipeline(transaction=True)
        pipe.delete(*keys)
        pipe.zrem(self.k.tenant_jobs(tenant), job_id)
        pipe.srem(self.k.tenant_unfinished(tenant), job_id)
        pipe.execute()

    def result(self, job_id: str) -> dict[str, Any] | None:
        raw = self.r.get(self.k.result(job_id))
        return json.loads(raw) if raw else None

    # ------------------------------------------------------------------ events
    def add_event(self, job_id: str, event: str, data: dict[str, Any]) -> str:
        return _text(
            self.r.xadd(
                self.k.events(job_id),
                {"event": event, "data": json.dumps(data, separators=(",", ":"))},
                maxlen=EVENTS_MAXLEN,
                approximate=True,
            )
        )

    def read_events(self, job_id: str, after: str = "0-0", block_ms: int | None = None) -> list[tuple[str, str, dict]]:
        """Events after the given stream id: [(id, event, data)]; blocks up to block_ms for new ones."""
        res = self.r.xread({self.k.events(job_id): after}, block=block_ms, count=500)
        out: list[tuple[str, str, dict]] = []
        for _stream, entries in res or []:
            for entry_id, fields in entries:
                f = {_text(k): _text(v) for k, v in fields.items()}
                out.append((_text(entry_id), f["event"], json.loads(f["data"])))
        return out

    # ------------------------------------------------------------------ orphans
    def reap_orphans(self, grace_s: float = LEASE_TTL_S) -> list[tuple[str, str]]:
        """Running jobs whose lease expired: requeue them (caller re-sends) or report them exhausted.

        Returns [(job_id, 'requeued' | 'exhausted')]. Jobs started less than `grace_s` ago are left
        alone so a worker that just claimed one has time to take its lease.
        """
        outcomes: list[tuple[str, str]] = []
        cutoff = time.time() - grace_s
        for member in self.r.zrangebyscore(self.k.running(), "-inf", cutoff):
            job_id = _text(member)
            res = _text(
                self._requeue(keys=[self.k.job(job_id), self.k.lease(job_id), self.k.running()],
                              args=[self.max_attempts, job_id])
            )
            if res in ("requeued", "exhausted"):
                outcomes.append((job_id, res))
            if res == "requeued":
                self.add_event(job_id, "status", {"status": "queued", "reason": "worker lost; requeued"})
        return outcomes

    def _status(self, job_id: str) -> str | None:
        return _text(self.r.hget(self.k.job(job_id), "status"))


def _text(value: Any) -> Any:
    return value.decode() if isinstance(value, bytes) else value


def store_from_settings(settings: Settings) -> JobStore:
    """The JobStore a process uses: one connection pool per process, configured from LRRT_* settings."""
    client = redis.Redis.from_url(settings.redis_url, health_check_interval=30, socket_timeout=30)
    return JobStore(
        client,
        Keys(settings.key_prefix),
        result_ttl_s=settings.result_ttl_s,
        max_redeliveries=settings.max_redeliveries,
    )
