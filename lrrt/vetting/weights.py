"""What a job's `weights` may name, and the check that a weights file holds nothing but numbers in
Keras 3's `.weights.h5` layout: one definition for the API (upload, submission) and the worker (before
Keras opens the file).

References: `weights:<id>` (an upload, stored as `<data_root>/weights/<id>.weights.h5`, readable only by
its tenant) and `file:<relative path>.weights.h5` (an operator-provided file under the data root, with
the `file:` dataset rules of `lrrt.vetting.datasets`). Keras 3's `load_weights` follows a sharded
`.weights.json` to other files and copies any `scheme://` path from a remote store first
(`keras/src/saving/saving_lib.py`, `load_weights_only`), so neither is accepted: the worker hands
Keras only the resolved local path of one `.weights.h5`.

The file itself is inspected with h5py before Keras sees it (`inspect_weights`). Keras's reader
(`H5IOStore.get`/`__getitem__`) takes `<path>/vars/<i>` datasets as variables and reads each fully into
memory, so every object must be a plain group or a numeric dataset whose declared bytes the file can
actually hold: no soft or external links (HDF5 would open another file), no external raw storage or
virtual datasets (same), no strings, objects or compound types, and no shape that promises more bytes
than the file has (the reader would allocate the declared shape before noticing).

Keras 3 names each variable after its layer's class and position (`layers/dense_1/vars/0`), so
`check_fit` can compare every path and shape with what Keras writes for the built model. tf.keras 2's
`.h5` weights (`save_weights("x.h5")`) are refused, with the conversion: Keras 3 reads them with its
legacy loader (`keras/src/legacy/saving/legacy_h5_format.py`, `load_weights_from_hdf5_group`), which
pairs the file's layers with the model's by *position* among the layers that have weights, checking
only counts and shapes, and finds them through string attributes (`layer_names`, `weight_names`) that
the numeric-only inspection would have to admit; a layer-by-layer comparison against the built
model, as for Keras 3 files, would have to re-implement that loader.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lrrt.problems import WeightsError, WeightsMismatch, WeightsNotFound
from lrrt.vetting.datasets import FileRules, check_relative_path, is_id, resolve_file

SCHEMES = ("weights", "file")
SUFFIX = ".weights.h5"
#: Folder under the data root that holds uploaded weights (`weights:<id>`), never reachable as `file:`.
UPLOADS_DIR = "weights"
SAVE_ADVICE = "Save them with Keras 3: model.save_weights('model.weights.h5')."
CONVERT_ADVICE = ("Convert it in Keras 3: build the model, model.load_weights('old.h5'), then "
                  "model.save_weights('model.weights.h5'), and send that file.")
WEIGHTS_FILES = FileRules((SUFFIX,), "a Keras 3 .weights.h5 file (model.save_weights('model.weights.h5'))", "weights",
                          "/v1/weights", WeightsError, WeightsNotFound)
#: bool, signed and unsigned integers, floats: what a Keras variable holds.
NUMERIC_KINDS = frozenset("biuf")
#: Most groups and datasets a weights file may hold, and how deep: far above any keras.applications model
#: (NASNetLarge: ~5,000 objects), far below what makes walking the file itself expensive.
MAX_OBJECTS = 100_000
MAX_DEPTH = 32
#: Variables a mismatch lists in full (the detail names the first few).
MAX_LISTED = 50


@dataclass(frozen=True)
class WeightsSummary:
    """What a vetted weights file holds: each variable's path (`layers/<class>_<n>/vars/<i>`) and shape."""

    variables: dict[str, list[int]]
    bytes: int


def at_weights(exc: WeightsError) -> WeightsError:
    """`exc` with the field error that points a client at `/weights`."""
    exc.extensions.setdefault("errors", [{"in": "body", "pointer": "/weights", "type": "weights", "message": exc.detail}])
    return exc


def upload_path(data_root: Path, weights_id: str) -> Path:
    """Where the upload `weights:<id>` lives."""
    return Path(data_root) / UPLOADS_DIR / f"{weights_id}{SUFFIX}"


