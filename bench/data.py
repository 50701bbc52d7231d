"""Object-storage data benchmark: what a sweep reads from a bucket, against reading the whole dataset.

Starts moto's S3 server on 127.0.0.1 (a subprocess, a free port), fills it with a Parquet table in shards
(`--table-gb`, default 2 GB of float32 features) and an image folder of small PNGs (`--images`, default
100,000 in 10 classes), then for each measures, with the worker's own reader (`worker.engine.sources`,
its cache off):

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
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CREDS = {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "AWS_DEFAULT_REGION": "us-east-1"}
FEATURES = 32
ROWS_PER_GROUP = 65_536
SHARD_ROWS = 16 * ROWS_PER_GROUP  # 64 MiB of float32 features per shard


def start_moto(log: Path) -> tuple[subprocess.Popen[bytes], str]:
    from service.standalone import free_port

    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            env={**os.environ, **CREDS}, stdout=log.open("ab"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            if httpx.get(f"{url}/moto-api/", timeout=2).status_code < 500:
                return proc, url
        except httpx.TransportError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit("moto's server did not start")


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


def fill_table(s3: Any, gb: float) -> tuple[int, int]:
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
        buf.seek(0)
        s3.upload_fileobj(buf, "bench", f"table/part-{shard:05d}.parquet")
        shard += 1
    return rows, total_bytes


def fill_images(s3: Any, count: int) -> int:
    from PIL import Image

    rng = np.random.default_rng(1)

    def one(i: int) -> int:
        buf = io.BytesIO()
        Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(buf, format="PNG")
        s3.put_object(Bucket="bench", Key=f"images/class{i % 10}/{i:07d}.png", Body=buf.getvalue())
        return buf.tell()

    with ThreadPoolExecutor(16) as pool:
        return sum(pool.map(one, range(count)))


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
    args = parser.parse_args()
    os.environ.update(CREDS)
    import boto3

    from lrrt.settings import Settings
    from lrrt.spec import DatasetRef
    from worker.engine.data import TensorSpec

    with tempfile.TemporaryDirectory() as tmp:
        proc, url = start_moto(Path(tmp) / "moto.log")
        try:
            s3 = boto3.client("s3", endpoint_url=url, region_name="us-east-1")
            s3.create_bucket(Bucket="bench")
            began = time.perf_counter()
            rows, table_bytes = fill_table(s3, args.table_gb)
            image_bytes = fill_images(s3, args.images)
            fill_s = time.perf_counter() - began
            settings = Settings(s3_endpoint_url=url, object_cache_bytes=0, max_dataset_bytes=64 * 1024**3,
                                max_object_keys=max(args.images + 10, 100_000), max_table_rows=10**10)
            counter = Counter()
            columns = {"x": [f"f{i}" for i in range(FEATURES)], "y": "label"}
            table_in = [TensorSpec("x", (None, FEATURES), "float32")]
            image_in = [TensorSpec("x", (None, 16, 16, 3), "float32")]
            out = {
                "bench": "data", "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "machine": f"{platform.machine()} {os.cpu_count()} cores", "fill_seconds": round(fill_s, 1),
                "table": {"rows": rows, "bytes": table_bytes,
                          "sampled": measure(DatasetRef(uri="s3://bench/table/", columns=columns, max_samples=args.samples),
                                             settings, table_in, counter),
                          "whole": measure(DatasetRef(uri="s3://bench/table/", columns=columns), settings, table_in, counter)},
                "images": {"files": args.images, "bytes": image_bytes,
                           "sampled": measure(DatasetRef(uri="s3://bench/images/", max_samples=args.samples), settings,
                                              image_in, counter),
                           "whole": measure(DatasetRef(uri="s3://bench/images/"), settings, image_in, counter)},
            }
        finally:
            proc.terminate()
            proc.wait(30)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
