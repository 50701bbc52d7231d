"""Object-storage data benchmark: what a sweep reads from a bucket, against reading the whole dataset.

Starts moto's S3 server on 127.0.0.1 in a subprocess, which fills its own store with a Parquet table in
shards (`--table-gb`, default 2 GB of float32 features; 0 skips it) and an image folder of small PNGs
(`--images`, default 100,000 in 10 classes) through moto's Python API (about 1,000 objects/s, where PUTs
over HTTP fill 30-60/s), then serves them over HTTP. For each it measures, from this process and with
the worker's own reader (`worker.engine.sources`, its cache off):

- bytes fetched from the store and seconds until the job's arrays are ready, for a job with
  `max_samples` (`--samples`, default 4096): Parquet reads only the row groups that hold a drawn row,
  an image folder only the drawn files;
- the same for the whole dataset (every shard's bytes, every image), the floor of any reader that does not
  sample.

Bytes are counted where s3fs fetches them (`S3File._fetch_range`, `S3FileSystem._cat_file`). The last
line printed is one JSON object.

    python bench/data.py [--table-gb 2] [--images 100000] [--samples 4096]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CREDS = {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "AWS_DEFAULT_REGION": "us-east-1"}
FEATURES = 32
ROWS_PER_GROUP = 65_536
SHARD_ROWS = 16 * ROWS_PER_GROUP  # 64 MiB of float32 features per shard


def start_filled_moto(log: Path, table_gb: float, images: int) -> tuple[subprocess.Popen[str], dict[str, Any]]:
    """moto's server in a subprocess that fills its own store first (`serve_filled`); returns it and what it
    filled, once it serves."""
    proc = subprocess.Popen([sys.executable, __file__, "--serve", "--table-gb", str(table_gb), "--images", str(images)],
                            env={**os.environ, **CREDS}, stdout=subprocess.PIPE, stderr=log.open("ab"), text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        proc.kill()
        raise SystemExit(f"moto's server did not start; see {log}")
    return proc, json.loads(line)


def serve_filled(table_gb: float, images: int) -> None:
    """The server process: moto on a free port, the bucket filled through moto's own backend (no HTTP, no
    signing), one JSON line on stdout saying where and what, then serve until terminated."""
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.moto_server.threaded_moto_server import ThreadedMotoServer
    from moto.s3.models import s3_backends

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    backend = s3_backends[DEFAULT_ACCOUNT_ID]["aws"]
    backend.create_bucket("bench", "us-east-1")

    def put(key: str, body: bytes) -> None:
        backend.put_object("bench", key, body)

    began = time.perf_counter()
    rows, table_bytes = fill_table(put, table_gb)
    image_bytes = fill_images(put, images)
    host, port = server.get_host_and_port()
    print(json.dumps({"url": f"http://{host}:{port}", "rows": rows, "table_bytes": table_bytes,
                      "image_bytes": image_bytes, "fill_seconds": round(time.perf_counter() - began, 1)}), flush=True)
    threading.Event().wait()


class Counter:
    """Bytes s3fs fetches, counted where it fetches them."""

    def __init__(self) -> None:
        import s3fs.core

        self.bytes = 0
        fetch, cat = s3fs.core.S3File._fetch_range, s3fs.core.S3FileSystem._cat_file
        counter = self

        def _fetch_range(f: Any, start: int, end: int) -> bytes:
            data = fetch(f, start, end)
            counter.bytes += len(data)
            return data

        async def _cat_file(fs: Any, path: str, *args: Any, **kwargs: Any) -> bytes:
            data = await cat(fs, path, *args, **kwargs)
            counter.bytes += len(data)
            return data

        s3fs.core.S3File._fetch_range = _fetch_range
        s3fs.core.S3FileSystem._cat_file = _cat_file


def fill_table(put: Callable[[str, bytes], None], gb: float) -> tuple[int, int]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = int(gb * 1024**3 / (4 * FEATURES))
    rng = np.random.default_rng(0)
    total_bytes, shard = 0, 0
    for start in range(0, rows, SHARD_ROWS):
        n = min(SHARD_ROWS, rows - start)
        x = rng.standard_normal((n, FEATURES), dtype=np.float32)
        table = pa.table({**{f"f{i}": x[:, i] for i in range(FEATURES)}, "label": (x[:, 0] > 0).astype(np.int64)})
        buf = io.BytesIO()
        pq.write_table(table, buf, row_group_size=ROWS_PER_GROUP, compression="none")
        total_bytes += buf.tell()
        put(f"table/part-{shard:05d}.parquet", buf.getvalue())
        shard += 1
    return rows, total_bytes


def fill_images(put: Callable[[str, bytes], None], count: int) -> int:
    from PIL import Image

    rng = np.random.default_rng(1)

    total = 0
    for i in range(count):
        buf = io.BytesIO()
        Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(buf, format="PNG")
        put(f"images/class{i % 10}/{i:07d}.png", buf.getvalue())
        total += buf.tell()
    return total


def measure(ref: Any, settings: Any, inputs: Any, counter: Counter) -> dict[str, Any]:
    from worker.engine.sources import load_object

    counter.bytes = 0
    began = time.perf_counter()
    arrays = load_object(ref, settings, inputs=inputs, seed=0)
    return {"seconds": round(time.perf_counter() - began, 2), "bytes_read": counter.bytes, "rows": int(len(arrays.y))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--table-gb", type=float, default=2.0)
    parser.add_argument("--images", type=int, default=100_000)
    parser.add_argument("--samples", type=int, default=4096)
    parser.add_argument("--whole-images-max", type=int, default=20_000,
                        help="read the whole image folder only up to this many files (moto serves ~40 GETs/s here, "
                             "so 100,000 would take most of an hour); above it, report the sampled read's rate")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)  # the server subprocess
    args = parser.parse_args()
    if args.serve:
        serve_filled(args.table_gb, args.images)
        return
    os.environ.update(CREDS)

    from lrrt.settings import Settings
    from lrrt.spec import DatasetRef
    from worker.engine.data import TensorSpec

    with tempfile.TemporaryDirectory() as tmp:
        proc, filled = start_filled_moto(Path(tmp) / "moto.log", args.table_gb, args.images)
        try:
            settings = Settings(s3_endpoint_url=filled["url"], object_cache_bytes=0, max_dataset_bytes=64 * 1024**3,
                                max_object_keys=max(args.images + 10, 100_000), max_table_rows=10**10)
            counter = Counter()
            out: dict[str, Any] = {
                "bench": "data", "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "machine": f"{platform.machine()} {os.cpu_count()} cores", "fill_seconds": filled["fill_seconds"],
            }
            if filled["rows"]:
                columns = {"x": [f"f{i}" for i in range(FEATURES)], "y": "label"}
                table_in = [TensorSpec("x", (None, FEATURES), "float32")]
                table = DatasetRef(uri="s3://bench/table/", columns=columns)
                out["table"] = {"rows": filled["rows"], "bytes": filled["table_bytes"],
                                "sampled": measure(table.model_copy(update={"max_samples": args.samples}), settings,
                                                   table_in, counter),
                                "whole": measure(table, settings, table_in, counter)}
            if args.images:
                image_in = [TensorSpec("x", (None, 16, 16, 3), "float32")]
                images = DatasetRef(uri="s3://bench/images/")
                out["images"] = {"files": args.images, "bytes": filled["image_bytes"],
                                 "sampled": measure(images.model_copy(update={"max_samples": args.samples}), settings,
                                                    image_in, counter)}
                if args.images <= args.whole_images_max:
                    out["images"]["whole"] = measure(images, settings, image_in, counter)
        finally:
            proc.terminate()
            proc.wait(30)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
