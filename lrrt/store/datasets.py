"""Uploaded datasets' records: who owns each one and what it holds (`service.datasets.DatasetStore` keeps
the files). Listing and tenant checks read these, never a file."""

from __future__ import annotations

import time
from typing import cast

import redis

from lrrt.store.keys import Keys


class DatasetRecords:
    """Needs a client made with `decode_responses=True`: records come back as `str` fields."""

    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self._r = client
        self._k = keys

    def add(self, dataset_id: str, tenant: str, fields: dict[str, str]) -> None:
        """Store the record and list it under its tenant, in one transaction."""
        pipe = self._r.pipeline(transaction=True)
        pipe.hset(self._k.dataset(dataset_id), mapping={k: v for k, v in fields.items()})
        pipe.zadd(self._k.tenant_datasets(tenant), {dataset_id: time.time()})
        pipe.execute()

    def get(self, dataset_id: str) -> dict[str, str]:
        """The record's fields; empty when unknown."""
        return cast(dict[str, str], self._r.hgetall(self._k.dataset(dataset_id)))

    def ids(self, tenant: str) -> list[str]:
        """The tenant's dataset ids, newest first."""
        return cast(list[str], self._r.zrevrange(self._k.tenant_datasets(tenant), 0, -1))

    def delete(self, dataset_id: str, tenant: str) -> None:
        pipe = self._r.pipeline(transaction=True)
        pipe.delete(self._k.dataset(dataset_id))
        pipe.zrem(self._k.tenant_datasets(tenant), dataset_id)
        pipe.execute()
