"""The job record in Redis: the single source of truth for a job's state.

Celery's own task state is never consulted (it reports any unknown id as PENDING). The API writes the
record before it enqueues; the worker claims it, streams progress into it and finishes it. Every state
change is a Lua script, so two processes racing (a redelivered message and a resent one, a cancel and a
finish) cannot both win.

States: queued -> running -> succeeded | failed | cancelled. A job is made of (arm, repeat) *runs*,
each claimed by whichever worker takes one of the job's messages, so they run in parallel; a job with
`sweep.confirm` has one more run per (arm, confirm slot), `waiting` until its round's gate opens: the
first round when every range-test run has ended, a later round when its arm's round before it has
(the run that ends last releases them and sends their messages). A running
run holds a *lease* (a key with a TTL that its worker refreshes from a background thread while the run
reports chunks); a run without a lease has lost its worker and is requeued by `reap_orphans` or
reclaimed by a redelivered message, up to `max_redeliveries` times, then its job fails with an error
that says so. The run that ends last finishes the job (`end_run` says which one that is).
"""

from __future__ import annotations

import json
import secrets
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import resources
from typing import Any, cast

import redis
from redis.backoff import ExponentialBackoff
from redis.commands.core import Script
from redis.retry import Retry

from lrrt.records import JobRecord
from lrrt.result_model import RunReport
from lrrt.routing import Choice
from lrrt.runs import gate_of, run_counts
from lrrt.settings import Settings
from lrrt.spec import JobSpec
from lrrt.status import TERMINAL
from lrrt.store.fleet import Fleet
from lrrt.store.keys import Keys
from lrrt.store.outcomes import Claim, ClaimOutcome, Reaped, Release, RunEnd
from lrrt.store.stats import Stats

#: Seconds a lease lives without a refresh; the worker refreshes it every LEASE_TTL_S / 3.
LEASE_TTL_S = 30
#: Most events kept per job stream (progress chunks + status); older ones are trimmed.
EVENTS_MAXLEN = 5000


#: How the record's timestamps (`created_at`, `started_at`, `finished_at`) are written, in UTC.
ISO_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"


def now_iso() -> str:
    return datetime.now(timezone.utc).strftime(ISO_FORMAT)


def new_id() -> str:
    """Job and dataset ids: random, unguessable, URL-safe."""
    return uuid.uuid4().hex


# A job's (arm, repeat) runs are numbered arm_index * repeats + repeat, then its confirm runs (arm, slot)
# sweep_runs + arm_index * candidates + slot (`run_of`); `runs` in the record is their count and
# `sweep_runs` that of the range-test runs. Each run has `run:<i>:state` (waiting | queued | running |
# ended; absent means queued; only confirm runs wait, for their gate: `:arm` and `:round`, `gate_of`),
# `:attempts`, `:token` (its current runner), `:worker`, once released `:released_at` (and `:resent`
# once the reaper sent its message again) and, once ended, `:outcome` (JSON), in the job hash, and a
# lease key `<lease prefix>:<i>` while it runs.


def _script(client: redis.Redis, name: str, *, prelude: str = "") -> Script:
    """Register `lua/<name>.lua` (after `lua/<prelude>.lua`, whose functions it calls) on the client."""
    lua = resources.files("lrrt.store") / "lua"
    text = (lua / f"{prelude}.lua").read_text() if prelude else ""
    return cast(Script, client.register_script(text + (lua / f"{name}.lua").read_text()))


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
    job: JobRecord
    replayed: bool  # True when an Idempotency-Key returned an earlier job


