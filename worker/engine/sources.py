"""Datasets in object storage (`s3://`, `gs://`) and in tables and image folders: read through fsspec,
only as far as the sweep needs, into the `Arrays` the engine trains on.

What is read: with `dataset.max_samples`, the rows (or image files) the job uses are drawn from the
job's seed, the same for every arm, seed and worker of the job: `needed_rows` of them, enough that the
validation split and `max_samples` in `prepare` keep every row they want. Parquet draws whole row groups
(at least MIN_ROW_GROUPS, until they hold the rows) and the rows within them, reading only those row
groups and only the named columns; CSV is read in order until enough rows are in
(a prefix of the table, never the rest); an image folder reads only the drawn files. Without
`max_samples` the whole table is read, within `max_dataset_bytes`.

Untrusted input: a listing over `max_object_keys`, a table claiming more than `max_table_rows`, a CSV
line over `max_csv_line_bytes`, an image over `max_image_pixels` (checked from its header, before it is
decoded), truncated or corrupt files and non-UTF-8 names are each a DatasetError or CapExceeded that
names the object. Images stay uint8 until `prepare` scales them (`normalize`).

A worker-local disk cache (`object_cache_dir`, at most `object_cache_bytes`) keeps the arrays a job read,
keyed by the objects' ETags and by what was drawn, so the runs of one job fanned out on one host fetch once.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import io
import json
import math
import os
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, cast

import numpy as np

from lrrt.images import decode_image
from lrrt.objectstore import filesystem, store_errors
from lrrt.problems import CapExceeded, DatasetError
from lrrt.settings import Settings
from lrrt.spec import DatasetRef
from lrrt.tables import columns_to_arrays
from lrrt.vetting.datasets import array_groups
from lrrt.vetting.object_check import Layout, check_columns_for, local_layout, resolve_layout
from lrrt.vetting.objects import column_names, parse_object_uri

CACHE_VERSION = 1


def needed_rows(ref: DatasetRef) -> int | None:
    """Rows to draw so that `prepare`'s split and `max_samples` keep all they want; None: all of them."""
    if ref.max_samples is None:
        return None
    return math.ceil(ref.max_samples / (1.0 - ref.validation_split)) + 1


def draw(total: int, n: int | None, seed: int) -> np.ndarray | None:
    """Sorted row indices drawn from the job's seed, or None for every row."""
    if n is None or n >= total:
        return None
    return np.sort(np.random.default_rng([seed, 0x5EED]).choice(total, n, replace=False))


def load_object(ref: DatasetRef, settings: Settings, *, inputs: Sequence[Any], seed: int) -> Any:
    """The `Arrays` of an `s3://` or `gs://` reference (`inputs`: the model's TensorSpecs, for images)."""
    obj = parse_object_uri(ref.uri)
    fs = filesystem(obj.scheme, settings)
    layout = resolve_layout(fs, obj, ref, settings)
    return load_layout(fs, layout, ref, settings, inputs=inputs, seed=seed)


def load_file(ref: DatasetRef, data_root: Path, settings: Settings, *, inputs: Sequence[Any], seed: int) -> Any:
    """The `Arrays` of a `file:` table, folder of shards or `.npy` arrays, or image folder under the data root:
    fsspec's local filesystem through the same layout rules and readers as a store's."""
    fs, layout = local_layout(data_root, ref.uri.removeprefix("file:"), ref, settings)
    return load_layout(fs, layout, ref, settings, inputs=inputs, seed=seed)


def load_layout(fs: Any, layout: Layout, ref: DatasetRef, settings: Settings, *, inputs: Sequence[Any], seed: int) -> Any:
    """The arrays of a resolved layout, from the worker-local cache when this host read them before."""
    check_columns_for(ref, layout.format)
    target = image_target(inputs) if layout.format == "image_folder" else None
    n = needed_rows(ref)
    key = hashlib.sha256(json.dumps([CACHE_VERSION, layout.obj.uri, layout.format, ref.columns, layout.version,
                                     n, seed if n is not None else None, target], sort_keys=True).encode()).hexdigest()
    with _cached(settings, key) as (hit, store):
        if hit is not None:
            return hit
        reader = {"npz": _npz, "npy": _npy, "parquet": _parquet, "csv": _csv, "image_folder": _images}[layout.format]
        arrays = reader(fs, layout, ref, settings, n=n, seed=seed, target=cast(Any, target))
        if arrays.nbytes > settings.max_dataset_bytes:
            raise CapExceeded(f"{ref.uri[:200]} gives {arrays.nbytes} bytes of arrays; the limit is "
                              f"{settings.max_dataset_bytes}: set dataset.max_samples", cap="max_dataset_bytes",
                              limit=settings.max_dataset_bytes, value=arrays.nbytes)
        store(arrays)
        return arrays


