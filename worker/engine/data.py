"""Dataset resolution: a `DatasetRef` becomes train and held-out arrays shaped for the model.

Sources are untrusted in two ways: `file:`/`dataset:` paths come from users (no traversal, no
absolute paths, no symlinks out of the data root) and `.npz` contents come from uploads (no pickles,
no zip bombs: the uncompressed sizes are checked against the cap before anything is read). Raw
arrays are cached per process, so the second job on the same data does not reload it. Everything
random (split, subsample) is drawn from the job's seed, so the same spec gives the same arrays.
"""

from __future__ import annotations

import os
import re
import threading
import zipfile
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from worker.core.problems import CapExceeded, DatasetError
from worker.core.spec import DatasetRef

KERAS_DATASETS = {
    # name: path of its files under the Keras cache (`$KERAS_HOME` or ~/.keras), as Keras's loaders write them
    "mnist": "datasets/mnist.npz",
    "fashion_mnist": "datasets/fashion-mnist",
    "cifar10": "datasets/cifar-10-batches-py-target",
    "cifar100": "datasets/cifar-100-python-target",
}
DATASET_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
#: Held-out rows kept for `evaluate_on=validation`: fixed, so every arm and chunk sees the same ones.
MAX_VAL_ROWS = 2048
CACHE_ENTRIES = 4


@dataclass(frozen=True)
class Arrays:
    """Inputs and targets; `x_val`/`y_val` are the source's own held-out split when it has one."""

    x: np.ndarray
    y: np.ndarray
    x_val: np.ndarray | None = None
    y_val: np.ndarray | None = None

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in (self.x, self.y, self.x_val, self.y_val) if a is not None)


_cache: OrderedDict[tuple, Arrays] = OrderedDict()
_cache_lock = threading.Lock()


def load_arrays(uri: str, *, data_root: Path, max_bytes: int, allow_download: bool = True) -> Arrays:
    """The raw arrays behind a dataset URI, from the per-process cache when loaded before."""
    scheme, _, name = uri.partition(":")
    path = None
    if scheme in ("file", "dataset"):
        path = safe_path(data_root, name if scheme == "file" else f"datasets/{_dataset_id(name)}.npz")
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
    elif scheme == "keras":
        arrays = _keras(name, allow_download=allow_download)
    else:
        raise DatasetError(f"unknown dataset scheme {scheme!r}")
    if arrays.nbytes > max_bytes:
        raise CapExceeded(f"the dataset holds {arrays.nbytes} bytes; the limit is {max_bytes}",
                          cap="max_dataset_bytes", limit=max_bytes, value=arrays.nbytes)
    with _cache_lock:
        _cache[key] = arrays
        while len(_cache) > CACHE_ENTRIES:
            _cache.popitem(last=False)
    return arrays


def clear_cache() -> None:
    with _cache_lock:
        _cache.clear()


def safe_path(data_root: Path, relative: str) -> Path:
    """`relative` resolved under `data_root`, refusing absolute paths, `..` and symlinks that lead out."""
    if not relative or relative.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", relative) or os.path.isabs(relative):
        raise DatasetError(f"dataset path {relative!r} must be relative to the data root")
    if ".." in Path(relative).parts:
        raise DatasetError(f"dataset path {relative!r} must not contain '..'")
    if "\x00" in relative:
        raise DatasetError("dataset path must not contain a NUL byte")
    if not relative.endswith(".npz"):
        raise DatasetError(f"dataset path {relative!r} must name an .npz file")
    root = Path(data_root).resolve()
    candidate = root / relative
    try:
        resolved = candidate.resolve(strict=True)
    except (FileNotFoundError, RuntimeError):
        raise DatasetError(f"dataset {relative!r} was not found under the data root") from None
    except OSError as exc:  # a name or path longer than the filesystem allows, and the like
        raise DatasetError(f"dataset path {relative[:80]!r} is not usable: {exc.strerror}") from None
    if not resolved.is_relative_to(root):
        raise DatasetError(f"dataset path {relative!r} leads outside the data root")
    if not resolved.is_file():
        raise DatasetError(f"dataset path {relative!r} is not a file")
    return resolved