class JobStore:
    """Reads and writes job records, progress, curves, events and results under one key prefix."""

    def __init__(self, client: redis.Redis, keys: Keys, *, result_ttl_s: int, max_redeliveries: int) -> None:
        self.r = client
        self.k = keys
        self.stats = Stats(client, keys)
        self.fleet = Fleet(client, keys)
        self.result_ttl_s = result_ttl_s
        #: a job may be claimed this many times in all: the first run plus the redeliveries
        self.max_attempts = 1 + max_redeliveries
        self._create = _script(client, "create")
        self._claim = _script(client, "claim")
        self._finish = _script(client, "finish")
        self._end_run = _script(client, "end_run")
        self._reap_runs = _script(client, "reap_runs", prelude="requeue_run")
        self._release_stuck = _script(client, "release_stuck", prelude="requeue_run")
        self._reroute = _script(client, "reroute")
        self._start_progress = _script(client, "start_progress")

    # ------------------------------------------------------------------ submission (API side)
    def create(
        self,
        *,
        tenant: str,
        spec: JobSpec,
        max_unfinished: int,
        queue: str = "",
        routing: Choice | None = None,
        idempotency_key: str | None = None,
        body_sha256: str = "",
    ) -> Created:
        """Write a queued job record; raises TenantAtCapacity or IdempotencyConflict.

        `queue` is the Celery queue the job is sent to; a requeue after a lost worker uses the same one.
        `routing` is the backend that queue serves and why (`lrrt.routing`), kept for the result.
        """
        job_id = new_id()
        created = now_iso()
        record: dict[str, Any] = {
            "id": job_id,
            "tenant": tenant,
            "status": "queued",
            "queue": queue,
            "backend": routing.backend if routing else "",
            "backend_reason": routing.reason if routing else "",
            "spec": json.dumps(spec.model_dump(mode="json"), separators=(",", ":")),
            "labels": json.dumps(spec.labels or {}),
            "created_at": created,
            "started_at": "",
            "finished_at": "",
            "error": "",
            "attempts": 0,
            "version": 1,
            "progress": "",
        }
        sweep_runs, runs = run_counts(spec)
        record |= {"runs": runs, "sweep_runs": sweep_runs}
        for i in range(sweep_runs, runs):
            arm, round_ = gate_of(spec, i) or (0, 0)
            record |= {f"run:{i}:state": "waiting", f"run:{i}:arm": arm, f"run:{i}:round": round_}
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
                                   routing=routing, idempotency_key=idempotency_key, body_sha256=body_sha256)
            return Created(job=job, replayed=True)
        if outcome == "cap":
            raise TenantAtCapacity(int(value))
        self.add_event(job_id, "status", {"status": "queued"})
        job = self.get(job_id, tenant=tenant)
        assert job is not None
        return Created(job=job, replayed=False)

    # ------------------------------------------------------------------ reading
    def get(self, job_id: str, *, tenant: str | None = None) -> JobRecord | None:
        """The decoded record, its spec validated, or None if unknown or owned by another tenant (callers answer 404)."""
        raw = self.r.hgetall(self.k.job(job_id))
        if not raw:
            return None
        rec = {_text(k): _text(v) for k, v in raw.items()}
        if tenant is not None and rec.get("tenant") != tenant:
            return None
        return JobRecord(
            id=rec["id"],
            tenant=rec["tenant"],
            status=rec["status"],
            queue=rec.get("queue") or None,
            backend=rec.get("backend") or None,
            backend_reason=rec.get("backend_reason") or None,
            spec=JobSpec.model_validate_json(rec["spec"]),
            labels=json.loads(rec.get("labels") or "{}"),
            created_at=rec["created_at"],
            started_at=rec.get("started_at") or None,
            finished_at=rec.get("finished_at") or None,
            error=json.loads(rec["error"]) if rec.get("error") else None,
            attempts=int(rec.get("attempts") or 0),
            started_ts=float(rec.get("started_ts") or 0) or None,
            runs=int(rec.get("runs") or 1),
            version=int(rec.get("version") or 0),
            progress=json.loads(rec["progress"]) if rec.get("progress") else None,
            cancel_requested=rec.get("cancel_requested") == "1",
        )

    def list_jobs(
        self, tenant: str, *, status: str | None = None, page_size: int = 50, page_token: str | None = None
    ) -> tuple[list[JobRecord], str | None]:
        """Newest first. The page token is the created-timestamp score to continue below (exclusive)."""
        max_score: str = f"({page_token}" if page_token else "+inf"
        items: list[JobRecord] = []
        cursor = max_score
        while len(items) < page_size:
            batch = self.r.zrevrangebyscore(
                self.k.tenant_jobs(tenant), cursor, "-inf", start=0, num=page_size * 2, withscores=True
            )
            if not batch:
                return items, None
            for member, score in cast("list[tuple[Any, float]]", batch):
                job = self.get(_text(member), tenant=tenant)
                cursor = f"({score!r}"
                if job is None:  # expired record: drop the stale index entry
                    self.r.zrem(self.k.tenant_jobs(tenant), member)
                    continue
                if status and job.status != status:
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
    def claim(self, job_id: str, token: str, worker: str = "") -> Claim:
        """Try to become the runner of the job's next run (a queued one, else one whose lease expired)."""
        res = [_text(v) for v in self._claim(
            keys=[self.k.job(job_id), self.k.lease_prefix(job_id), self.k.running()],
            args=[token, LEASE_TTL_S, self.max_attempts, now_iso(), time.time(), worker],
        )]
        outcome = ClaimOutcome(res[0])
        if outcome is ClaimOutcome.SKIP:
            return Claim(outcome, status=res[1])
        if outcome is ClaimOutcome.BUSY:
            return Claim(outcome)
        claim = Claim(outcome, run=int(res[2]), attempts=int(res[1]))
        if outcome is ClaimOutcome.CLAIMED:
            self.add_event(job_id, "status", {"status": "running", "run": claim.run})
        return claim

    def needs_fanout(self, job_id: str) -> int:
        """How many more messages a queued job needs so that each of its range-test runs has one (0 once
        any run was claimed: from then on every message is accounted for; confirm runs get theirs when
        they are released)."""
        status, runs, sweep_runs, fanned = self.r.hmget(self.k.job(job_id), "status", "runs", "sweep_runs", "fanned")
        return int(sweep_runs or runs or 1) - 1 if _text(status) == "queued" and not fanned else 0

    def run_held_by(self, job_id: str, token: str) -> tuple[int, int] | None:
        """(run index, attempts of that run) that `token` claimed, or None when it holds none of the job's runs."""
        runs = int(self.r.hget(self.k.job(job_id), "runs") or 1)
        tokens = self.r.hmget(self.k.job(job_id), [f"run:{i}:token" for i in range(runs)])
        run = next((i for i, t in enumerate(tokens) if _text(t) == token), None)
        return None if run is None else (run, int(self.r.hget(self.k.job(job_id), f"run:{run}:attempts") or 0))

    def has_queued_run(self, job_id: str) -> bool:
        """A run of the job is waiting for a worker (so one of its messages is still needed)."""
        runs = int(self.r.hget(self.k.job(job_id), "runs") or 1)
        states = self.r.hmget(self.k.job(job_id), [f"run:{i}:state" for i in range(runs)])
        return any(_text(s) in (None, "queued") for s in states)

    def reroute(self, job_id: str, from_queue: str, to_queue: str, routing: Choice) -> bool:
        """Point a never-claimed queued job at `to_queue`, the queue of `routing`'s backend (the caller
        sends its message there); False when it was claimed, ended or moved meanwhile."""
        return bool(self._reroute(keys=[self.k.job(job_id)], args=[from_queue, to_queue, routing.backend, routing.reason]))

    def refresh_lease(self, job_id: str, run: int, token: str) -> bool:
        """Extend the run's lease if we still hold it; False means someone else took the run over."""
        key = self.k.lease(job_id, run)
        if _text(self.r.get(key)) != token:
            return False
        self.r.expire(key, LEASE_TTL_S)
        return True

    def run_check(self, job_id: str, run: int, token: str) -> str | None:
        """Between chunks: "cancelled" (a cancel was asked for), "lost" (another runner holds the run,
        or the job ended: stop writing into it), or None to go on."""
        pipe = self.r.pipeline(transaction=False)
        pipe.exists(self.k.cancel(job_id))
        pipe.hmget(self.k.job(job_id), "status", f"run:{run}:token")
        cancelled, (status, holder) = pipe.execute()
        if _text(status) != "running" or _text(holder) != token:
            return "lost"
        return "cancelled" if cancelled else None

    def end_run(self, job_id: str, run: int, token: str, report: RunReport, abandon: str = "") -> RunEnd:
        """Record how a run ended; with `abandon` (a stop reason), runs not started yet end with it too."""
        stored = json.dumps(report.stored(), separators=(",", ":"))
        return RunEnd(_text(self._end_run(keys=[self.k.job(job_id), self.k.lease_prefix(job_id)],
                                          args=[run, token, stored, abandon, time.time()])))

    def run_outcomes(self, job_id: str) -> dict[int, RunReport]:
        """What each ended run reported (`end_run`), by run index, with its `attempts` and `worker`."""
        runs = int(self.r.hget(self.k.job(job_id), "runs") or 1)
        fields = [f"run:{i}:{name}" for i in range(runs) for name in ("outcome", "attempts", "worker")]
        values = [_text(v) for v in self.r.hmget(self.k.job(job_id), fields)]
        out: dict[int, RunReport] = {}
        for i in range(runs):
            outcome, attempts, worker = values[3 * i : 3 * i + 3]
            if outcome:
                out[i] = RunReport.read(json.loads(outcome), attempts=int(attempts or 0), worker=worker or None)
        return out

    def release_stuck(self, job_id: str, run: int, token: str, note: dict[str, Any]) -> Release:
        """The watchdog gives up the run `token` holds; `note` (why) is kept on the run."""
        return Release(_text(self._release_stuck(
            keys=[self.k.job(job_id), self.k.lease_prefix(job_id), self.k.running()],
            args=[run, token, self.max_attempts, job_id, json.dumps(note, separators=(",", ":"))])))

    def new_token(self) -> str:
        return secrets.token_hex(8)

    def record_chunk(self, job_id: str, progress: dict[str, Any] | Callable[[dict[str, Any] | None], dict[str, Any]],
                     chunk: dict[str, Any]) -> None:
        """Store progress, append the chunk's curve points and publish a progress event, atomically.

        `progress` is the new progress object, or a function from the stored one to the new one: the
        runs of a job record from several processes, so each merges its chunk into what is stored,
        under WATCH (a concurrent write makes it read and merge again, and no run's count is lost).
        """
        key = self.k.job(job_id)
        with self.r.pipeline(transaction=True) as pipe:
            while True:
                try:
                    pipe.watch(key)
                    stored = pipe.hget(key, "progress")
                    new = progress(json.loads(stored) if stored else None) if callable(progress) else progress
                    payload = json.dumps(new, separators=(",", ":"))
                    pipe.multi()
                    pipe.hset(key, "progress", payload)
                    pipe.hincrby(key, "version", 1)
                    pipe.rpush(self.k.curves(job_id), json.dumps(chunk, separators=(",", ":")))
                    pipe.xadd(self.k.events(job_id), {"event": "progress", "data": payload}, maxlen=EVENTS_MAXLEN,
                              approximate=True)
                    pipe.execute()
                    return
                except redis.WatchError:
                    continue

    def chunks(self, job_id: str) -> list[dict[str, Any]]:
        """Every curve chunk recorded so far (plots of running jobs, partial results)."""
        return [json.loads(c) for c in self.r.lrange(self.k.curves(job_id), 0, -1)]

    def cancel_requested(self, job_id: str) -> bool:
        return bool(self.r.exists(self.k.cancel(job_id)))

    def start_progress(self, job_id: str, progress: dict[str, Any]) -> None:
        """Store the progress before the first chunk, unless a run of the job already recorded one."""
        self._start_progress(keys=[self.k.job(job_id)], args=[json.dumps(progress, separators=(",", ":"))])

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
                    self.k.lease_prefix(job_id),
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
        runs = int(self.r.hget(self.k.job(job_id), "runs") or 1)
        keys = [self.k.job(job_id), self.k.result(job_id), self.k.events(job_id), self.k.curves(job_id),
                self.k.cancel(job_id), *(self.k.lease(job_id, i) for i in range(runs))]
        pipe = self.r.pipeline(transaction=True)
        pipe.delete(*keys)
        pipe.zrem(self.k.tenant_jobs(tenant), job_id)
        pipe.srem(self.k.tenant_unfinished(tenant), job_id)
        pipe.execute()

    def prior_submission(self, tenant: str, idempotency_key: str) -> str | None:
        """What `create` stored under the Idempotency-Key (JSON: the job id and the body's sha256), or None."""
        return _text(self.r.get(self.k.idempotency(tenant, idempotency_key)))

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
        res = cast("list[tuple[Any, list[tuple[Any, dict[Any, Any]]]]] | None",
                   self.r.xread({self.k.events(job_id): after}, block=block_ms, count=500))
        out: list[tuple[str, str, dict]] = []
        for _stream, entries in res or []:
            for entry_id, fields in entries:
                f = {_text(k): _text(v) for k, v in fields.items()}
                out.append((_text(entry_id), f["event"], json.loads(f["data"])))
        return out

    # ------------------------------------------------------------------ orphans
    def reap_orphans(self, grace_s: float = LEASE_TTL_S) -> list[tuple[str, Reaped]]:
        """Runs of running jobs whose lease expired: requeue them (caller re-sends one message each) or
        report them exhausted (caller fails the job). A job none of whose runs is running or ended any
        more goes back to `queued`.

        Returns (job_id, outcome) pairs, one per such run (`Reaped.RESEND`: a released confirm run that
        may never have had its message). Jobs claimed less than `grace_s` ago are left alone.
        """
        outcomes: list[tuple[str, Reaped]] = []
        cutoff = time.time() - grace_s
        for member in self.r.zrangebyscore(self.k.running(), "-inf", cutoff):
            job_id = _text(member)
            res = [_text(v) for v in self._reap_runs(keys=[self.k.job(job_id), self.k.lease_prefix(job_id),
                                                           self.k.running()],
                                                     args=[self.max_attempts, job_id, time.time(), grace_s])]
            for reply, run in zip(res[::2], res[1::2]):
                outcome = Reaped(reply)
                outcomes.append((job_id, outcome))
                if outcome is Reaped.REQUEUED:
                    self.add_event(job_id, "status", {"status": self._status(job_id), "run": int(run),
                                                      "reason": "worker lost; run requeued"})
        return outcomes

    def _status(self, job_id: str) -> str | None:
        return _text(self.r.hget(self.k.job(job_id), "status"))


