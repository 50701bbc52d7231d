"""What an object-storage dataset holds, found cheaply: its format, its files (shards, `.npy` arrays or
images by class) with their ETags, a table's columns and row count from its metadata. The API runs
`check_object_dataset` at submission (after the grant, which asks no store); the worker resolves the same
`Layout` before it reads, so both agree on the files, their order and the class names.

A `file:` dataset under the data root is the same thing on fsspec's local filesystem (`local_layout`):
the same formats, layout rules, checks and readers, after the `file:` path rules.
"""

from __future__ import annotations

import csv
import io
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lrrt.objectstore import etag_of, filesystem, info, list_prefix, store_errors
from lrrt.problems import CapExceeded, DatasetError, DatasetInvalid
from lrrt.settings import Settings
from lrrt.spec import DatasetRef
from lrrt.vetting.datasets import UPLOAD_DIRS, array_groups, resolve_file
from lrrt.vetting.objects import (
    EXTENSIONS,
    IMAGE_EXTENSIONS,
    ObjectUri,
    check_granted,
    column_groups,
    column_names,
    format_of,
    format_of_listing,
)


@dataclass
class Layout:
    """The files a reference reads: `files` are (key relative to the prefix, or the key itself, size, etag);
    `classes` the image folder's class names in label order (sorted, as Keras's
    `image_dataset_from_directory` sorts them)."""

    obj: ObjectUri
    format: str
    files: list[dict[str, Any]]
    classes: list[str] = field(default_factory=list)

    def path(self, item: dict[str, Any]) -> str:
        """fsspec path of one file."""
        return f"{self.obj.path}/{item['name']}" if self.obj.is_prefix else self.obj.path

    @property
    def version(self) -> str:
        """One marker of every file's version: a cache key that changes when any object changes."""
        return ";".join(f"{f['name']}={f['etag']}" for f in self.files)


@dataclass(frozen=True)
class FileUri(ObjectUri):
    """A `file:` dataset as an `ObjectUri` of fsspec's local filesystem: `bucket` is the resolved data root,
    `key` the path below it (ending in `/` for a folder). It is named `file:<key>` in every message, never
    by the server's own path."""

    @property
    def uri(self) -> str:
        return f"file:{self.key}"


def local_layout(data_root: Path, relative: str, ref: DatasetRef, settings: Settings) -> tuple[Any, Layout]:
    """fsspec's local filesystem and the `Layout` of `file:<relative>`: the `file:` path rules
    (`lrrt.vetting.datasets.resolve_file`), then, for a folder, no symlinks anywhere inside it (a listing
    follows them out of the data root or into an upload) and no uploads folder below it, then the same
    layout rules as a store's prefix."""
    import fsspec

    resolved = resolve_file(data_root, relative)
    root = Path(data_root).resolve()
    key = str(resolved.relative_to(root))
    if relative.endswith("/"):
        if any((root / folder).is_relative_to(resolved) for folder in UPLOAD_DIRS):
            raise DatasetInvalid(f"file:{relative[:120]} holds the uploads folders ({', '.join(UPLOAD_DIRS)}): name a "
                                 "folder below the data root that holds only the dataset")
        _no_links(resolved, relative, settings.max_object_keys)
        key = "" if key == "." else key + "/"
    obj = FileUri("file", str(root), key)
    fs = fsspec.filesystem("file")
    return fs, resolve_layout(fs, obj, ref, settings)


def _no_links(folder: Path, relative: str, max_keys: int) -> None:
    seen = 0
    for top, dirs, files in os.walk(folder, followlinks=False):
        for name in (*dirs, *files):
            if os.path.islink(os.path.join(top, name)):
                raise DatasetInvalid(f"file:{relative[:120]} holds a symlink ({name[:80]!r}): copy the files into the "
                                     "folder instead")
        seen += len(files)
        if seen > max_keys:
            raise CapExceeded(f"file:{relative[:120]} holds more than {max_keys} files; the limit is {max_keys}",
                              cap="max_object_keys", limit=max_keys, value=f">{max_keys}")


