"""Uploads (datasets, weights): the file under `<data_root>/<kind's folder>/` plus its metadata in Redis.

The worker resolves `dataset:<id>` and `weights:<id>` to their files on its own, so the file path is
the contract between the two; the Redis hash records who owns the upload (tenant scoping at
submission and on every upload route) and what it holds, so listing never opens a file. One
`UploadStore` serves every kind; an `UploadKind` says where its files and keys live and which of
its metadata fields are JSON.
"""

from __future__ import annotations

import builtins
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis

from lrrt.store.jobs import new_id, now_iso
from lrrt.store.keys import Keys
from lrrt.store.uploads import UploadRecords
from lrrt.vetting import weights as weights_refs
from lrrt.vetting.datasets import is_id, upload_path


@dataclass(frozen=True)
class UploadKind:
    """Where one kind of upload lives: its uri scheme, its file, its Redis keys and its JSON fields."""

    scheme: str
    path: Callable[[Path, str], Path]
    record_key: Callable[[Keys, str], str]
    index_key: Callable[[Keys, str], str]
    json_fields: tuple[str, ...] = ()


DATASETS = UploadKind("dataset", upload_path, Keys.dataset, Keys.tenant_datasets, ("shapes", "dtypes"))
WEIGHTS = UploadKind("weights", weights_refs.upload_path, Keys.weights, Keys.tenant_weights, ("variables",))


class UploadStore:
    """Needs a client made with `decode_responses=True`."""

    def __init__(self, client: redis.Redis, keys: Keys, data_root: Path, kind: UploadKind) -> None:
        self.records = UploadRecords(client, keys, record_key=kind.record_key, index_key=kind.index_key)
        self.root = data_root
        self.kind = kind
        self.dir = kind.path(data_root, "x").parent

    def new_id(self) -> str:
        return new_id()

    def path(self, upload_id: str) -> Path:
        """Where the worker will look for `<scheme>:<id>`."""
        return self.kind.path(self.root, upload_id)

    def staging_path(self, upload_id: str) -> Path:
        """An upload being received: same directory as the final file, so publishing it is one rename,
        and a dot-name the worker never resolves."""
        return self.dir / f".{upload_id}.upload"

    def add(self, upload_id: str, tenant: str, staged: Path, *, filename: str | None, **fields: Any) -> dict[str, Any]:
        """Publish a validated staged file and its metadata; if Redis fails, the file is removed again."""
        meta = {
            "id": upload_id,
            "tenant": tenant,
            "filename": filename or "",
            **{name: json.dumps(value) if name in self.kind.json_fields else value for name, value in fields.items()},
            "bytes": staged.stat().st_size,
            "created_at": now_iso(),
        }
        final = self.path(upload_id)
        staged.replace(final)
        try:
            self.records.add(upload_id, tenant, {k: str(v) for k, v in meta.items()})
        except BaseException:
            final.unlink(missing_ok=True)
            raise
        return self._decode(meta)

    def get(self, upload_id: str, tenant: str) -> dict[str, Any] | None:
        """The metadata, or None when unknown, malformed or another tenant's (callers answer 404 either way).

        Ids are checked before they become part of a Redis key or a file name."""
        if not is_id(upload_id):
            return None
        raw = self.records.get(upload_id)
        if not raw:
            return None
        return self._decode(raw) if raw.get("tenant") == tenant else None

    def list(self, tenant: str) -> list[dict[str, Any]]:
        """The tenant's uploads of this kind, newest first."""
        return self.page(tenant, page_size=None)[0]

    def page(self, tenant: str, *, page_size: int | None,
             page_token: str | None = None) -> tuple[builtins.list[dict[str, Any]], str | None]:
        """Newest first, as jobs are listed (`UploadRecords.page`)."""
        ids, token = self.records.page(tenant, page_size=page_size, page_token=page_token)
        return [meta for meta in (self.get(i, tenant) for i in ids) if meta is not None], token

    def delete(self, upload_id: str, tenant: str) -> None:
        self.records.delete(upload_id, tenant)
        self.path(upload_id).unlink(missing_ok=True)

    def _decode(self, meta: dict[str, Any]) -> dict[str, Any]:
        decoded = {name: json.loads(value) if name in self.kind.json_fields else value for name, value in meta.items()
                   if name not in ("tenant", "id", "filename", "bytes", "created_at")}
        return {
            "id": meta["id"],
            "uri": f"{self.kind.scheme}:{meta['id']}",
            "filename": meta.get("filename") or None,
            **decoded,
            "bytes": int(meta["bytes"]),
            "created_at": meta["created_at"],
        }


class DatasetStore(UploadStore):
    """Uploaded `.npz` datasets (`dataset:<id>`)."""

    def __init__(self, client: redis.Redis, keys: Keys, data_root: Path) -> None:
        super().__init__(client, keys, data_root, DATASETS)


class WeightsStore(UploadStore):
    """Uploaded Keras 3 `.weights.h5` files (`weights:<id>`)."""

    def __init__(self, client: redis.Redis, keys: Keys, data_root: Path) -> None:
        super().__init__(client, keys, data_root, WEIGHTS)
