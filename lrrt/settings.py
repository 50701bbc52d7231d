"""Server-side configuration, read from `LRRT_*` environment variables (and an optional `.env`).

Shared by the API and the worker so both agree on Redis, the data root and the caps. Client-side
settings (`LRRT_URL`, `LRRT_API_KEY`) belong to the CLI/client, not here.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LRRT_", env_file=".env", extra="ignore")

    redis_url: str = Field("redis://127.0.0.1:6379/0", description="Broker, job store and pub/sub.")
    key_prefix: str = Field("lrrt", description="Prefix of every Redis key this deployment owns.")
    queue: str = Field("lrrt", description="Celery queue the API sends TensorFlow sweeps to; JAX sweeps go to "
                       "'<queue>.jax' (lrrt.routing.queue_for).")
    backend: Literal["tensorflow", "jax"] = Field(
        "tensorflow", description="Keras backend `lrrt worker` runs (`--backend` overrides it); each worker "
        "consumes its backend's queue.")
    api_keys: str = Field("", description="'tenant:key,tenant:key'. Empty disables auth (loopback binds only).")
    data_root: Path = Field(Path("lrrt-data"), description="Root of file: datasets and uploads.")
    result_ttl_s: int = Field(7 * 24 * 3600, ge=60, description="How long finished jobs and results are kept.")

    # Caps (defaults sized for one GPU worker; raise them per deployment).
    max_body_bytes: int = Field(4 * 1024 * 1024, description="Largest JSON request body.")
    max_json_depth: int = Field(64, description="Deepest nesting accepted in a model JSON.")
    max_layers: int = Field(1200, description="Most layers in a model (operation nodes count). 1200 admits every "
                            "keras.applications model (NASNetLarge: 1041).")
    max_params: int = Field(400_000_000, description="Most trainable + non-trainable parameters: a sanity bound "
                            "only (memory is the guard, `memory_limit_bytes`). 400M admits every keras.applications "
                            "model at 224x224 with 1000 classes (the largest, ConvNeXtXLarge: 350.1M).")
    memory_limit_bytes: int = Field(8 * 1024 ** 3, ge=0, description="Memory one run of a job may use, checked twice. "
                                    "At submission: the bytes one training step needs (weights, gradients, optimizer "
                                    "slots, activations at the job's batch size) as estimated from the JSON "
                                    "(lrrt.vetting.memory); over it, 422 cap-exceeded with the largest batch size "
                                    "that fits. In the worker: what a pool child may add to its resident memory "
                                    "while it runs, above what it held when the run began plus the backend's "
                                    "first-step cost (worker/memory.py); over it, the run fails with "
                                    "resource-exhausted after one attempt. 8 GiB suits a CPU standalone; "
                                    "docs/operations.md lists values for 24, 80 and 141 GB GPUs. 0 turns both off.")
    max_steps: int = Field(20_000, description="Most sweep steps per arm.")
    max_batch_size: int = Field(4096)
    max_repeats: int = Field(10)
    max_dataset_bytes: int = Field(512 * 1024 * 1024, description="Largest uploaded or file: dataset.")
    max_weights_bytes: int = Field(512 * 1024 * 1024, description="Largest uploaded or file: weights file "
                                   "(.weights.h5).")
    max_unfinished_jobs: int = Field(20, description="Queued + running jobs per tenant before 429.")
    job_time_limit_s: int = Field(3600, description="Wall time a job may run before it fails.")
    max_redeliveries: int = Field(2, description="Times a run of a job is retried after its worker died or stuck.")
    stuck_after_s: float = Field(600, gt=0, description="Floor of the stuck-run watchdog: a run that reports no "
                                 "chunk for max(stuck_chunk_factor x its expected chunk time, this) is stuck.")
    stuck_chunk_factor: float = Field(20, ge=1, description="Multiple of a run's expected chunk time (the mean so "
                                      "far in its process) after which it is stuck, above the floor.")

    # Object storage (`s3://`, `gs://` datasets; lrrt/vetting/objects.py). Endpoint and credentials come from the
    # deployment only: s3fs/gcsfs read AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_DEFAULT_REGION and
    # GOOGLE_APPLICATION_CREDENTIALS themselves; nothing in a request can name an endpoint or a credential.
    data_prefixes: str = Field("", description="Object-storage prefixes each tenant may read: "
                               "'team-a=s3://ml-data/team-a/;*=s3://public-sets/' ('*' = every tenant). Empty: none.")
    s3_endpoint_url: str | None = Field(None, description="S3-compatible endpoint (MinIO, Ceph, a local server); "
                                        "unset: AWS's own.")
    object_cache_dir: Path | None = Field(None, description="Worker-local cache of what a job read from object "
                                          "storage (keyed by the objects' ETags); unset: <tmp>/lrrt-object-cache.")
    object_cache_bytes: int = Field(2 * 1024 ** 3, ge=0, description="Bytes the worker-local object cache may "
                                    "hold before the least recently used entries go; 0 turns it off.")
    max_object_keys: int = Field(100_000, ge=1, description="Most keys listed under a dataset prefix (shards, "
                                 "images); a larger prefix is refused, not truncated.")
    max_image_pixels: int = Field(40_000_000, ge=1, description="Most pixels in one image (Pillow's "
                                  "decompression-bomb guard).")
    max_table_rows: int = Field(100_000_000, ge=1, description="Most rows a table (Parquet metadata, CSV) may "
                                "hold or claim.")
    max_csv_line_bytes: int = Field(1024 * 1024, ge=1024, description="Longest CSV line (and header).")

    @field_validator("data_prefixes")
    @classmethod
    def _prefixes_parse(cls, prefixes: str) -> str:
        from lrrt.vetting.objects import parse_prefixes

        parse_prefixes(prefixes)  # a malformed grant stops the process at startup, with the entry named
        return prefixes

    @field_validator("key_prefix")
    @classmethod
    def _no_colon(cls, prefix: str) -> str:
        return prefix.rstrip(":")

    def tenants_by_key(self) -> dict[str, str]:
        """Parse `api_keys` into {key: tenant}; malformed entries are a startup error, not a silent skip."""
        mapping: dict[str, str] = {}
        for entry in filter(None, (part.strip() for part in self.api_keys.split(","))):
            tenant, sep, key = entry.partition(":")
            if not sep or not tenant or not key:
                raise ValueError(f"LRRT_API_KEYS entry {entry!r} must look like 'tenant:key'")
            mapping[key] = tenant
        return mapping


@lru_cache
def get_settings() -> Settings:
    return Settings()
