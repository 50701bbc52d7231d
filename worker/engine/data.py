"""Dataset resolution: a `DatasetRef` becomes train and held-out arrays shaped for the model.

Sources are untrusted in two ways: `file:`/`dataset:` paths come from users (no traversal, no
absolute paths, no symlinks out of the data root) and `.npz` contents come from uploads (no pickles,
no zip bombs: the uncompressed sizes are checked against the cap before anything is read). Raw
arrays are cached per process, so the second job on the same data does not reload it. Everything
random (split, subsample) is drawn from the job's seed, so the same spec gives the same arrays.
"""

from __future__ import annotations

import os
import threading
import zipfile
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lrrt.problems import CapExceeded, DatasetError
from lrrt.settings import Settings
from lrrt.spec import DatasetRef
from lrrt.vetting.datasets import array_groups, check_uri, resolve_file, upload_path
from lrrt.vetting.objects import format_of, is_object_uri
from lrrt.vetting.shapes import known_dims

KERAS_CACHE_PATHS = {
    # name: path of its files under the Keras cache (`$KERAS_HOME` or ~/.keras), as Keras's loaders write them
    "mnist": "datasets/mnist.npz",
    "fashion_mnist": "datasets/fashion-mnist",
    "cifar10": "datasets/cifar-10-batches-py-target",
    "cifar100": "datasets/cifar-100-python-target",
}
#: Held-out rows kept for `evaluate_on=validation`: fixed, so every arm and chunk sees the same ones.
MAX_VAL_ROWS = 2048
CACHE_ENTRIES = 4

#: One array, or one per model input (output) keyed by its name, as an `.npz` names them.
Tensors = np.ndarray | dict[str, np.ndarray]


@dataclass(frozen=True)
class Arrays:
    """Inputs and targets; `x_val`/`y_val` are the source's own held-out split when it has one."""

    x: Tensors
    y: Tensors
    x_val: Tensors | None = None
    y_val: Tensors | None = None
    #: An image folder's class names in label order (label i is classes[i]); None for other sources.
    classes: tuple[str, ...] | None = None

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for t in (self.x, self.y, self.x_val, self.y_val) if t is not None for a in _leaves(t))


_cache: OrderedDict[tuple, Arrays] = OrderedDict()
_cache_lock = threading.Lock()


def load_arrays(uri: str, *, data_root: Path, max_bytes: int, allow_download: bool = True) -> Arrays:
    """The raw arrays behind a dataset URI, from the per-process cache when loaded before."""
    scheme, name = check_uri(uri)
    path = None
    if scheme in ("file", "dataset"):
        path = resolve_file(data_root, name) if scheme == "file" else _upload(data_root, name)
        stat = path.stat()
        key: tuple = (uri, str(path), stat.st_mtime_ns, stat.st_size)
    else:
        key = (uri,)
    with _cache_lock:
        if key in _cache:
            _cache.move_to_end(key)
            return _cache[key]
    if path is not None:
        arrays = read_npz(path, max_bytes=max_bytes)
    elif scheme == "builtin":
        arrays = _builtin(name)
    else:
        arrays = _keras(name, allow_download=allow_download)
    if arrays.nbytes > max_bytes:
        raise CapExceeded(f"the dataset holds {arrays.nbytes} bytes; the limit is {max_bytes}",
                          cap="max_dataset_bytes", limit=max_bytes, value=arrays.nbytes)
    with _cache_lock:
        _cache[key] = arrays
        while len(_cache) > CACHE_ENTRIES:
            _cache.popitem(last=False)
    return arrays


def load_dataset(ref: DatasetRef, *, data_root: Path, caps: Settings, allow_download: bool = True,
                 inputs: Sequence[TensorSpec] = (), seed: int = 0) -> Arrays:
    """The raw arrays behind a job's `dataset`: object storage (`s3://`, `gs://`, in any format) and `file:`
    datasets other than one `.npz` through `worker.engine.sources`, everything else through `load_arrays`."""
    scheme, name = check_uri(ref.uri)
    if is_object_uri(ref.uri):
        from worker.engine.sources import load_object

        arrays: Arrays = load_object(ref, caps, inputs=inputs, seed=seed)
        return arrays
    if scheme == "file" and format_of(name, ref.format) != "npz":
        from worker.engine.sources import load_file

        arrays = load_file(ref, data_root, caps, inputs=inputs, seed=seed)
        return arrays
    return load_arrays(ref.uri, data_root=data_root, max_bytes=caps.max_dataset_bytes, allow_download=allow_download)


def clear_cache() -> None:
    with _cache_lock:
        _cache.clear()


def safe_path(data_root: Path, relative: str) -> Path:
    """`file:<relative>` resolved under `data_root` (the rules live in `lrrt.vetting.datasets`)."""
    return resolve_file(data_root, relative)


