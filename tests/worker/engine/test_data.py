"""Dataset resolution refuses unsafe paths and pickles, reshapes only when unambiguous, caches per process."""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from lrrt.problems import CapExceeded, DatasetError
from lrrt.spec import DatasetRef
from worker.engine import data as data_module
from worker.engine.data import Arrays, Prepared, TensorSpec, keras_cache_path, load_arrays, prepare, reshape_for, safe_path

MAX = 10 * 1024 * 1024


ONE_INPUT = [TensorSpec("x", (None, 2), "float32")]


def single(prepared: Prepared) -> SimpleNamespace:
    """A one-input, one-output model's prepared arrays, unwrapped from their per-input lists."""
    return SimpleNamespace(**{k: getattr(prepared, k)[0] for k in ("x", "y", "x_val", "y_val")})


def write_npz(path: Path, **arrays: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **arrays)
    return path


def test_file_and_dataset_uris_load_from_the_data_root(engine_root: Path) -> None:
    write_npz(engine_root / "sets" / "a.npz", x=np.ones((10, 4)), y=np.arange(10))
    write_npz(engine_root / "datasets" / "0123456789abcdef0123456789abcdef.npz", x=np.zeros((6, 2)), y=np.arange(6),
              x_val=np.ones((2, 2)), y_val=np.arange(2))
    assert load_arrays("file:sets/a.npz", data_root=engine_root, max_bytes=MAX).x.shape == (10, 4)
    arrays = load_arrays("dataset:0123456789abcdef0123456789abcdef", data_root=engine_root, max_bytes=MAX)
    assert arrays.x_val is not None and arrays.x_val.shape == (2, 2)


@pytest.mark.parametrize("relative", ["../outside.npz", "sets/../../outside.npz", "/etc/passwd.npz", "missing.npz", "sets/a.txt"])
def test_traversal_absolute_missing_and_non_npz_paths_are_refused(relative: str, engine_root: Path) -> None:
    write_npz(engine_root.parent / "outside.npz", x=np.ones((2, 2)), y=np.arange(2))
    with pytest.raises(DatasetError):
        load_arrays(f"file:{relative}", data_root=engine_root, max_bytes=MAX)


def test_symlinks_out_of_the_root_are_refused_but_inside_ones_work(engine_root: Path, tmp_path_factory) -> None:
    outside = write_npz(tmp_path_factory.mktemp("elsewhere") / "secret.npz", x=np.ones((2, 2)), y=np.arange(2))
    os.symlink(outside, engine_root / "link.npz")
    with pytest.raises(DatasetError, match="outside the data root"):
        safe_path(engine_root, "link.npz")
    inside = write_npz(engine_root / "real.npz", x=np.ones((2, 2)), y=np.arange(2))
    os.symlink(inside, engine_root / "alias.npz")
    assert safe_path(engine_root, "alias.npz") == inside.resolve()


def test_dataset_ids_cannot_carry_paths(engine_root: Path) -> None:
    with pytest.raises(DatasetError):
        load_arrays("dataset:../../etc/x", data_root=engine_root, max_bytes=MAX)


def test_pickled_object_arrays_are_refused(engine_root: Path) -> None:
    write_npz(engine_root / "pickled.npz", x=np.array([{"a": 1}, None], dtype=object), y=np.arange(2))
    with pytest.raises(DatasetError, match="unpickling"):
        load_arrays("file:pickled.npz", data_root=engine_root, max_bytes=MAX)


def test_malformed_files_and_mismatched_lengths_are_refused(engine_root: Path) -> None:
    (engine_root / "junk.npz").write_bytes(b"not a zip")
    write_npz(engine_root / "short.npz", x=np.ones((3, 2)), y=np.arange(2))
    write_npz(engine_root / "nox.npz", a=np.ones(3))
    for name in ("junk", "short", "nox"):
        with pytest.raises(DatasetError):
            load_arrays(f"file:{name}.npz", data_root=engine_root, max_bytes=MAX)


def test_the_byte_cap_is_checked_on_the_uncompressed_size(engine_root: Path) -> None:
    path = engine_root / "zeros.npz"
    np.savez_compressed(path, x=np.zeros((2000, 1000), dtype="float32"), y=np.zeros(2000))
    assert path.stat().st_size < 1_000_000  # compresses to almost nothing ...
    with pytest.raises(CapExceeded):  # ... but expands past the cap, so it is never read
        load_arrays("file:zeros.npz", data_root=engine_root, max_bytes=1_000_000)


def test_reshape_when_unambiguous_and_name_both_shapes_otherwise() -> None:
    flat = np.arange(2 * 64, dtype="float32").reshape(2, 64)
    square = reshape_for(flat, (None, 8, 8, 1))
    assert square.shape == (2, 8, 8, 1)
    np.testing.assert_array_equal(reshape_for(square, (None, 64)), flat)
    assert reshape_for(flat, (None, None)).shape == (2, 64)
    with pytest.raises(DatasetError) as caught:
        reshape_for(flat, (None, 28, 28, 1))
    assert "[64]" in caught.value.detail and "[28, 28, 1]" in caught.value.detail


def test_split_subsample_and_normalize_are_deterministic() -> None:
    arrays = Arrays(np.arange(200, dtype="float32").reshape(100, 2), np.arange(100))
    ref = DatasetRef(uri="builtin:digits", validation_split=0.2, max_samples=50, normalize=True)
    first = single(prepare(arrays, ref, inputs=ONE_INPUT, outputs=["y"], seed=3))
    again = single(prepare(arrays, ref, inputs=ONE_INPUT, outputs=["y"], seed=3))
    other = single(prepare(arrays, ref, inputs=ONE_INPUT, outputs=["y"], seed=4))
    assert first.x.shape == (50, 2) and first.x_val.shape == (20, 2)
    np.testing.assert_array_equal(first.x, again.x)
    assert not np.array_equal(first.y, other.y)
    assert first.x.max() <= 1.0 and not set(first.y) & set(first.y_val)


def test_a_second_job_on_the_same_data_does_not_reload(engine_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_npz(engine_root / "c.npz", x=np.ones((4, 2)), y=np.arange(4))
    first = load_arrays("file:c.npz", data_root=engine_root, max_bytes=MAX)
    monkeypatch.setattr(data_module, "read_npz", lambda *a, **k: pytest.fail("reloaded"))
    assert load_arrays("file:c.npz", data_root=engine_root, max_bytes=MAX) is first
    digits = load_arrays("builtin:digits", data_root=engine_root, max_bytes=MAX)
    assert digits.x.shape == (1797, 64) and load_arrays("builtin:digits", data_root=engine_root, max_bytes=MAX) is digits


def test_keras_dataset_missing_from_an_offline_cache_names_the_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras-home"))
    data_module.clear_cache()
    with pytest.raises(DatasetError) as caught:
        load_arrays("keras:mnist", data_root=tmp_path, max_bytes=MAX, allow_download=False)
    expected = str(tmp_path / "keras-home" / "datasets" / "mnist.npz")
    assert caught.value.extensions["cache_path"] == expected == str(keras_cache_path("mnist"))
    assert expected in caught.value.detail

