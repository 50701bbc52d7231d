"""Uploads' records (datasets, weights): who owns each one and what it holds (`service.datasets` keeps
the files). Listing and tenant checks read these, never a file. One class serves every kind; the kind
names its record key and its per-tenant index (`lrrt.store.keys.Keys`)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import cast

import redis

from lrrt.store.keys import Keys

#: (keys, id or tenant) -> the Redis key: `Keys.dataset` / `Keys.tenant_datasets` and their twins.
KeyOf = Callable[[Keys, str], str]


class UploadRecords:
    """Needs a client made with `decode_responses=True`: records come back as `str` fields."""

    def __init__(self, client: redis.Redis, keys: Keys, *, record_key: KeyOf, index_key: KeyOf) -> None:
        self._r = client
        self._k = keys
        self._record = record_key
        self._index = index_key

    def add(self, upload_id: str, tenant: str, fields: dict[str, str]) -> None:
        """Store the record and list it under its tenant, in one transaction."""
        pipe = self._r.pipeline(transaction=True)
        pipe.hset(self._record(self._k, upload_id), mapping={k: v for k, v in fields.items()})
        pipe.zadd(self._index(self._k, tenant), {upload_id: time.time()})
        pipe.execute()

    def get(self, upload_id: str) -> dict[str, str]:
        """The record's fields; empty when unknown."""
        return cast(dict[str, str], self._r.hgetall(self._record(self._k, upload_id)))

    def page(self, tenant: str, *, page_size: int | None, page_token: str | None = None) -> tuple[list[str], str | None]:
        """The tenant's ids newest first, as jobs are listed: the token is the created-timestamp score to
        continue below; no `page_size` lists them all."""
        cursor = f"({page_token}" if page_token else "+inf"
        index = self._index(self._k, tenant)
        batch = cast(list[tuple[str, float]],
                     self._r.zrevrangebyscore(index, cursor, "-inf", withscores=True) if page_size is None else
                     self._r.zrevrangebyscore(index, cursor, "-inf", start=0, num=page_size + 1, withscores=True))
        token = None
        if page_size is not None and len(batch) > page_size:
            batch = batch[:page_size]
            token = repr(batch[-1][1])
        return [upload_id for upload_id, _ in batch], token

    def delete(self, upload_id: str, tenant: str) -> None:
        pipe = self._r.pipeline(transaction=True)
        pipe.delete(self._record(self._k, upload_id))
        pipe.zrem(self._index(self._k, tenant), upload_id)
        pipe.execute()
