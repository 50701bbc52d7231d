"""Receiving and validating an uploaded `.npz` with the zip and NumPy format readers only, never unpickling.

An upload is hostile until proven otherwise: it may be no zip at all, a zip bomb (tiny compressed,
huge declared size), an `.npy` whose header claims a shape far bigger than its data (NumPy would
allocate that much before noticing), a pickled object array, or arrays that cannot be a dataset.
So: copy with a byte cap, read the zip directory and check the declared sizes against the cap,
read each array's *header* (never its data into memory) and check dtype, shape and that the data size
matches, then stream every member once so the zip CRCs prove the bytes are intact. Nothing here
allocates more than a read buffer, whatever the file claims.
"""

from __future__ import annotations

import math
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

from lrrt.problems import DatasetError
from lrrt.vetting.datasets import USAGE, array_groups
from service.problems import ProblemError

#: bool, signed and unsigned integers, floats: what a model can train on.
NUMERIC_KINDS = frozenset("biuf")
_READ_CHUNK = 1 << 20
_HEADER_READERS = {
    (1, 0): np.lib.format.read_array_header_1_0,
    (2, 0): np.lib.format.read_array_header_2_0,
}
SAVE_ADVICE = f"Save it with {USAGE}, using numeric arrays."


@dataclass(frozen=True)
class NpzSummary:
    shapes: dict[str, list[int]]
    dtypes: dict[str, str]


def reject(detail: str, *, status: int = 422, slug: str = "dataset-invalid") -> ProblemError:
    return ProblemError(status, slug, detail, title="The dataset file cannot be used")


def stage_upload(source: BinaryIO, dest: Path, max_bytes: int, *, over: str | None = None,
                 advice: str = SAVE_ADVICE) -> int:
    """Copy the upload to `dest` (which must not exist), stopping with 413 past `max_bytes` (`over` says
    what to do then; `advice` how to save a usable file, when the upload is empty)."""
    written = 0
    with dest.open("xb") as out:
        while chunk := source.read(_READ_CHUNK):
            written += len(chunk)
            if written > max_bytes:
                raise reject(over or f"The file is over this server's dataset limit of {max_bytes:,} bytes. Upload a "
                             "subsample, or ask the operator to raise LRRT_MAX_DATASET_BYTES.",
                             status=413, slug="content-too-large")
            out.write(chunk)
    if written == 0:
        raise reject("The uploaded file is empty. " + advice)
    return written


def inspect_npz(path: Path, max_uncompressed: int) -> NpzSummary:
    """Validate an .npz without loading it; raises a 4xx ProblemError that says what to change."""
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError):
        raise reject("The file is not an .npz (a zip of .npy arrays). " + SAVE_ADVICE) from None
    with archive:
        members = _members(archive, max_uncompressed)
        shapes, dtypes = {}, {}
        for name, info in members.items():
            shape, dtype = _header(archive, name, info)
            shapes[name], dtypes[name] = list(shape), dtype.name
        _check_lengths(shapes)
        _verify_crcs(archive, members.values())
    return NpzSummary(shapes=shapes, dtypes=dtypes)


def _members(archive: zipfile.ZipFile, max_uncompressed: int) -> dict[str, zipfile.ZipInfo]:
    members: dict[str, zipfile.ZipInfo] = {}
    for info in archive.infolist():
        name = info.filename.removesuffix(".npy")
        if not info.filename.endswith(".npy"):
            raise reject(f"Unexpected member {info.filename!r}: an .npz holds only .npy arrays. " + SAVE_ADVICE)
        if info.flag_bits & 0x1:
            raise reject(f"Member {info.filename!r} is encrypted; upload an unencrypted .npz.")
        members[name] = info
    try:
        # The worker's naming rules: x/y, or x_<input>/y_<output>, and their _val twins.
        array_groups(info.filename for info in members.values())
    except DatasetError as exc:
        raise reject(exc.detail[0].upper() + exc.detail[1:] + ". " + SAVE_ADVICE) from None
    declared = sum(info.file_size for info in members.values())
    if declared > max_uncompressed:
        raise reject(f"The arrays unpack to {declared:,} bytes, over this server's dataset limit of "
                     f"{max_uncompressed:,}. Upload a subsample.", status=413, slug="content-too-large")
    return members


def _header(archive: zipfile.ZipFile, name: str, info: zipfile.ZipInfo) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype from the .npy header, after checking they describe exactly the bytes that follow."""
    try:
        with archive.open(info) as member:
            version = np.lib.format.read_magic(member)
            reader = _HEADER_READERS.get(version)
            if reader is None:
                raise ValueError(f"unsupported .npy format version {version}")
            shape, _fortran, dtype = reader(member)
            header_bytes = member.tell()
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as exc:
        raise reject(f"Array {name!r} is not a valid .npy ({exc}). " + SAVE_ADVICE) from None
    if dtype.hasobject:
        raise reject(f"Array {name!r} holds Python objects (it would need unpickling, which this server never "
                     "does). Convert it to a numeric array, e.g. np.asarray(a, dtype=np.float32).")
    if dtype.kind not in NUMERIC_KINDS or dtype.fields is not None or dtype.subdtype is not None:
        raise reject(f"Array {name!r} has dtype {dtype}; use a numeric dtype (bool, int, uint or float).")
    if not shape or shape[0] == 0:
        raise reject(f"Array {name!r} has shape {shape}; it needs at least one row along its first axis.")
    if header_bytes + math.prod(shape) * dtype.itemsize != info.file_size:
        raise reject(f"Array {name!r} claims shape {shape} but its data has a different size; the file is "
                     "truncated or corrupt. " + SAVE_ADVICE)
    return shape, dtype


def _check_lengths(shapes: dict[str, list[int]]) -> None:
    """Every array of the training split has one row per sample, and so has every held-out array."""
    groups = array_groups(shapes)
    for parts in (("x", "y"), ("x_val", "y_val")):
        members = sorted(m for g in parts for m in groups[g].values())
        for first, other in zip(members, members[1:]):
            if shapes[first][0] != shapes[other][0]:
                raise reject(f"{first} has {shapes[first][0]} rows but {other} has {shapes[other][0]}: every input needs "
                             "exactly one target. Make their first dimensions equal.")
    for key, member in groups["x_val"].items():
        train = groups["x"][key]
        if shapes[member][1:] != shapes[train][1:]:
            raise reject(f"{member} rows have shape {shapes[member][1:]} but {train} rows have {shapes[train][1:]}; they must match.")


def _verify_crcs(archive: zipfile.ZipFile, infos: Iterable[zipfile.ZipInfo]) -> None:
    """Read every member once, in chunks: zipfile checks each CRC at the end of the member."""
    for info in infos:
        try:
            with archive.open(info) as member:
                while member.read(_READ_CHUNK):
                    pass
        except (zipfile.BadZipFile, OSError, EOFError) as exc:
            raise reject(f"Member {info.filename!r} is corrupt ({exc}); re-create the file. " + SAVE_ADVICE) from None
