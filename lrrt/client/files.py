"""Local tables and image folders as arrays, for uploading: `Client.upload_table` reads a Parquet or CSV
file with PyArrow and `dataset.columns`' rules, `Client.upload_image_folder` decodes a folder (or a `.zip`
of one) with one subfolder per class, resized and kept uint8, classes in sorted order (as Keras's
`image_dataset_from_directory` orders them). What is uploaded is an `.npz` of `x` and `y`, checked by the
server like any other upload. A zip is read member by member in memory, never extracted, with its members'
sizes checked before they are read.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from lrrt.images import decode_image
from lrrt.problems import CapExceeded, DatasetError
from lrrt.tables import columns_to_arrays
from lrrt.vetting.objects import IMAGE_EXTENSIONS

#: Defaults for what a client decodes: the deployment's worker caps are the server's business.
MAX_IMAGE_PIXELS = 40_000_000
MAX_IMAGE_BYTES = 64 * 1024 * 1024
MAX_IMAGES = 100_000


def table_arrays(path: str | os.PathLike[str], columns: dict[str, Any]) -> dict[str, Any]:
    """{"x": ..., "y": ...} of a local `.parquet` or `.csv` file by `columns`."""
    path = Path(path)
    suffix = path.suffix.lower()
    try:
        if suffix in (".parquet", ".pq"):
            import pyarrow.parquet as pq

            table = pq.read_table(path)
        elif suffix == ".csv":
            import pyarrow.csv as pcsv

            table = pcsv.read_csv(path)
        else:
            raise DatasetError(f"{path.name}: upload_table reads .parquet and .csv files")
    except (OSError, ValueError) as exc:  # pyarrow's ArrowInvalid is a ValueError
        raise DatasetError(f"{path.name} could not be read as a table: {str(exc)[:200]}") from None
    return columns_to_arrays(table, columns, path.name)


def image_folder_arrays(path: str | os.PathLike[str], size: tuple[int, int], channels: int = 3, *,
                        max_pixels: int = MAX_IMAGE_PIXELS) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(x uint8 (n, height, width, channels), y class indices, class names) of a folder or a `.zip` of one:
    `<class>/<image>`, optionally below one top-level folder."""
    path = Path(path)
    target = (int(size[0]), int(size[1]), int(channels))
    entries: list[tuple[str, str, Any]] = []  # (class, name, reader)
    if path.is_dir():
        for file in sorted(p for p in path.rglob("*") if p.is_file()):
            parts = file.relative_to(path).parts
            if len(parts) == 2 and file.suffix.lower() in IMAGE_EXTENSIONS:
                entries.append((parts[0], str(file), file.read_bytes))
    elif zipfile.is_zipfile(path):
        archive = zipfile.ZipFile(path)
        infos = [i for i in archive.infolist() if not i.is_dir() and PurePosixPath(i.filename).suffix.lower() in IMAGE_EXTENSIONS]
        parts_of = {i.filename: PurePosixPath(i.filename).parts for i in infos}
        tops = {p[0] for p in parts_of.values() if len(p) == 3}
        strip = 1 if tops and len(tops) == 1 and all(len(p) == 3 for p in parts_of.values()) else 0
        for info in sorted(infos, key=lambda i: i.filename):
            parts = parts_of[info.filename][strip:]
            if len(parts) != 2 or ".." in parts:
                continue
            if info.file_size > MAX_IMAGE_BYTES:
                raise CapExceeded(f"{info.filename} expands to {info.file_size} bytes; the limit is {MAX_IMAGE_BYTES}",
                                  limit=MAX_IMAGE_BYTES, value=info.file_size)
            entries.append((parts[0], info.filename, lambda info=info: archive.read(info)))
    else:
        raise DatasetError(f"{path}: give a folder with one subfolder per class, or a .zip of one")
    if not entries:
        raise DatasetError(f"{path.name} holds no JPEG, PNG or WebP images in class subfolders")
    if len(entries) > MAX_IMAGES:
        raise CapExceeded(f"{path.name} holds {len(entries)} images; the limit is {MAX_IMAGES}", limit=MAX_IMAGES,
                          value=len(entries))
    classes = sorted({cls for cls, _, _ in entries})
    index = {name: i for i, name in enumerate(classes)}
    x = np.empty((len(entries), *target), dtype=np.uint8)
    y = np.empty(len(entries), dtype=np.int64)
    for row, (cls, name, read) in enumerate(entries):
        x[row] = decode_image(read(), name, target, max_pixels)
        y[row] = index[cls]
    return x, y, classes
