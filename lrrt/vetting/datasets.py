"""What a dataset reference may name, and how an `.npz` names its arrays: one definition for the API
(which checks a submission and an upload) and the worker (which resolves and reads them).

URIs: `s3://bucket/key` and `gs://bucket/key` (object storage, spelled and granted per tenant as
`lrrt.vetting.objects` says), `builtin:<name>`, `keras:<name>`, `dataset:<id>` (an upload, stored as
`<data_root>/datasets/<id>.npz` and readable only by its tenant) and `file:<relative path>` (an
operator-provided file or folder under the data root, in any format object storage takes: an `.npz`,
a Parquet or CSV file, or a folder ending in `/` of shards, `.npy` arrays or class subfolders of
images; `lrrt.vetting.object_check.local_layout`). Uploads are reached through `dataset:` alone: a `file:`
path into the uploads folder would let one tenant train on another's data, so it is refused however
it is spelled (`./datasets/...`, `a/../datasets/...` is refused for its `..`, a symlink into it).

Arrays: `x` and `y` for a model with one input and one output; `x_<input name>` per input and
`y_<output name>` per output otherwise; the held-out split, when the file has one, as `x_val`/`y_val`
or `x_val_<name>`/`y_val_<name>`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from lrrt.problems import DatasetError, DatasetInvalid, DatasetNotFound, EngineError
from lrrt.vetting.objects import EXTENSIONS, OBJECT_SCHEMES, parse_object_uri

SCHEMES = ("builtin", "keras", "dataset", "file", *OBJECT_SCHEMES)
BUILTIN_DATASETS = frozenset({"digits"})
KERAS_DATASETS = frozenset({"mnist", "fashion_mnist", "cifar10", "cifar100"})
#: Job and dataset ids (`lrrt.store.jobs.new_id`): 32 lower-case hex digits, so an id taken from a
#: URL or a `dataset:` uri can never address another Redis key or file.
ID_PATTERN = re.compile(r"[0-9a-f]{32}")
#: Folder under the data root that holds uploaded datasets (`dataset:<id>`), never reachable as `file:`.
UPLOADS_DIR = "datasets"
#: Every uploads folder (datasets, weights): no `file:` reference of any kind may reach into one.
UPLOAD_DIRS = (UPLOADS_DIR, "weights")
#: Array groups of an `.npz`: inputs, targets and their held-out twins (longest prefix first).
GROUPS = ("x_val", "y_val", "x", "y")
USAGE = ("np.savez(path, x=x, y=y) for one input and output (optionally x_val=..., y_val=...), or "
         "x_<input name>=... and y_<output name>=... per input and output")


def at_uri(exc: DatasetError) -> DatasetError:
    """`exc` with the field error that points a client at `/dataset/uri` (as the API's 422s do)."""
    exc.extensions.setdefault("errors", [{"in": "body", "pointer": "/dataset/uri", "type": "dataset", "message": exc.detail}])
    return exc


def is_id(value: str) -> bool:
    return ID_PATTERN.fullmatch(value) is not None


def upload_path(data_root: Path, dataset_id: str) -> Path:
    """Where the upload `dataset:<id>` lives."""
    return Path(data_root) / UPLOADS_DIR / f"{dataset_id}.npz"


def check_uri(uri: str) -> tuple[str, str]:
    """(scheme, name) of a well-formed reference; raises DatasetInvalid saying what to change.

    Needs no filesystem or Redis: the API runs it at submission, the worker before reading.
    """
    scheme, sep, name = uri.partition(":")
    if not sep or not name:
        raise DatasetInvalid("dataset.uri must look like 'builtin:digits', 'keras:mnist', 'dataset:<id>' or 'file:<path>'")
    if scheme not in SCHEMES:
        raise DatasetInvalid(f"unknown dataset scheme {scheme!r}: use one of {', '.join(s + ':' for s in SCHEMES)}")
    if scheme == "builtin" and name not in BUILTIN_DATASETS:
        raise DatasetInvalid(f"unknown builtin dataset {name!r}: use " + ", ".join(f"builtin:{n}" for n in sorted(BUILTIN_DATASETS)))
    if scheme == "keras" and name not in KERAS_DATASETS:
        raise DatasetInvalid(f"unknown Keras dataset {name!r}: use one of " + ", ".join(f"keras:{n}" for n in sorted(KERAS_DATASETS)))
    if scheme == "dataset" and not is_id(name):
        raise DatasetNotFound(f"dataset {name[:80]!r} not found: upload the .npz with POST /v1/datasets and use the uri it "
                              "returns, or list yours with GET /v1/datasets")
    if scheme == "file":
        check_relative_path(name)
    if scheme in OBJECT_SCHEMES:  # s3://bucket/key, gs://bucket/key (lrrt.vetting.objects)
        parse_object_uri(uri)
    return scheme, name


@dataclass(frozen=True)
class FileRules:
    """What a `file:` reference of one kind (a dataset, a weights file) must look like, and how its errors
    read: the same path rules for both, with their own suffix, upload scheme and problem classes."""

    #: what the path must end with (a folder: "/")
    suffixes: tuple[str, ...]
    what: str
    scheme: str
    route: str
    invalid: type[EngineError]
    not_found: type[EngineError]


DATASET_FILES = FileRules((*EXTENSIONS, "/"), f"an .npz file (saved with {USAGE}), a Parquet or CSV file, or a "
                          "folder ending in '/' (Parquet or CSV shards, .npy arrays, or an image folder)", "dataset",
                          "/v1/datasets", DatasetInvalid, DatasetNotFound)


def check_relative_path(relative: str, rules: FileRules = DATASET_FILES) -> PurePosixPath:
    """The textual rules for a `file:` path: relative, no `..`, no NUL, no `scheme://`, the kind's suffix,
    not into an uploads folder (`UPLOAD_DIRS`: each upload is its tenant's, reachable by its id alone)."""
    if "\x00" in relative:
        raise rules.invalid("file: paths may not contain a NUL byte")
    if "://" in relative:
        raise rules.invalid("file: paths name a file under the server's data root, never a remote location; drop the "
                            "'scheme://' part")
    path = PurePosixPath(relative)
    if path.is_absolute() or relative.startswith("\\") or re.match(r"^[A-Za-z]:", relative) or os.path.isabs(relative):
        raise rules.invalid("file: paths are relative to the server's data root; drop the leading '/' or drive")
    if ".." in path.parts or ".." in PurePosixPath(relative.replace("\\", "/")).parts:
        raise rules.invalid("file: paths may not contain '..'; give the path below the server's data root")
    if path.parts and path.parts[0] in UPLOAD_DIRS:
        raise rules.invalid(f"file: paths may not point into the uploads folder {path.parts[0]}/: use the "
                            f"{rules.scheme}:<id> uri that POST {rules.route} returned")
    if not relative.endswith(rules.suffixes):
        raise rules.invalid(f"file:{relative[:80]} must name {rules.what}")
    return path


def resolve_file(data_root: Path, relative: str, rules: FileRules = DATASET_FILES) -> Path:
    """The file behind `file:<relative>`, after the textual rules and with every symlink resolved:
    it must exist, stay under the data root and not land in an uploads folder."""
    path = check_relative_path(relative, rules)
    root = Path(data_root).resolve()
    try:
        resolved = (root / path).resolve(strict=True)
    except (FileNotFoundError, RuntimeError):
        raise rules.not_found(f"file:{relative[:120]} does not exist under the server's data root; check the path, or "
                              f"upload the file with POST {rules.route}") from None
    except (OSError, ValueError) as exc:  # names or paths longer than the filesystem allows, and the like
        raise rules.invalid(f"file:{relative[:80]!r} is not a usable path ({exc}); give a plain relative path to "
                            f"{rules.what} under the server's data root") from None
    if not resolved.is_relative_to(root):
        raise rules.invalid("file: path leads outside the data root (through a symlink); copy the file under the "
                            "server's data root")
    if any(resolved.is_relative_to(root / folder) for folder in UPLOAD_DIRS):
        raise rules.invalid(f"file: path leads into an uploads folder ({', '.join(UPLOAD_DIRS)}) through a symlink: "
                            f"use the {rules.scheme}:<id> uri that POST {rules.route} returned")
    if not (resolved.is_dir() if relative.endswith("/") else resolved.is_file()):
        raise rules.not_found(f"file:{relative[:120]} is not a {'folder' if relative.endswith('/') else 'file'} under "
                              "the server's data root")
    return resolved


def array_groups(names: Iterable[str]) -> dict[str, dict[str | None, str]]:
    """Member names of an `.npz` by group (`x`, `y`, `x_val`, `y_val`), each keyed by input/output
    name (None for the single-array form). Raises DatasetError for names that fit no rule."""
    groups: dict[str, dict[str | None, str]] = {g: {} for g in GROUPS}
    for member in names:
        array = member.removesuffix(".npy")  # zip member names carry it, np.load's names do not
        group = next((g for g in GROUPS if array == g or array.startswith(g + "_")), None)
        if group is None:
            raise DatasetError(f"unexpected array {member!r}: name the arrays as in {USAGE}")
        key = array[len(group) + 1:] or None
        groups[group][key] = member
    for group, members in groups.items():
        if None in members and len(members) > 1:
            raise DatasetError(f"use either {group!r} or {group}_<name> arrays, not both")
    for needed in ("x", "y"):
        if not groups[needed]:
            raise DatasetError(f"missing array(s) {needed}: the .npz needs x (inputs) and y (targets), saved with {USAGE}")
    for train, held_out in (("x", "x_val"), ("y", "y_val")):
        if groups[held_out] and groups[held_out].keys() != groups[train].keys():
            raise DatasetError(f"{held_out} arrays {sorted(map(str, groups[held_out]))} must match the {train} arrays "
                               f"{sorted(map(str, groups[train]))}")
    if bool(groups["x_val"]) != bool(groups["y_val"]):
        raise DatasetError("x_val and y_val go together: include both or neither")
    return groups
