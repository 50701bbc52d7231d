"""Uploaded datasets: the `.npz` file under `<data_root>/datasets/` plus its metadata in Redis.

The worker resolves `dataset:<id>` to `<data_root>/datasets/<id>.npz` on its own, so the file path is
the contract between the two; the Redis hash records who owns the dataset (tenant scoping at
submission and on every dataset route) and what it holds, so listing never opens a file.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from lrrt.store.datasets import DatasetRecords
from lrrt.store.jobs import new_id, now_iso
from lrrt.vetting.datasets import is_id, upload_path


class DatasetStore:
    """The files under `data_root`, their records in `records`."""

    def __init__(self, records: DatasetRecords, data_root: Path) -> None:
        self.records = records
        self.root = data_root
        self.dir = upload_path(data_root, "x").parent

    def new_id(self) -> str:
        return new_id()

    def path(self, dataset_id: str) -> Path:
        """Where the worker will look for `dataset:<id>`."""
        return upload_path(self.root, dataset_id)

    def staging_path(self, dataset_id: str) -> Path:
        """An upload being received: same directory as the final file, so publishing it is one rename,
        and a dot-name the worker never resolves."""
        return self.dir / f".{dataset_id}.upload"

    def add(self, dataset_id: str, tenant: str, staged: Path, *, shapes: dict[str, list[int]],
            dtypes: dict[str, str], filename: str | None) -> dict[str, Any]:
        """Publish a validated staged file and its metadata; if Redis fails, the file is removed again."""
        meta = {
            "id": dataset_id,
            "tenant": tenant,
            "filename": filename or "",
            "shapes": json.dumps(shapes),
            "dtypes": json.dumps(dtypes),
            "bytes": staged.stat().st_size,
            "created_at": now_iso(),
        }
        final = self.path(dataset_id)
        staged.replace(final)
        try:
            self.records.add(dataset_id, tenant, {k: str(v) for k, v in meta.items()})
        except BaseException:
            final.unlink(missing_ok=True)
            raise
        return _decode(meta)

    def get(self, dataset_id: str, tenant: str) -> dict[str, Any] | None:
        """The metadata, or None when unknown, malformed or another tenant's (callers answer 404 either way).

        Ids are checked before they become part of a Redis key or a file name."""
        if not is_id(dataset_id):
            return None
        raw = self.records.get(dataset_id)
        if not raw:
            return None
        return _decode(raw) if raw.get("tenant") == tenant else None

    def list(self, tenant: str) -> list[dict[str, Any]]:
        """The tenant's datasets, newest first."""
        ids = self.records.ids(tenant)
        return [meta for meta in (self.get(i, tenant) for i in ids) if meta is not None]

    def delete(self, dataset_id: str, tenant: str) -> None:
        self.records.delete(dataset_id, tenant)
        self.path(dataset_id).unlink(missing_ok=True)


def _decode(meta: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": meta["id"],
        "uri": f"dataset:{meta['id']}",
        "filename": meta.get("filename") or None,
        "shapes": json.loads(meta["shapes"]),
        "dtypes": json.loads(meta["dtypes"]),
        "bytes": int(meta["bytes"]),
        "created_at": meta["created_at"],
    }