def resolve_layout(fs: Any, obj: ObjectUri, ref: DatasetRef, settings: Settings) -> Layout:
    fmt = format_of(obj.uri, ref.format)
    if not obj.is_prefix:
        assert fmt is not None  # format_of infers a file's format or refuses it
        if fmt == "image_folder":
            raise DatasetInvalid("an image folder is a prefix: end the uri with '/' (one subfolder per class below it)")
        if fmt == "npy":
            raise DatasetInvalid("one .npy holds one array: point at the prefix (ending in '/') that holds x.npy and "
                                 "y.npy (or x_<input>.npy, y_<output>.npy)")
        meta = info(fs, obj)
        return Layout(obj, fmt, [{"name": obj.key.rsplit("/", 1)[-1], "size": int(meta.get("size") or 0),
                                  "etag": etag_of(meta)}])
    items = list_prefix(fs, obj, max_keys=settings.max_object_keys)
    for item in items:
        if not _printable(item["name"]):
            raise DatasetError(f"{obj.uri[:200]} holds a key that is not printable UTF-8 ({item['name'][:80]!r}); "
                               "rename it", uri=obj.uri[:200])
    fmt = fmt or format_of_listing(obj.uri, [i["name"] for i in items])
    if fmt == "image_folder":
        images = [i for i in items if "/" in i["name"] and i["name"].lower().endswith(IMAGE_EXTENSIONS)]
        classes = sorted({i["name"].split("/", 1)[0] for i in images})
        if len(classes) < 1 or not images:
            raise DatasetInvalid(f"{obj.uri[:200]} holds no images in class subfolders: put each class's JPEG, PNG or "
                                 "WebP files in a subfolder named after the class")
        return Layout(obj, fmt, images, classes)
    wanted = [ext for ext, f in EXTENSIONS.items() if f == fmt]
    files = [i for i in items if "/" not in i["name"] and any(i["name"].lower().endswith(e) for e in wanted)]
    if not files:
        raise DatasetInvalid(f"{obj.uri[:200]} holds no {'/'.join(wanted)} files directly under it")
    if fmt == "npz" and len(files) > 1:
        raise DatasetInvalid(f"{obj.uri[:200]} holds {len(files)} .npz files: point at one of them")
    if fmt == "npy":
        array_groups([f["name"][:-4] for f in files])  # x.npy, y.npy, x_<input>.npy, ...: the .npz naming rules
    return Layout(obj, fmt, files)


def check_object_dataset(ref: DatasetRef, tenant: str, settings: Settings, config: dict[str, Any] | None = None) -> Layout:
    """The API's checks of an object-storage reference: granted to `tenant` (before any store is asked),
    the object or prefix exists, a table's columns exist and its metadata's row count is within the cap,
    the columns fit the model's inputs and outputs. Raises DatasetError subclasses (422s)."""
    obj = check_granted(ref.uri, tenant, settings.data_prefixes)
    check_columns_for(ref, format_of(ref.uri, ref.format))
    fs = filesystem(obj.scheme, settings)
    return check_layout(fs, resolve_layout(fs, obj, ref, settings), ref, settings, config)


def check_layout(fs: Any, layout: Layout, ref: DatasetRef, settings: Settings, config: dict[str, Any] | None) -> Layout:
    """What the API checks of a resolved layout, in a store or under the data root: a table's columns exist
    and its metadata's row count is within the cap, the columns and an image folder's classes fit the model."""
    check_columns_for(ref, layout.format)
    if layout.format in ("parquet", "csv"):
        assert ref.columns is not None
        have, rows = (parquet_schema(fs, layout, settings) if layout.format == "parquet"
                      else csv_header(fs, layout, settings))
        missing = [c for c in column_names(ref.columns) if c not in have]
        if missing:
            raise DatasetInvalid(f"{ref.uri[:200]} has no column(s) {missing}; its columns are {have[:50]}",
                                 missing=missing, columns=have[:200])
        if rows is not None and rows > settings.max_table_rows:
            raise CapExceeded(f"{ref.uri[:200]} claims {rows} rows; the limit is {settings.max_table_rows}",
                              cap="max_table_rows", limit=settings.max_table_rows, value=rows)
        if config is not None:
            check_columns_fit(ref.columns, config)
    if layout.format == "image_folder" and config is not None:
        check_classes_fit(ref.uri, layout.classes, config)
    return layout


