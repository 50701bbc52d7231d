"""Reading tables, arrays and image folders (worker/engine/sources.py): local files for every format,
and the same readers over a real S3 server (moto's, on 127.0.0.1) for object storage; hostile data
(decompression bombs, truncated and corrupt files, endless lines, lying metadata) is a clear problem."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.parquet as pq
import pytest
from fsspec.implementations.local import LocalFileSystem
from PIL import Image

from lrrt.problems import CapExceeded, DatasetError, DatasetInvalid, DatasetNotFound
from lrrt.settings import Settings
from lrrt.spec import DatasetRef
from lrrt.vetting.object_check import local_layout
from tests.fixtures.s3 import BUCKET, S3Server, npz_bytes
from worker.engine.data import TensorSpec, load_dataset, prepare
from worker.engine.sources import MIN_ROW_GROUPS, decode_image, load_layout, load_object, needed_rows, pick_row_groups

FEATURES = [f"f{i}" for i in range(4)]
INPUT = [TensorSpec("input", (None, 4), "float32")]
IMAGE_INPUT = [TensorSpec("input", (None, 8, 8, 3), "float32")]


def table(rows: int, start: int = 0) -> pa.Table:
    ids = np.arange(start, start + rows)
    return pa.table({**{f: (ids * 10 + i).astype(np.float64) for i, f in enumerate(FEATURES)},
                     "vec": pa.array([[float(v), float(v) + 0.5] for v in ids], type=pa.list_(pa.float32(), 2)),
                     "label": ids % 3})


@pytest.fixture()
def caps(tmp_path: Path) -> Settings:
    return Settings(data_root=tmp_path, object_cache_dir=tmp_path / "cache")


class CountingFS(LocalFileSystem):
    """The local filesystem, counting the bytes read through it (what a store would send)."""

    cachable = False  # a fresh count per instance, not fsspec's shared instance

    def __init__(self) -> None:
        super().__init__()
        self.read = 0

    def _open(self, path: str, mode: str = "rb", **kwargs: Any) -> Any:
        handle = super()._open(path, mode, **kwargs)
        fs, inner = self, handle.read

        def read(*args: Any) -> bytes:
            data = inner(*args)
            fs.read += len(data)
            return data

        handle.read = read
        return handle


def ref(uri: str, **kw: Any) -> DatasetRef:
    return DatasetRef(uri=uri, **kw)


def test_parquet_shards_map_columns_to_inputs(tmp_path: Path, caps: Settings) -> None:
    (tmp_path / "t").mkdir()
    pq.write_table(table(30), tmp_path / "t" / "part-0.parquet", row_group_size=10)
    pq.write_table(table(20, start=30), tmp_path / "t" / "part-1.parquet", row_group_size=10)
    r = ref("file:t/", columns={"x": FEATURES, "y": "label"})
    fs, layout = local_layout(tmp_path, "t/", r, caps)
    arrays = load_layout(fs, layout, r, caps, inputs=INPUT, seed=0)
    assert arrays.x.shape == (50, 4) and arrays.x.dtype == np.float32
    np.testing.assert_array_equal(arrays.x[:, 0], np.arange(50) * 10)
    np.testing.assert_array_equal(arrays.y, np.arange(50) % 3)
    r2 = ref("file:t/", columns={"x_a": "vec", "x_b": "f1", "y": "label"}, format="parquet")
    fs, layout = local_layout(tmp_path, "t/", r2, caps)
    two = load_layout(fs, layout, r2, caps, inputs=INPUT, seed=0)
    assert two.x["a"].shape == (50, 2) and two.x["b"].shape == (50,)
    np.testing.assert_array_equal(two.x["a"][3], [3.0, 3.5])


def test_parquet_reads_only_the_row_groups_of_the_drawn_rows(tmp_path: Path, caps: Settings) -> None:
    (tmp_path / "t").mkdir()
    pq.write_table(table(10_000), tmp_path / "t" / "part-0.parquet", row_group_size=500)  # 20 row groups
    whole = (tmp_path / "t" / "part-0.parquet").stat().st_size
    r = ref("file:t/", columns={"x": FEATURES, "y": "label"}, max_samples=4, validation_split=0.0)
    _, layout = local_layout(tmp_path, "t/", r, caps)
    counting = CountingFS()
    arrays = load_layout(counting, layout, r, caps.model_copy(update={"object_cache_bytes": 0}), inputs=INPUT, seed=3)
    assert len(arrays.y) == needed_rows(r) == 5
    groups = pick_row_groups([500] * 20, 5, 3)
    assert len(groups) == MIN_ROW_GROUPS
    ids = (arrays.x[:, 0] / 10).astype(int)  # the rows' own ids: each from a drawn row group, none twice
    assert len(set(ids)) == 5 and {int(i) // 500 for i in ids} <= set(groups), (ids, groups)
    assert counting.read < whole / 2, (counting.read, whole)  # 4 of 20 row groups, the footer, no "vec"
    again = load_layout(CountingFS(), layout, r, caps.model_copy(update={"object_cache_bytes": 0}), inputs=INPUT, seed=3)
    np.testing.assert_array_equal(again.x, arrays.x)  # the same rows for every run of the job


def test_csv_reads_until_enough_rows_and_refuses_endless_lines(tmp_path: Path, caps: Settings) -> None:
    pcsv.write_csv(table(5000).drop(["vec"]), tmp_path / "t.csv")
    r = ref("file:t.csv", columns={"x": FEATURES, "y": "label"}, max_samples=10, validation_split=0.0)
    fs, layout = local_layout(tmp_path, "t.csv", r, caps)
    counting = CountingFS()
    small = caps.model_copy(update={"max_csv_line_bytes": 4096, "object_cache_bytes": 0})
    arrays = load_layout(counting, layout, r, small, inputs=INPUT, seed=0)
    assert len(arrays.y) == 11
    np.testing.assert_array_equal(arrays.x[:, 0], np.arange(11) * 10)
    assert counting.read < (tmp_path / "t.csv").stat().st_size / 4
    (tmp_path / "long.csv").write_bytes(b"f0,f1,f2,f3,label\n" + b"1," * 10_000 + b"1\n")
    r = ref("file:long.csv", columns={"x": FEATURES, "y": "label"})
    fs, layout = local_layout(tmp_path, "long.csv", r, caps)
    with pytest.raises(CapExceeded, match="longer than 4096 bytes"):
        load_layout(fs, layout, r, small, inputs=INPUT, seed=0)
    (tmp_path / "bad.csv").write_bytes(b"f0,f1,f2,f3,label\n1,2,3,\xff\xfe,1\n")
    r = ref("file:bad.csv", columns={"x": FEATURES, "y": "label"})
    fs, layout = local_layout(tmp_path, "bad.csv", r, caps)
    with pytest.raises(DatasetError, match="bad.csv"):
        load_layout(fs, layout, r, small, inputs=INPUT, seed=0)


def test_corrupt_and_lying_parquet_are_clear_problems(tmp_path: Path, caps: Settings) -> None:
    pq.write_table(table(100), tmp_path / "ok.parquet")
    data = (tmp_path / "ok.parquet").read_bytes()
    (tmp_path / "trunc.parquet").write_bytes(data[: len(data) // 2])
    r = ref("file:trunc.parquet", columns={"x": FEATURES, "y": "label"})
    fs, layout = local_layout(tmp_path, "trunc.parquet", r, caps)
    with pytest.raises(DatasetError, match="not a readable Parquet file"):
        load_layout(fs, layout, r, caps, inputs=INPUT, seed=0)
    r = ref("file:ok.parquet", columns={"x": FEATURES, "y": "label"})
    fs, layout = local_layout(tmp_path, "ok.parquet", r, caps)
    with pytest.raises(CapExceeded, match="claims 100 rows; the limit is 99"):
        load_layout(fs, layout, r, caps.model_copy(update={"max_table_rows": 99}), inputs=INPUT, seed=0)
    r = ref("file:ok.parquet", columns={"x": ["f0", "nope"], "y": "label"})
    with pytest.raises(DatasetError, match="nope"):
        load_layout(fs, layout, r, caps, inputs=INPUT, seed=1)


def image_bytes(size: tuple[int, int], mode: str, fmt: str, value: int) -> bytes:
    buf = io.BytesIO()
    Image.new(mode, size, value if mode in ("L", "P") else (value,) * len(mode)).save(buf, format=fmt)
    return buf.getvalue()


def make_folder(root: Path) -> None:
    for cls, value in (("dog", 200), ("cat", 100), ("Zebra", 50)):
        (root / cls).mkdir(parents=True)
        (root / cls / "a.png").write_bytes(image_bytes((8, 8), "RGB", "PNG", value))
        (root / cls / "b.jpg").write_bytes(image_bytes((31, 17), "L", "JPEG", value))
        (root / cls / "c.webp").write_bytes(image_bytes((5, 9), "RGBA", "WEBP", value))
    (root / "README.txt").write_text("not an image")


def test_image_folder_mixed_sizes_and_modes_become_uint8_in_keras_class_order(tmp_path: Path, caps: Settings) -> None:
    make_folder(tmp_path / "imgs")
    r = ref("file:imgs/", normalize=True)
    fs, layout = local_layout(tmp_path, "imgs/", r, caps)
    assert layout.format == "image_folder"
    arrays = load_layout(fs, layout, r, caps, inputs=IMAGE_INPUT, seed=0)
    assert arrays.classes == ("Zebra", "cat", "dog")  # sorted(), as image_dataset_from_directory sorts
    assert arrays.x.dtype == np.uint8 and arrays.x.shape == (9, 8, 8, 3)
    for image, label in zip(arrays.x, arrays.y):
        assert abs(int(image.mean()) - {0: 50, 1: 100, 2: 200}[int(label)]) <= 3
    prepared = prepare(arrays, r, inputs=IMAGE_INPUT, outputs=["out"], seed=0)
    assert prepared.x[0].dtype == np.float32 and float(prepared.x[0].max()) <= 1.0  # scaled on the worker


def test_hostile_images_are_clear_problems(tmp_path: Path) -> None:
    png = image_bytes((64, 64), "RGB", "PNG", 9)
    with pytest.raises(CapExceeded, match="max_image_pixels"):
        decode_image(png, "big.png", (8, 8, 3), 1000)  # over the cap (Pillow refuses above twice it)
    with pytest.raises(DatasetError, match="truncated or corrupt"):
        decode_image(image_bytes((64, 64), "RGB", "JPEG", 9)[:300], "cut.jpg", (8, 8, 3), 10**6)
    with pytest.raises(DatasetError, match="not a JPEG, PNG or WebP"):
        decode_image(b"GIF89a" + b"\x00" * 50, "x.jpg", (8, 8, 3), 10**6)
    bomb = io.BytesIO()  # a PNG whose header claims 30000 x 30000 pixels in a few hundred bytes
    Image.new("1", (30000, 30000)).save(bomb, format="PNG")
    assert len(bomb.getvalue()) < 200_000
    with pytest.raises(CapExceeded, match="max_image_pixels"):
        decode_image(bomb.getvalue(), "bomb.png", (8, 8, 3), 40_000_000)


def test_object_storage_formats_missing_keys_and_the_cache(s3: S3Server, caps: Settings) -> None:
    s3_caps = caps.model_copy(update={"s3_endpoint_url": s3.url})
    x, y = np.random.default_rng(0).random((20, 4), dtype=np.float32), np.arange(20) % 3
    s3.put("w/d.npz", npz_bytes(x=x, y=y))
    s3.put("w/arrays/x.npy", _npy(x))
    s3.put("w/arrays/y.npy", _npy(y))
    buf = io.BytesIO()
    pq.write_table(table(40), buf, row_group_size=8)
    s3.put("w/t/part-0.parquet", buf.getvalue())
    buf = io.BytesIO()
    pcsv.write_csv(table(12).drop(["vec"]), buf)
    s3.put("w/c.csv", buf.getvalue())
    for uri, kw in ((f"s3://{BUCKET}/w/d.npz", {}), (f"s3://{BUCKET}/w/arrays/", {})):
        arrays = load_object(ref(uri, **kw), s3_caps, inputs=INPUT, seed=0)
        np.testing.assert_array_equal(arrays.x, x)
        np.testing.assert_array_equal(arrays.y, y)
    t = load_dataset(ref(f"s3://{BUCKET}/w/t/", columns={"x": FEATURES, "y": "label"}), data_root=caps.data_root,
                     caps=s3_caps, inputs=INPUT, seed=0)
    assert t.x.shape == (40, 4)
    c = load_object(ref(f"s3://{BUCKET}/w/c.csv", columns={"x": FEATURES, "y": "label"}), s3_caps, inputs=INPUT, seed=0)
    np.testing.assert_array_equal(c.y, np.arange(12) % 3)
    with pytest.raises(DatasetNotFound, match=f"s3://{BUCKET}/w/missing.npz does not exist"):
        load_object(ref(f"s3://{BUCKET}/w/missing.npz"), s3_caps, inputs=INPUT, seed=0)
    with pytest.raises(DatasetInvalid, match="'..' segment"):
        load_dataset(ref(f"s3://{BUCKET}/w/../x.npz"), data_root=caps.data_root, caps=s3_caps, inputs=INPUT)
    # The cache: a second read of the same objects asks the store for the listing only.
    s3.put("w/img/a/1.png", image_bytes((8, 8), "RGB", "PNG", 10))
    s3.put("w/img/b/1.png", image_bytes((8, 8), "RGB", "PNG", 20))
    img = ref(f"s3://{BUCKET}/w/img/")
    entries = len(list((caps.object_cache_dir or Path()).glob("*.npz")))
    first = load_object(img, s3_caps, inputs=IMAGE_INPUT, seed=0)
    assert first.classes == ("a", "b")
    assert len(list((caps.object_cache_dir or Path()).glob("*.npz"))) == entries + 1
    again = load_object(img, s3_caps, inputs=IMAGE_INPUT, seed=0)  # from the cache: no new entry
    np.testing.assert_array_equal(again.x, first.x)
    assert len(list((caps.object_cache_dir or Path()).glob("*.npz"))) == entries + 1
    s3.client().put_object(Bucket=BUCKET, Key="w/img/b/1.png", Body=image_bytes((8, 8), "RGB", "PNG", 99))
    changed = load_object(img, s3_caps, inputs=IMAGE_INPUT, seed=0)  # a new ETag: read again
    assert int(changed.x[1].mean()) == 99 and int(first.x[1].mean()) == 20


def _npy(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, a)
    return buf.getvalue()


def test_file_datasets_read_every_format_under_the_data_root(caps: Settings) -> None:
    """`file:` takes what object storage takes, through the worker's entry point (`load_dataset`): one `.npz`,
    a folder of `.npy` arrays, Parquet and CSV as one file or a folder of shards, and an image folder."""
    root = caps.data_root
    x, y = np.random.default_rng(0).random((20, 4), dtype=np.float32), np.arange(20) % 3
    np.savez(root / "d.npz", x=x, y=y)
    (root / "arrays").mkdir()
    np.save(root / "arrays" / "x.npy", x)
    np.save(root / "arrays" / "y.npy", y)
    (root / "pq").mkdir()
    pq.write_table(table(30), root / "pq" / "part-0.parquet", row_group_size=10)
    pq.write_table(table(20, start=30), root / "pq" / "part-1.parquet")
    (root / "csv").mkdir()
    pcsv.write_csv(table(12).drop(["vec"]), root / "csv" / "a.csv")
    pcsv.write_csv(table(8, start=12).drop(["vec"]), root / "csv" / "b.csv")
    make_folder(root / "imgs")
    columns = {"columns": {"x": FEATURES, "y": "label"}}

    def load(uri: str, inputs: list[TensorSpec] = INPUT, **kw: Any) -> Any:
        return load_dataset(ref(uri, **kw), data_root=root, caps=caps, inputs=inputs, seed=0)

    for uri in ("file:d.npz", "file:arrays/"):
        arrays = load(uri)
        np.testing.assert_array_equal(arrays.x, x)
        np.testing.assert_array_equal(arrays.y, y)
    for uri, rows in (("file:pq/", 50), ("file:pq/part-0.parquet", 30), ("file:csv/", 20), ("file:csv/a.csv", 12)):
        arrays = load(uri, **columns)
        assert arrays.x.shape == (rows, 4), uri
        np.testing.assert_array_equal(arrays.x[:, 0], np.arange(rows) * 10)
        np.testing.assert_array_equal(arrays.y, np.arange(rows) % 3)
    images = load("file:imgs/", IMAGE_INPUT)
    assert images.classes == ("Zebra", "cat", "dog") and images.x.shape == (9, 8, 8, 3) and images.x.dtype == np.uint8

    # A changed file is read again (its version is its size and mtime), never served stale from the cache.
    pcsv.write_csv(table(5, start=100).drop(["vec"]), root / "csv" / "a.csv")
    assert load("file:csv/a.csv", **columns).x[0, 0] == 1000


def test_file_datasets_keep_the_path_rules(caps: Settings, tmp_path_factory: pytest.TempPathFactory) -> None:
    """The `file:` rules hold for folders too: nothing outside the data root or in an uploads folder is read
    through a symlink inside a folder, a folder may not hold the uploads, and the format must be one of them."""
    root = caps.data_root
    outside = tmp_path_factory.mktemp("outside")
    np.save(outside / "x.npy", np.zeros((4, 4), np.float32))
    (root / "arrays").mkdir()
    np.save(root / "arrays" / "y.npy", np.zeros(4))
    (root / "arrays" / "x.npy").symlink_to(outside / "x.npy")
    (root / "datasets").mkdir()
    (root / "notes.txt").write_text("x")
    for uri, match in (("file:arrays/", "holds a symlink"), ("file:./", "holds the uploads folders"),
                       ("file:notes.txt", "must name an .npz file"), ("file:../x/", "'..'")):
        with pytest.raises(DatasetInvalid, match=match):
            load_dataset(ref(uri), data_root=root, caps=caps, inputs=INPUT, seed=0)
    with pytest.raises(DatasetNotFound, match="file:missing/ does not exist"):
        load_dataset(ref("file:missing/"), data_root=root, caps=caps, inputs=INPUT, seed=0)