def check_reference(reference: str) -> tuple[str, str]:
    """(scheme, name) of a well-formed `weights` reference; raises WeightsError saying what to change."""
    scheme, sep, name = reference.partition(":")
    if not sep or not name or scheme not in SCHEMES:
        raise WeightsError("weights must be null (a fresh initialisation), 'weights:<id>' (upload the file with "
                           "POST /v1/weights) or 'file:<path>.weights.h5' under the server's data root")
    if scheme == "weights" and not is_id(name):
        raise WeightsNotFound(f"weights {name[:80]!r} not found: upload the .weights.h5 with POST /v1/weights and use "
                              "the uri it returns, or list yours with GET /v1/weights")
    if scheme == "file":
        check_relative_path(name, WEIGHTS_FILES)
    return scheme, name


def resolve(data_root: Path, reference: str) -> Path:
    """The local file behind a reference (the worker's view: tenancy was checked at submission)."""
    scheme, name = check_reference(reference)
    if scheme == "file":
        return resolve_file(data_root, name, WEIGHTS_FILES)
    path = upload_path(data_root, name)
    if not path.is_file():
        raise WeightsNotFound(f"weights {name!r} no longer exist (deleted after the job was submitted): upload them "
                              "again with POST /v1/weights and resubmit")
    return path


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def inspect_weights(path: Path, max_bytes: int) -> WeightsSummary:
    """Every object of the file checked without reading any variable's data; raises WeightsError (or
    CapExceeded-style 413 through the caller for size) naming what is wrong and what to send instead."""
    import h5py  # only the processes that inspect weights load it

    size = Path(path).stat().st_size
    if size > max_bytes:
        raise WeightsError(f"the weights file has {size:,} bytes, over this server's limit of {max_bytes:,} "
                           "(LRRT_MAX_WEIGHTS_BYTES)", limit=max_bytes, value=size)
    if not h5py.is_hdf5(str(path)):
        raise WeightsError("the file is not HDF5, so it is not a Keras .weights.h5. " + SAVE_ADVICE)
    try:
        with h5py.File(str(path), "r") as f:
            if "layer_names" in f.attrs or "model_weights" in f:
                raise WeightsError("this is a tf.keras 2 / legacy Keras .h5 weights file, which is matched to layers by "
                                   "position and is not accepted. " + CONVERT_ADVICE)
            walk = _Walk(h5py)
            walk.group(f, "", 0)
    except WeightsError:
        raise
    except (OSError, ValueError, KeyError, RuntimeError, TypeError) as exc:  # HDF5 errors surface as these
        raise WeightsError(f"the HDF5 file is corrupt or unreadable ({' '.join(str(exc).split())[:200]}). "
                           + SAVE_ADVICE) from None
    if not walk.variables:
        raise WeightsError("the file holds no Keras variables (no layers/<layer>/vars/<i> datasets). " + SAVE_ADVICE)
    if walk.declared > size:
        raise WeightsError(f"the file declares {walk.declared:,} bytes of variables but has only {size:,} bytes: it is "
                           "truncated, compressed or crafted. " + SAVE_ADVICE, declared=walk.declared, bytes=size)
    return WeightsSummary(walk.variables, size)