def read_npz(path: Path, *, max_bytes: int) -> Arrays:
    """Arrays `x`, `y` (and optionally `x_val`, `y_val`) of an `.npz`, never unpickling anything."""
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
            names = set(npz.files)
            if not {"x", "y"} <= names:
                raise DatasetError(f"{path.name} must hold arrays 'x' and 'y'; it has {sorted(names)}")
            arrays = {k: npz[k] for k in ("x", "y", "x_val", "y_val") if k in names}
    except ValueError as exc:  # object arrays: "Object arrays cannot be loaded when allow_pickle=False"
        raise DatasetError(f"{path.name} holds arrays that would need unpickling, which is refused: {exc}") from None
    except (OSError, zipfile.BadZipFile, EOFError) as exc:
        raise DatasetError(f"{path.name} could not be read: {exc}") from None
    if ("x_val" in arrays) != ("y_val" in arrays):
        raise DatasetError(f"{path.name} must hold both 'x_val' and 'y_val' or neither")
    result = Arrays(**arrays)
    for x, y, what in ((result.x, result.y, "x/y"), (result.x_val, result.y_val, "x_val/y_val")):
        if x is None:
            continue
        if x.dtype.kind not in "biuf" or y.dtype.kind not in "biuf":
            raise DatasetError(f"{path.name}: {what} must be numeric arrays, got {x.dtype} and {y.dtype}")
        if len(x) != len(y):
            raise DatasetError(f"{path.name}: {what} have different lengths ({len(x)} and {len(y)})")
    return result


def _dataset_id(name: str) -> str:
    if not DATASET_ID.match(name):
        raise DatasetError(f"dataset id {name!r} is not a valid id")
    return name


def _builtin(name: str) -> Arrays:
    if name != "digits":
        raise DatasetError(f"unknown builtin dataset {name!r}: use builtin:digits")
    from sklearn.datasets import load_digits

    digits = load_digits()
    return Arrays(digits.data.astype(np.float32), digits.target.astype(np.int64))


def keras_cache_path(name: str) -> Path:
    """Where Keras's loader keeps (or expects, on an offline host) the files of `keras:<name>`."""
    home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    return Path(home) / KERAS_DATASETS[name]


def _keras(name: str, *, allow_download: bool) -> Arrays:
    if name not in KERAS_DATASETS:
        raise DatasetError(f"unknown Keras dataset {name!r}: use one of {', '.join(sorted(KERAS_DATASETS))}")
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
class Prepared:
    """What the sweep trains on: float inputs in the model's shape, and a fixed held-out subset."""

    x: np.ndarray
    y: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray


def prepare(arrays: Arrays, ref: DatasetRef, *, input_shape: tuple[int | None, ...], input_dtype: str, seed: int) -> Prepared:
    """Split, subsample, normalize, reshape and cast, deterministically from `seed`.

    The held-out set is the source's own (`x_val`, Keras's test split) when it has one, else
    `validation_split` of the rows drawn with the seed; at most `MAX_VAL_ROWS` rows are kept.
    """
    rng = np.random.default_rng(seed)
    x, y, x_val, y_val = arrays.x, arrays.y, arrays.x_val, arrays.y_val
    if x_val is None and ref.validation_split > 0:
        order = rng.permutation(len(x))
        n_val = max(1, int(round(len(x) * ref.validation_split)))
        x_val, y_val, x, y = x[order[:n_val]], y[order[:n_val]], x[order[n_val:]], y[order[n_val:]]
    if ref.max_samples is not None and len(x) > ref.max_samples:
        keep = np.sort(rng.choice(len(x), ref.max_samples, replace=False))
        x, y = x[keep], y[keep]
    if x_val is None:
        x_val, y_val = x[:0], y[:0]
    elif len(x_val) > MAX_VAL_ROWS:
        keep = np.sort(rng.choice(len(x_val), MAX_VAL_ROWS, replace=False))
        x_val, y_val = x_val[keep], y_val[keep]
    if len(x) == 0:
        raise DatasetError("no training rows are left after the validation split and max_samples")
    scale = float(np.max(np.abs(x))) if ref.normalize and x.size else 1.0
    return Prepared(
        _fit(x, input_shape, input_dtype, scale), y,
        _fit(x_val, input_shape, input_dtype, scale), y_val,
    )


def _fit(x: np.ndarray, input_shape: tuple[int | None, ...], dtype: str, scale: float) -> np.ndarray:
    x = reshape_for(x, input_shape)
    if np.dtype(dtype).kind == "f":
        x = x.astype(dtype, copy=False)
        if scale not in (0.0, 1.0):
            x = x / np.asarray(scale, dtype=dtype)
    return x


def reshape_for(x: np.ndarray, input_shape: tuple[int | None, ...]) -> np.ndarray:
    """Reshape rows to the model's input when that is unambiguous (64 <-> 8x8x1, 28x28 -> 28x28x1)."""
    wanted = tuple(input_shape[1:])
    have = x.shape[1:]
    if len(wanted) == len(have) and all(w is None or w == h for w, h in zip(wanted, have)):
        return x
    if None not in wanted and int(np.prod(wanted, dtype=np.int64)) == int(np.prod(have, dtype=np.int64)):
        return x.reshape((len(x), *wanted))
    raise DatasetError(
        f"the dataset's rows have shape {list(have)} but the model expects {list(wanted)}; "
        "reshape the data or change the model's input shape",
        data_shape=list(have), model_shape=list(wanted),
    )