def check_classes_fit(uri: str, classes: list[str], config: dict[str, Any]) -> None:
    """An image folder feeds a model with one (height, width, channels) input of fixed sizes, and its
    classes must match the output's units (or two classes a one-unit sigmoid output)."""
    from lrrt.vetting.vet import model_io

    inputs, outputs = model_io(config)
    if len(inputs) != 1 or len(outputs) != 1:
        raise DatasetInvalid(f"an image folder feeds a model with one input and one output; this one has {len(inputs)} "
                             f"and {len(outputs)}")
    shape = inputs[0][1]
    if isinstance(shape, list) and (len(shape) != 4 or any(not isinstance(d, int) for d in shape[1:])
                                    or shape[3] not in (1, 3, 4)):
        raise DatasetInvalid(f"an image folder needs the model's input to be (height, width, channels) with fixed sizes "
                             f"and 1, 3 or 4 channels; it is {shape[1:]}: set the Input's shape")
    layers = {layer.get("config", {}).get("name"): layer for layer in (config.get("config") or {}).get("layers", [])
              if isinstance(layer, dict)}
    units = layers.get(outputs[0], {}).get("config", {}).get("units")
    if isinstance(units, int) and units != len(classes) and not (units == 1 and len(classes) == 2):
        raise DatasetInvalid(f"{uri[:200]} has {len(classes)} classes {classes[:20]} but the model's output "
                             f"{outputs[0]!r} has {units} units: give it one unit per class", classes=classes[:200])


def check_columns_for(ref: DatasetRef, fmt: str | None) -> None:
    if fmt in ("parquet", "csv") and not ref.columns:
        raise DatasetInvalid(f"a {fmt} table needs dataset.columns naming the inputs and the target, e.g. "
                             '{"x": ["f1", "f2"], "y": "label"}')
    if fmt is not None and fmt not in ("parquet", "csv") and ref.columns:
        raise DatasetInvalid(f"dataset.columns applies to parquet and csv tables, not to {fmt}; drop it")
    if ref.columns:
        column_groups(ref.columns)


def check_columns_fit(columns: dict[str, Any], config: dict[str, Any]) -> None:
    """`x_<input>`/`y_<output>` keys must name exactly the model's inputs and outputs when it has several."""
    from lrrt.vetting.vet import model_io

    inputs, outputs = model_io(config)
    groups = column_groups(columns)
    for group, wanted in (("x", [name for name, _ in inputs]), ("y", outputs)):
        have = groups[group]
        if len(wanted) > 1 and set(have) != set(wanted):
            raise DatasetInvalid(f"the model has {'inputs' if group == 'x' else 'outputs'} {wanted}: name one column "
                                 f"(or list) per each in dataset.columns as " + ", ".join(f"{group}_{n}" for n in wanted),
                                 expected=[f"{group}_{n}" for n in wanted])
        if len(wanted) == 1 and len(have) > 1:
            raise DatasetInvalid(f"the model has one {'input' if group == 'x' else 'output'} {wanted[0]!r} but "
                                 f"dataset.columns names {len(have)}: use {group!r}")


def parquet_schema(fs: Any, layout: Layout, settings: Settings) -> tuple[list[str], int]:
    """Column names of the first shard, and the rows every shard's footer claims (read from footers only)."""
    import pyarrow.parquet as pq

    names: list[str] = []
    rows = 0
    for n, item in enumerate(layout.files):
        uri = f"{layout.obj.uri}{item['name']}" if layout.obj.is_prefix else layout.obj.uri
        with store_errors(uri), fs.open(layout.path(item), "rb") as handle:
            try:
                meta = pq.ParquetFile(handle).metadata
            except Exception as exc:  # pyarrow's ArrowInvalid / OSError for a file that is not Parquet
                raise DatasetError(f"{uri[:200]} is not a readable Parquet file: {str(exc)[:200]}", uri=uri[:200]) from None
            if n == 0:
                names = [str(c) for c in meta.schema.to_arrow_schema().names]
            rows += int(meta.num_rows)
        if rows > settings.max_table_rows:
            break
    return names, rows


def csv_header(fs: Any, layout: Layout, settings: Settings) -> tuple[list[str], None]:
    """The first shard's header line, read up to `max_csv_line_bytes` and no further."""
    item = layout.files[0]
    uri = f"{layout.obj.uri}{item['name']}" if layout.obj.is_prefix else layout.obj.uri
    with store_errors(uri), fs.open(layout.path(item), "rb") as handle:
        head = handle.read(settings.max_csv_line_bytes + 1)
    line, newline, _ = head.partition(b"\n")
    if not newline and len(head) > settings.max_csv_line_bytes:
        raise CapExceeded(f"{uri[:200]}: the header line is longer than {settings.max_csv_line_bytes} bytes",
                          cap="max_csv_line_bytes", limit=settings.max_csv_line_bytes, value=f">{settings.max_csv_line_bytes}")
    try:
        text = line.decode("utf-8-sig").rstrip("\r")
    except UnicodeDecodeError:
        raise DatasetError(f"{uri[:200]}: the header is not UTF-8 text; save the CSV as UTF-8", uri=uri[:200]) from None
    return next(csv.reader(io.StringIO(text)), []), None


def _printable(name: str) -> bool:
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return name.isprintable()