class _Walk:
    """One pass over the file's links, refusing anything but hard-linked groups and numeric datasets."""

    def __init__(self, h5py: Any) -> None:
        self.h5py = h5py
        self.variables: dict[str, list[int]] = {}
        self.declared = 0
        self.seen: set[Any] = set()

    def group(self, group: Any, path: str, depth: int) -> None:
        if depth > MAX_DEPTH:
            raise WeightsError(f"the file nests groups deeper than {MAX_DEPTH} levels; Keras never writes that. "
                               + SAVE_ADVICE)
        h5py = self.h5py
        for name in group:
            child = f"{path}/{name}" if path else str(name)
            link = group.get(name, getlink=True)
            if isinstance(link, (h5py.SoftLink, h5py.ExternalLink)):
                kind = "an external link to another file" if isinstance(link, h5py.ExternalLink) else "a soft link"
                raise WeightsError(f"{child!r} is {kind}; a weights file may hold only groups and numeric datasets. "
                                   + SAVE_ADVICE, path=child)
            if not isinstance(link, h5py.HardLink):
                raise WeightsError(f"{child!r} is a user-defined link; a weights file may hold only groups and numeric "
                                   "datasets. " + SAVE_ADVICE, path=child)
            kind_of = group.get(name, getclass=True)
            obj = group[name]
            if obj.id in self.seen:
                raise WeightsError(f"{child!r} links to an object that appears elsewhere in the file; Keras never "
                                   "writes that. " + SAVE_ADVICE, path=child)
            self.seen.add(obj.id)
            if len(self.seen) > MAX_OBJECTS:
                raise WeightsError(f"the file holds more than {MAX_OBJECTS:,} groups and datasets. " + SAVE_ADVICE)
            if kind_of is h5py.Group:
                self.group(obj, child, depth + 1)
            elif kind_of is h5py.Dataset:
                self.dataset(obj, child)
            else:
                raise WeightsError(f"{child!r} is a stored HDF5 datatype, not a group or dataset. " + SAVE_ADVICE,
                                   path=child)

    def dataset(self, ds: Any, path: str) -> None:
        if ds.is_virtual:
            raise WeightsError(f"{path!r} is a virtual dataset (its data lives in other files). " + SAVE_ADVICE,
                               path=path)
        if ds.external:
            raise WeightsError(f"{path!r} keeps its data in external files. " + SAVE_ADVICE, path=path)
        dtype = ds.dtype
        if dtype.kind not in NUMERIC_KINDS or dtype.fields is not None or dtype.subdtype is not None:
            raise WeightsError(f"{path!r} has dtype {dtype}; a weights file holds only numeric arrays (bool, int, "
                               "uint, float). " + SAVE_ADVICE, path=path, dtype=str(dtype))
        if ds.shape is None:
            raise WeightsError(f"{path!r} has no dataspace (an empty placeholder). " + SAVE_ADVICE, path=path)
        if len(ds.attrs):  # Keras reads a variable's `dtype` attribute (bfloat16 only): never let it read one
            raise WeightsError(f"{path!r} carries HDF5 attributes; Keras writes float32 variables without any (save "
                               "bfloat16 models after casting them to float32). " + SAVE_ADVICE, path=path)
        parts = path.split("/")
        if len(parts) < 2 or parts[-2] != "vars":
            raise WeightsError(f"{path!r} is not a Keras variable (<layer path>/vars/<i>). " + SAVE_ADVICE, path=path)
        self.declared += math.prod(ds.shape) * dtype.itemsize
        self.variables[path] = [int(n) for n in ds.shape]


def model_variables(summary: WeightsSummary) -> dict[str, list[int]]:
    """The variables Keras loads into a model (`load_weights` skips the optimizer's), under the current
    layout's names (Keras 2.13 wrote `_layer_checkpoint_dependencies` for `layers`, and Keras maps it back)."""
    return {path.replace("_layer_checkpoint_dependencies", "layers"): shape
            for path, shape in summary.variables.items() if not path.startswith("optimizer/")}


def check_fit(expected: dict[str, list[int]], found: dict[str, list[int]]) -> None:
    """The model's variables (`expected`, as `save_weights` writes them) against the file's; raises
    WeightsMismatch listing every difference (path, expected shape, found shape; null where absent)."""
    differences: list[dict[str, Any]] = [{"path": path, "expected": expected.get(path), "found": found.get(path)}
                   for path in sorted(expected.keys() | found.keys()) if expected.get(path) != found.get(path)]
    if not differences:
        return
    shown = "; ".join(f"{d['path']}: expected {_shape(d['expected'])}, found {_shape(d['found'])}"
                      for d in differences[:5])
    more = f" (and {len(differences) - 5} more)" if len(differences) > 5 else ""
    raise WeightsMismatch(
        f"{len(differences)} variable(s) of the weights file do not fit the model: {shown}{more}. Send the weights "
        "saved from this same model (model.save_weights('model.weights.h5') after building it from this JSON), or "
        "drop `weights` for a fresh initialisation.",
        variables=differences[:MAX_LISTED], count=len(differences))


def _shape(shape: list[int] | None) -> str:
    return "nothing" if shape is None else str(tuple(shape))