def _uri(layout: Layout, item: dict[str, Any]) -> str:
    return f"{layout.obj.uri}{item['name']}" if layout.obj.is_prefix else layout.obj.uri


def _fetch(fs: Any, layout: Layout, item: dict[str, Any], settings: Settings) -> bytes:
    uri = _uri(layout, item)
    if item["size"] > settings.max_dataset_bytes:
        raise CapExceeded(f"{uri[:200]} is {item['size']} bytes; the limit is {settings.max_dataset_bytes}",
                          cap="max_dataset_bytes", limit=settings.max_dataset_bytes, value=item["size"])
    with store_errors(uri):
        return bytes(fs.cat_file(layout.path(item)))


# --------------------------------------------------------------------------- arrays


def _npz(fs: Any, layout: Layout, ref: DatasetRef, settings: Settings, **_: Any) -> Any:
    from worker.engine.data import read_npz

    body = _fetch(fs, layout, layout.files[0], settings)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / layout.files[0]["name"]
        path.write_bytes(body)
        return read_npz(path, max_bytes=settings.max_dataset_bytes)


def _npy(fs: Any, layout: Layout, ref: DatasetRef, settings: Settings, *, n: int | None, seed: int, **_: Any) -> Any:
    """x.npy, y.npy (or x_<input>.npy ...) under a prefix, read with np.load and no pickles."""
    from worker.engine.data import Arrays

    groups = array_groups([f["name"][:-4] for f in layout.files])
    by_name = {f["name"][:-4]: f for f in layout.files}
    loaded: dict[str, Any] = {}
    for group, members in groups.items():
        if not members:
            continue
        arrays = {}
        for key, member in members.items():
            item = by_name[member]
            try:
                arrays[key] = np.load(io.BytesIO(_fetch(fs, layout, item, settings)), allow_pickle=False)
            except (ValueError, OSError, EOFError) as exc:
                raise DatasetError(f"{_uri(layout, item)[:200]} is not a readable .npy of numbers (no pickles): "
                                   f"{str(exc)[:200]}") from None
        loaded[group] = arrays[None] if None in arrays else arrays
    return Arrays(**loaded)


# --------------------------------------------------------------------------- tables


def _columns_to_arrays(table: Any, ref: DatasetRef, uri: str) -> Any:
    """A PyArrow table's columns as the `x`/`y` arrays `dataset.columns` names."""
    from worker.engine.data import Arrays

    assert ref.columns is not None
    return Arrays(**columns_to_arrays(table, ref.columns, uri))


def _parquet(fs: Any, layout: Layout, ref: DatasetRef, settings: Settings, *, n: int | None, seed: int, **_: Any) -> Any:
    """Only the row groups drawn for the job (`pick_row_groups`), and only the named columns."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    assert ref.columns is not None
    wanted = column_names(ref.columns)
    files = []
    with contextlib.ExitStack() as stack:
        for item in layout.files:
            uri = _uri(layout, item)
            with store_errors(uri):
                handle = stack.enter_context(fs.open(layout.path(item), "rb", **_exact_reads(fs)))
            try:
                pf = pq.ParquetFile(handle)
            except Exception as exc:  # ArrowInvalid, OSError: not Parquet, truncated footer
                raise DatasetError(f"{uri[:200]} is not a readable Parquet file: {str(exc)[:200]}") from None
            files.append((uri, pf, [pf.metadata.row_group(i).num_rows for i in range(pf.metadata.num_row_groups)]))
        total = sum(sum(groups) for _, _, groups in files)
        if total > settings.max_table_rows:
            raise CapExceeded(f"{ref.uri[:200]} claims {total} rows; the limit is {settings.max_table_rows}",
                              cap="max_table_rows", limit=settings.max_table_rows, value=total)
        groups = [(f, index, count) for f, (_, _, counts) in enumerate(files) for index, count in enumerate(counts)]
        picked = pick_row_groups([count for _, _, count in groups], n, seed)
        tables = []
        for g in picked:
            f, index, count = groups[g]
            uri, pf, _counts = files[f]
            try:
                part = pf.read_row_group(index, columns=wanted)
            except (OSError, pa.ArrowException) as exc:
                raise DatasetError(f"{uri[:200]}: row group {index} could not be read (truncated or corrupt): "
                                   f"{str(exc)[:200]}") from None
            if part.num_rows != count:
                raise DatasetError(f"{uri[:200]}: row group {index} holds {part.num_rows} rows, not the {count} its "
                                   "metadata claims")
            tables.append(part)
        table = _one_table(tables, ref.uri)
    rows = draw(table.num_rows, n, seed)  # rows drawn within the drawn row groups
    return _columns_to_arrays(table if rows is None else table.take(pa.array(rows)), ref, ref.uri)


def _one_table(tables: list[Any], uri: str) -> Any:
    """The shards' tables as one, for Parquet and CSV alike: shards whose columns differ cannot be stacked."""
    import pyarrow as pa

    if not tables:
        raise DatasetError(f"{uri[:200]} holds no rows")
    try:
        return pa.concat_tables(tables)
    except pa.ArrowException as exc:
        raise DatasetError(f"{uri[:200]}: the shards' columns differ ({str(exc)[:200]}); give every shard one schema") from None