def _upload(data_root: Path, dataset_id: str) -> Path:
    path = upload_path(data_root, dataset_id)
    if not path.is_file():
        raise DatasetError(f"dataset {dataset_id} was not found: it was deleted, or this worker does not share the "
                           "API's data root (LRRT_DATA_ROOT)")
    return path


def read_npz(path: Path, *, max_bytes: int) -> Arrays:
    """The arrays of an `.npz` (named as `lrrt.vetting.datasets` says), never unpickling anything."""
    try:
        with zipfile.ZipFile(path) as archive:
            expanded = sum(info.file_size for info in archive.infolist())
    except (zipfile.BadZipFile, OSError) as exc:
        raise DatasetError(f"{path.name} is not a readable .npz file: {exc}") from None
    if expanded > max_bytes:
        raise CapExceeded(f"{path.name} expands to {expanded} bytes; the limit is {max_bytes}",
                          cap="max_dataset_bytes", limit=max_bytes, value=expanded)
    try:
        with np.load(path, allow_pickle=False) as npz:
            groups = array_groups(npz.files)
            loaded = {group: _group(npz, members) for group, members in groups.items() if members}
    except ValueError as exc:  # object arrays: "Object arrays cannot be loaded when allow_pickle=False"
        raise DatasetError(f"{path.name} holds arrays that would need unpickling, which is refused: {exc}") from None
    except (OSError, zipfile.BadZipFile, EOFError) as exc:
        raise DatasetError(f"{path.name} could not be read: {exc}") from None
    result = Arrays(loaded["x"], loaded["y"], loaded.get("x_val"), loaded.get("y_val"))
    for x, y, what in ((result.x, result.y, "x/y"), (result.x_val, result.y_val, "x_val/y_val")):
        if x is None or y is None:
            continue
        leaves = [*_leaves(x), *_leaves(y)]
        if any(a.dtype.kind not in "biuf" for a in leaves):
            raise DatasetError(f"{path.name}: {what} must be numeric arrays, got {sorted({a.dtype.name for a in leaves})}")
        if any(a.ndim == 0 for a in leaves):
            raise DatasetError(f"{path.name}: {what} must have one row per sample along the first axis")
        if len({len(a) for a in leaves}) > 1:
            raise DatasetError(f"{path.name}: {what} have different lengths ({sorted({len(a) for a in leaves})})")
    return result


def _group(npz: np.lib.npyio.NpzFile, members: dict[str | None, str]) -> Tensors:
    if None in members:
        return npz[members[None]]
    return {name: npz[member] for name, member in members.items() if name is not None}


def _leaves(t: Tensors) -> list[np.ndarray]:
    return list(t.values()) if isinstance(t, dict) else [t]


def _builtin(name: str) -> Arrays:
    """`builtin:digits` (the only builtin; `check_uri` refused any other name)."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    return Arrays(digits.data.astype(np.float32), digits.target.astype(np.int64))


def keras_cache_path(name: str) -> Path:
    """Where Keras's loader keeps (or expects, on an offline host) the files of `keras:<name>`."""
    home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    return Path(home) / KERAS_CACHE_PATHS[name]


def _keras(name: str, *, allow_download: bool) -> Arrays:
    cached = keras_cache_path(name)
    if not cached.exists() and not allow_download:
        raise DatasetError(f"keras:{name} is not in the Keras cache at {cached} and downloads are off; "
                           "pre-fill the cache (run keras.datasets.<name>.load_data() once on a host with network)",
                           cache_path=str(cached))
    import keras

    try:
        (x, y), (x_val, y_val) = getattr(keras.datasets, name).load_data()
    except Exception as exc:  # network errors differ by platform; the fix is the same
        raise DatasetError(f"keras:{name} could not be loaded or downloaded ({type(exc).__name__}); "
                           f"pre-fill the Keras cache at {cached}", cache_path=str(cached)) from None
    return Arrays(x, y.reshape(len(y), -1).squeeze(-1) if y.ndim > 1 and y.shape[-1] == 1 else y, x_val,
                  y_val.reshape(len(y_val), -1).squeeze(-1) if y_val.ndim > 1 and y_val.shape[-1] == 1 else y_val)


# --------------------------------------------------------------------------- preparation


@dataclass(frozen=True)
class TensorSpec:
    """One model input or output: its name, shape (batch axis included) and dtype."""

    name: str
    shape: tuple[int | None, ...]
    dtype: str


@dataclass(frozen=True)
class Prepared:
    """What the sweep trains on: one array per model input and per output (in the model's order),
    inputs shaped and cast for the model, and a fixed held-out subset."""

    x: list[np.ndarray]
    y: list[np.ndarray]
    x_val: list[np.ndarray]
    y_val: list[np.ndarray]

    def __len__(self) -> int:
        return len(self.x[0])

    @property
    def held_out(self) -> int:
        return len(self.x_val[0])


