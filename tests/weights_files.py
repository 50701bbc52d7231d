"""Weights files for the tests, written with h5py (no Keras): one in Keras 3's `.weights.h5` layout and
the hostile ones `lrrt.vetting.weights.inspect_weights` must refuse.

Each builder writes `path` and returns it; `HOSTILE` maps a case name to (builder, words the refusal's
detail must contain), shared by the vetting unit tests and the API's hostile-input tests.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np

#: The layout Keras 3 writes for `tests.service.api.conftest.MLP` (Dense 64->32, Dense 32->10: Keras names the
#: groups after each layer's class and position, not its name).
MLP_SHAPES = {"layers/dense/vars/0": (64, 32), "layers/dense/vars/1": (32,),
              "layers/dense_1/vars/0": (32, 10), "layers/dense_1/vars/1": (10,)}


def keras3_file(path: Path, shapes: dict[str, tuple[int, ...]] = MLP_SHAPES, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    with h5py.File(path, "w") as f:
        for name, shape in shapes.items():
            f.create_dataset(name, data=rng.standard_normal(shape).astype(np.float32))
    return path


def as_bytes(builder: Callable[[Path], Path], tmp: Path) -> bytes:
    return builder(tmp / "case.weights.h5").read_bytes()


def external_link(path: Path) -> Path:
    """A variable that is an HDF5 external link to a file elsewhere (HDF5 would open it)."""
    target = path.with_name("elsewhere.h5")
    keras3_file(target)
    keras3_file(path, {"layers/dense_1/vars/0": (32, 10)})
    with h5py.File(path, "a") as f:
        f["layers/dense/vars/0"] = h5py.ExternalLink(str(target), "layers/dense/vars/0")
    return path


def soft_link(path: Path) -> Path:
    keras3_file(path)
    with h5py.File(path, "a") as f:
        f["layers/extra/vars/0"] = h5py.SoftLink("/layers/dense/vars/0")
    return path


def virtual_dataset(path: Path) -> Path:
    """A variable whose data lives in another file through a virtual dataset's mapping."""
    source = path.with_name("source.h5")
    with h5py.File(source, "w") as f:
        f["data"] = np.ones((64, 32), np.float32)
    layout = h5py.VirtualLayout(shape=(64, 32), dtype="f4")
    layout[:] = h5py.VirtualSource(str(source), "data", shape=(64, 32))
    keras3_file(path, {"layers/dense_1/vars/0": (32, 10)})
    with h5py.File(path, "a") as f:
        f.create_virtual_dataset("layers/dense/vars/0", layout)
    return path


def external_storage(path: Path) -> Path:
    """A contiguous dataset whose raw bytes HDF5 reads from an external file."""
    raw = path.with_name("raw.bin")
    raw.write_bytes(b"\0" * 64 * 32 * 4)
    with h5py.File(path, "w") as f:
        f.create_dataset("layers/dense/vars/0", shape=(64, 32), dtype="f4", external=[(str(raw), 0, h5py.h5f.UNLIMITED)])
    return path


def shape_bomb(path: Path) -> Path:
    """A chunked dataset declaring 4 TB of float32 that no chunk was ever written for: a few KB on disk."""
    with h5py.File(path, "w") as f:
        f.create_dataset("layers/dense/vars/0", shape=(1_000_000, 1_000_000), dtype="f4", chunks=(1, 1024))
    return path


def string_dataset(path: Path) -> Path:
    keras3_file(path)
    with h5py.File(path, "a") as f:
        f.create_dataset("layers/names/vars/0", data=np.array([b"relu"], dtype=h5py.string_dtype()))
    return path


def compound_dataset(path: Path) -> Path:
    with h5py.File(path, "w") as f:
        f.create_dataset("layers/dense/vars/0", data=np.zeros(4, dtype=[("a", "f4"), ("b", "i4")]))
    return path


def stray_dataset(path: Path) -> Path:
    """A dataset outside any `vars` group: not a Keras variable."""
    keras3_file(path)
    with h5py.File(path, "a") as f:
        f["payload"] = np.zeros(8, np.float32)
    return path


def legacy_tf_keras(path: Path) -> Path:
    """What tf.keras 2's `save_weights("x.h5")` writes: layer_names/weight_names attributes, per-layer groups."""
    with h5py.File(path, "w") as f:
        f.attrs["layer_names"] = [b"hidden", b"out"]
        f.attrs["backend"] = b"tensorflow"
        f.attrs["keras_version"] = b"2.15.0"
        for layer, (kernel, bias) in {"hidden": ((64, 32), (32,)), "out": ((32, 10), (10,))}.items():
            group = f.create_group(layer)
            group.attrs["weight_names"] = [f"{layer}/kernel:0".encode(), f"{layer}/bias:0".encode()]
            group[f"{layer}/kernel:0"] = np.zeros(kernel, np.float32)
            group[f"{layer}/bias:0"] = np.zeros(bias, np.float32)
    return path


def attribute_on_a_variable(path: Path) -> Path:
    """A variable carrying an attribute Keras would read (`dtype`), here a large one."""
    keras3_file(path)
    with h5py.File(path, "a") as f:
        f["layers/dense/vars/0"].attrs["dtype"] = "x" * 100_000
    return path


def not_hdf5(path: Path) -> Path:
    buffer = io.BytesIO()
    np.savez(buffer, x=np.zeros(3))
    path.write_bytes(buffer.getvalue())
    return path


def truncated(path: Path) -> Path:
    keras3_file(path)
    path.write_bytes(path.read_bytes()[:1500])
    return path


def no_variables(path: Path) -> Path:
    with h5py.File(path, "w") as f:
        f.create_group("layers/dense/vars")
    return path


HOSTILE: dict[str, tuple[Callable[[Path], Path], str]] = {
    "external link": (external_link, "external link"),
    "soft link": (soft_link, "soft link"),
    "virtual dataset": (virtual_dataset, "virtual dataset"),
    "external raw storage": (external_storage, "external files"),
    "declared shape far beyond its storage": (shape_bomb, "declares"),
    "string dataset": (string_dataset, "numeric"),
    "compound dataset": (compound_dataset, "numeric"),
    "dataset outside vars": (stray_dataset, "not a Keras variable"),
    "tf.keras 2 legacy h5": (legacy_tf_keras, "save_weights('model.weights.h5')"),
    "attribute on a variable": (attribute_on_a_variable, "attributes"),
    "not HDF5": (not_hdf5, "not HDF5"),
    "truncated HDF5": (truncated, ""),
    "no variables": (no_variables, "no Keras variables"),
}