def _exact_reads(fs: Any) -> dict[str, Any]:
    """Open options that fetch exactly the byte ranges PyArrow asks for (its column chunks), not s3fs's
    default read-ahead blocks around each of them."""
    return {} if "file" in (fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,)) else {"cache_type": "none"}


#: Fewest row groups a sampled Parquet read draws (when the table has them): rows from several parts of
#: the table, not one run of neighbours, at a fraction of the whole table's bytes.
MIN_ROW_GROUPS = 4


def pick_row_groups(counts: list[int], n: int | None, seed: int) -> list[int]:
    """Indices (in table order) of the row groups a job reads: all of them without a sample size, else row
    groups drawn from the job's seed until they hold `n` rows and number at least MIN_ROW_GROUPS. Reading
    whole row groups is what Parquet allows; drawing rows uniformly over a large table would touch every
    row group and read it all."""
    if n is None or n >= sum(counts):
        return list(range(len(counts)))
    order = np.random.default_rng([seed, 0x6209]).permutation(len(counts))
    chosen, held = [], 0
    for g in order:
        chosen.append(int(g))
        held += counts[g]
        if held >= n and len(chosen) >= min(MIN_ROW_GROUPS, len(counts)):
            break
    return sorted(chosen)


def _csv(fs: Any, layout: Layout, ref: DatasetRef, settings: Settings, *, n: int | None, seed: int, **_: Any) -> Any:
    """Shards in key order, read in blocks of `max_csv_line_bytes` and stopped once `n` data lines are in
    (never the rest of the object); a line longer than the block is refused before it is buffered whole."""
    import pyarrow as pa
    import pyarrow.csv as pcsv

    assert ref.columns is not None
    wanted = column_names(ref.columns)
    block, limit = settings.max_csv_line_bytes, settings.max_table_rows
    tables, rows = [], 0
    for item in layout.files:
        uri = _uri(layout, item)
        chunks: list[bytes] = []
        lines, line_start, size = 0, 0, 0  # complete lines so far, where the current line began, bytes so far
        with store_errors(uri), fs.open(layout.path(item), "rb") as handle:
            while True:
                chunk = handle.read(block)
                if not chunk:
                    break
                chunks.append(chunk)
                for pos in _newlines(chunk):
                    lines += 1
                    line_start = size + pos + 1
                size += len(chunk)
                if size - line_start > block:
                    raise CapExceeded(f"{uri[:200]} has a line longer than {block} bytes", cap="max_csv_line_bytes",
                                      limit=block, value=f">{block}")
                if lines - 1 > limit:
                    raise CapExceeded(f"{ref.uri[:200]} holds more than {limit} rows", cap="max_table_rows",
                                      limit=limit, value=f">{limit}")
                if n is not None and lines - 1 >= n - rows:
                    break
        body = b"".join(chunks)
        if n is not None and lines - 1 >= n - rows:  # cut after the n-th data line
            ends = [i for c in [body] for i in _newlines(c)]
            body = body[: ends[n - rows] + 1]
        try:
            part = pcsv.read_csv(io.BytesIO(body), read_options=pcsv.ReadOptions(use_threads=False),
                                 convert_options=pcsv.ConvertOptions(include_columns=wanted))
        except (UnicodeDecodeError, pa.ArrowException) as exc:
            raise DatasetError(f"{uri[:200]} is not a readable UTF-8 CSV table with columns {wanted[:20]}: "
                               f"{str(exc)[:200]}") from None
        tables.append(part)
        rows += part.num_rows
        if n is not None and rows >= n:
            break
    if not rows:
        raise DatasetError(f"{ref.uri[:200]} holds no rows")
    return _columns_to_arrays(_one_table(tables, ref.uri), ref, ref.uri)


def _newlines(chunk: bytes) -> list[int]:
    return [i for i in range(len(chunk)) if chunk[i] == 10] if len(chunk) < 64 else \
        list(np.flatnonzero(np.frombuffer(chunk, dtype=np.uint8) == 10))


# --------------------------------------------------------------------------- images