def prepare(arrays: Arrays, ref: DatasetRef, *, inputs: Sequence[TensorSpec], outputs: Sequence[str], seed: int) -> Prepared:
    """Match arrays to the model's inputs and outputs, then split, subsample, normalize, reshape and
    cast, deterministically from `seed`.

    The held-out set is the source's own (`x_val`, Keras's test split) when it has one, else
    `validation_split` of the rows drawn with the seed; at most `MAX_VAL_ROWS` rows are kept.
    """
    rng = np.random.default_rng(seed)
    x, y = _by_name(arrays.x, [i.name for i in inputs], "x"), _by_name(arrays.y, list(outputs), "y")
    x_val = None if arrays.x_val is None else _by_name(arrays.x_val, [i.name for i in inputs], "x_val")
    y_val = None if arrays.y_val is None else _by_name(arrays.y_val, list(outputs), "y_val")
    if x_val is None and ref.validation_split > 0:
        order = rng.permutation(len(x[0]))
        n_val = max(1, int(round(len(x[0]) * ref.validation_split)))
        x_val, y_val = _take(x, order[:n_val]), _take(y, order[:n_val])
        x, y = _take(x, order[n_val:]), _take(y, order[n_val:])
    if ref.max_samples is not None and len(x[0]) > ref.max_samples:
        keep = np.sort(rng.choice(len(x[0]), ref.max_samples, replace=False))
        x, y = _take(x, keep), _take(y, keep)
    if x_val is None or y_val is None:
        x_val, y_val = _take(x, slice(0, 0)), _take(y, slice(0, 0))
    elif len(x_val[0]) > MAX_VAL_ROWS:
        keep = np.sort(rng.choice(len(x_val[0]), MAX_VAL_ROWS, replace=False))
        x_val, y_val = _take(x_val, keep), _take(y_val, keep)
    if len(x[0]) == 0:
        raise DatasetError("no training rows are left after the validation split and max_samples")
    scales = [float(np.max(np.abs(a))) if ref.normalize and a.size else 1.0 for a in x]

    def fit(parts: list[np.ndarray]) -> list[np.ndarray]:
        return [_fit(a, spec.shape, spec.dtype, scale) for a, spec, scale in zip(parts, inputs, scales)]

    return Prepared(fit(x), y, fit(x_val), y_val)


def _by_name(t: Tensors, names: list[str], group: str) -> list[np.ndarray]:
    """The arrays for the model's inputs (or outputs) `names`, in that order."""
    if not isinstance(t, dict):
        if len(names) == 1:
            return [t]
        raise DatasetError(f"the model has {len(names)} {'inputs' if group.startswith('x') else 'outputs'} "
                           f"{names}; name one array per each in the .npz: "
                           + ", ".join(f"{group}_{n}" for n in names), expected=[f"{group}_{n}" for n in names])
    if len(names) == 1 and len(t) == 1:
        return list(t.values())
    if set(t) != set(names):
        raise DatasetError(f"the .npz arrays {sorted(f'{group}_{k}' for k in t)} do not match the model's "
                           f"{'inputs' if group.startswith('x') else 'outputs'}: expected "
                           + ", ".join(f"{group}_{n}" for n in names), expected=[f"{group}_{n}" for n in names])
    return [t[n] for n in names]


def _take(arrays: list[np.ndarray], index: np.ndarray | slice) -> list[np.ndarray]:
    return [a[index] for a in arrays]


def _fit(x: np.ndarray, input_shape: tuple[int | None, ...], dtype: str, scale: float) -> np.ndarray:
    x = reshape_for(x, input_shape)
    if np.dtype(dtype).kind == "f":
        x = x.astype(dtype, copy=False)
        if scale not in (0.0, 1.0):
            x = x / np.asarray(scale, dtype=dtype)
    elif np.dtype(dtype).kind in "iu" and x.dtype.kind == "f":
        if not np.all(np.isfinite(x)) or not np.array_equal(x, np.round(x)):
            raise DatasetError(f"the model's input expects integers ({dtype}, e.g. token ids) but the array holds "
                               "fractional values; save the token ids as an integer array")
        x = x.astype(dtype)
    return x


def reshape_for(x: np.ndarray, input_shape: tuple[int | None, ...]) -> np.ndarray:
    """Reshape rows to the model's input when that is unambiguous (64 <-> 8x8x1, 28x28 -> 28x28x1)."""
    wanted = tuple(input_shape[1:])
    have = x.shape[1:]
    if len(wanted) == len(have) and all(w is None or w == h for w, h in zip(wanted, have)):
        return x
    known = known_dims(wanted)
    if known is not None and int(np.prod(known, dtype=np.int64)) == int(np.prod(have, dtype=np.int64)):
        return x.reshape((len(x), *known))
    raise DatasetError(
        f"the dataset's rows have shape {list(have)} but the model expects {list(wanted)}; "
        "reshape the data or change the model's input shape",
        data_shape=list(have), model_shape=list(wanted),
    )
