"""Client-side reading of tables and image folders for upload (lrrt/client/files.py)."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.parquet as pq
import pytest
from PIL import Image

from lrrt.client.files import image_folder_arrays, table_arrays
from lrrt.problems import CapExceeded, DatasetError


def png(value: int, size: tuple[int, int] = (6, 5), mode: str = "RGB") -> bytes:
    buf = io.BytesIO()
    Image.new(mode, size, value if mode == "L" else (value,) * len(mode)).save(buf, format="PNG")
    return buf.getvalue()


def test_tables_by_columns(tmp_path: Path) -> None:
    t = pa.table({"a": [1.0, 2.0, 3.0], "b": [4.0, 5.0, 6.0], "label": [0, 1, 0]})
    pq.write_table(t, tmp_path / "t.parquet")
    pcsv.write_csv(t, tmp_path / "t.csv")
    for name in ("t.parquet", "t.csv"):
        arrays = table_arrays(tmp_path / name, {"x": ["a", "b"], "y": "label"})
        np.testing.assert_array_equal(arrays["x"], [[1, 4], [2, 5], [3, 6]])
        np.testing.assert_array_equal(arrays["y"], [0, 1, 0])
    with pytest.raises(DatasetError, match="no column 'nope'"):
        table_arrays(tmp_path / "t.csv", {"x": "nope", "y": "label"})
    (tmp_path / "bad.parquet").write_bytes(b"PAR1 not really")
    with pytest.raises(DatasetError, match="could not be read as a table"):
        table_arrays(tmp_path / "bad.parquet", {"x": "a", "y": "label"})


def test_image_folder_and_its_zip_give_the_same_arrays(tmp_path: Path) -> None:
    folder = tmp_path / "shapes"
    zipped = tmp_path / "shapes.zip"
    with zipfile.ZipFile(zipped, "w") as archive:
        for cls, value in (("b", 200), ("a", 20)):
            (folder / cls).mkdir(parents=True)
            for i, mode in enumerate(("RGB", "L", "RGBA")):
                body = png(value, (6 + i, 5), mode)
                (folder / cls / f"{i}.png").write_bytes(body)
                archive.writestr(f"shapes/{cls}/{i}.png", body)
        archive.writestr("shapes/notes.txt", "ignored")
    x, y, classes = image_folder_arrays(folder, (4, 4))
    zx, zy, zclasses = image_folder_arrays(zipped, (4, 4))
    assert classes == zclasses == ["a", "b"]
    assert x.dtype == np.uint8 and x.shape == (6, 4, 4, 3)
    np.testing.assert_array_equal(x, zx)
    np.testing.assert_array_equal(y, zy)
    assert abs(int(x[y == 0].mean()) - 20) <= 2 and abs(int(x[y == 1].mean()) - 200) <= 2


def test_hostile_image_uploads(tmp_path: Path) -> None:
    bomb = io.BytesIO()
    Image.new("1", (30000, 30000)).save(bomb, format="PNG")
    with zipfile.ZipFile(tmp_path / "bomb.zip", "w") as archive:
        archive.writestr("c/bomb.png", bomb.getvalue())
    with pytest.raises(CapExceeded, match="max_image_pixels"):
        image_folder_arrays(tmp_path / "bomb.zip", (8, 8))
    with zipfile.ZipFile(tmp_path / "cut.zip", "w") as archive:
        archive.writestr("c/cut.png", png(1, (64, 64))[:60])
    with pytest.raises(DatasetError, match="truncated or corrupt"):
        image_folder_arrays(tmp_path / "cut.zip", (8, 8))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="holds no JPEG, PNG or WebP"):
        image_folder_arrays(tmp_path / "empty", (8, 8))