def _text(value: Any) -> Any:
    return value.decode() if isinstance(value, bytes) else value


def store_from_settings(settings: Settings, *, ride_out_s: float = 0) -> JobStore:
    """The JobStore a process uses: one connection pool per process, configured from LRRT_* settings.

    With `ride_out_s`, every command that meets a lost connection or a timeout is retried with
    exponential backoff (0.4 s doubling up to 5 s) for about that long, so a Redis restart is a pause,
    not an error: the worker passes `LEASE_TTL_S`, as long as a run's lease outlives an outage.
    """
    retrying: dict[str, Any] = {"retry": _retry_for(ride_out_s), "retry_on_error": [redis.ConnectionError,
                                                                                   redis.TimeoutError]} if ride_out_s else {}
    client = redis.Redis.from_url(settings.redis_url, health_check_interval=30, socket_timeout=30, **retrying)
    return JobStore(
        client,
        Keys(settings.key_prefix),
        result_ttl_s=settings.result_ttl_s,
        max_redeliveries=settings.max_redeliveries,
    )


def _retry_for(seconds: float) -> Retry:
    """A retry policy whose backoff adds up to at least `seconds`."""
    backoff = ExponentialBackoff(cap=5.0, base=0.2)
    retries, waited = 0, 0.0
    while waited < seconds:
        retries += 1
        waited += backoff.compute(retries)
    return Retry(backoff, retries)