def image_target(inputs: Sequence[Any]) -> tuple[int, int, int]:
    """(height, width, channels) of the model's one image input."""
    if len(inputs) != 1:
        raise DatasetError(f"an image folder feeds a model with one input; this one has {len(inputs)}")
    shape = tuple(inputs[0].shape[1:])
    if len(shape) != 3 or any(d is None for d in shape) or shape[2] not in (1, 3, 4):
        raise DatasetError(f"an image folder needs the model's input to be (height, width, channels) with fixed sizes "
                           f"and 1, 3 or 4 channels; it is {list(shape)}: set the Input's shape")
    return int(shape[0]), int(shape[1]), int(shape[2])


def _images(fs: Any, layout: Layout, ref: DatasetRef, settings: Settings, *, n: int | None, seed: int,
            target: tuple[int, int, int], **_: Any) -> Any:
    """The drawn image files, labelled by their class subfolder's index in the sorted class names."""
    from PIL import Image

    from worker.engine.data import Arrays

    Image.MAX_IMAGE_PIXELS = settings.max_image_pixels
    picked = draw(len(layout.files), n, seed)
    items = layout.files if picked is None else [layout.files[i] for i in picked]
    index = {name: i for i, name in enumerate(layout.classes)}
    paths = [layout.path(item) for item in items]
    with store_errors(layout.obj.uri):
        bodies = fs.cat(paths, on_error="return") if paths else {}
    x = np.empty((len(items), *target), dtype=np.uint8)
    y = np.empty(len(items), dtype=np.int64)
    for row, (item, path) in enumerate(zip(items, paths)):
        body = bodies.get(path) if isinstance(bodies, dict) else None
        if isinstance(body, BaseException) or body is None:
            with store_errors(_uri(layout, item)):
                raise body if isinstance(body, BaseException) else FileNotFoundError(path)
        if len(body) > settings.max_dataset_bytes:
            raise CapExceeded(f"{_uri(layout, item)[:200]} is {len(body)} bytes", cap="max_dataset_bytes",
                              limit=settings.max_dataset_bytes, value=len(body))
        x[row] = decode_image(body, _uri(layout, item)[:200], target, settings.max_image_pixels)
        y[row] = index[item["name"].split("/", 1)[0]]
    return Arrays(x, y, classes=tuple(layout.classes))


# --------------------------------------------------------------------------- worker-local cache


def cache_dir(settings: Settings) -> Path:
    return Path(settings.object_cache_dir or Path(tempfile.gettempdir()) / "lrrt-object-cache")


@contextlib.contextmanager
def _cached(settings: Settings, key: str) -> Iterator[tuple[Any, Any]]:
    """(arrays, None) on a hit; (None, store) on a miss, holding the key's lock so that the runs of a job on
    this host wait for the first one's read instead of fetching the same objects again."""
    from worker.engine.data import Arrays

    if settings.object_cache_bytes <= 0:
        yield None, lambda arrays: None
        return
    root = cache_dir(settings)
    root.mkdir(parents=True, exist_ok=True)
    path = root / f"{key}.npz"
    with (root / f"{key}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if path.is_file():
                os.utime(path)
                with np.load(path, allow_pickle=False) as npz:
                    loaded = {k: npz[k] for k in npz.files}
                classes = loaded.pop("__classes__", None)
                groups: dict[str, Any] = {}
                for member, array in loaded.items():
                    group, _, name = member.partition("/")
                    if name:
                        groups.setdefault(group, {})[name] = array
                    else:
                        groups[group] = array
                yield Arrays(**groups, classes=None if classes is None else tuple(str(c) for c in classes)), None
                return

            def store(arrays: Any) -> None:
                members: dict[str, np.ndarray] = {}
                for group in ("x", "y", "x_val", "y_val"):
                    value = getattr(arrays, group)
                    if isinstance(value, dict):
                        members.update({f"{group}/{k}": v for k, v in value.items()})
                    elif value is not None:
                        members[group] = value
                if arrays.classes is not None:
                    members["__classes__"] = np.asarray(arrays.classes, dtype=str)
                if arrays.nbytes > settings.object_cache_bytes:
                    return
                tmp = root / f"{key}.{os.getpid()}.tmp.npz"
                np.savez(tmp, **members)  # type: ignore[arg-type]
                os.replace(tmp, path)
                _evict(root, settings.object_cache_bytes)

            yield None, store
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _evict(root: Path, limit: int) -> None:
    """Drop the least recently used entries until the cache holds at most `limit` bytes."""
    entries = sorted((p.stat().st_mtime, p.stat().st_size, p) for p in root.glob("*.npz") if p.is_file())
    total = sum(size for _, size, _ in entries)
    for _, size, path in entries:
        if total <= limit:
            break
        with contextlib.suppress(OSError):
            path.unlink()
            path.with_suffix(".lock").unlink(missing_ok=True)
            total -= size
