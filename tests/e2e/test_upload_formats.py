"""`lrrt datasets upload` of a Parquet table, a CSV and a zipped image folder through a real `lrrt api`:
each becomes an `.npz` upload of x and y the server checks like any other."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.parquet as pq
import pytest
from PIL import Image

from lrrt.client.api import Client
from tests.e2e.conftest import REPO, Api

pytestmark = pytest.mark.e2e


def cli(api: Api, *args: str) -> subprocess.CompletedProcess[str]:
    env = {"LRRT_URL": api.url, "LRRT_API_KEY": "key-alice", "PATH": "/usr/bin:/bin"}
    return subprocess.run([sys.executable, "-m", "service.cli", "datasets", "upload", *args, "--json"], env=env,
                          capture_output=True, text=True, cwd=REPO, timeout=120)


def test_tables_and_a_zipped_image_folder_upload(api_server: Api, tmp_path: Path) -> None:
    t = pa.table({"a": [float(i) for i in range(20)], "b": [float(-i) for i in range(20)], "label": [i % 2 for i in range(20)]})
    pq.write_table(t, tmp_path / "t.parquet")
    pcsv.write_csv(t, tmp_path / "t.csv")
    for name in ("t.parquet", "t.csv"):
        done = cli(api_server, str(tmp_path / name), "--columns", '{"x": ["a", "b"], "y": "label"}')
        assert done.returncode == 0, done.stderr
        meta = json.loads(done.stdout)
        assert meta["shapes"] == {"x": [20, 2], "y": [20]}, meta
    with zipfile.ZipFile(tmp_path / "imgs.zip", "w") as archive:
        for cls in ("dog", "cat"):
            for i in range(3):
                buf = io.BytesIO()
                Image.new("RGB", (9 + i, 7), (i * 40, 0, 0)).save(buf, format="PNG")
                archive.writestr(f"imgs/{cls}/{i}.png", buf.getvalue())
    done = cli(api_server, str(tmp_path / "imgs.zip"), "--image-size", "8x8")
    assert done.returncode == 0, done.stderr
    meta = json.loads(done.stdout)
    assert meta["shapes"] == {"x": [6, 8, 8, 3], "y": [6]} and meta["classes"] == ["cat", "dog"], meta
    with Client(api_server.url, api_key="key-alice") as c:
        assert c.dataset(meta["id"])["shapes"]["x"] == [6, 8, 8, 3]
    done = cli(api_server, str(tmp_path / "t.csv"))
    assert done.returncode != 0 and "needs --columns" in done.stderr + done.stdout
    done = cli(api_server, str(tmp_path / "t.csv"), "--columns", '{"x": "zzz", "y": "label"}')
    assert done.returncode != 0 and "no column 'zzz'" in done.stderr + done.stdout and "Traceback" not in done.stderr
