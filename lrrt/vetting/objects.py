"""Object-storage dataset references (`s3://bucket/key`, `gs://bucket/key`): how they are spelled, which
tenant may read which prefix, and which format a reference names. One definition for the API (which
refuses at submission) and the worker (which checks again before it reads anything).

Grants come from the deployment (`LRRT_DATA_PREFIXES`, `tenant=prefix;tenant=prefix;*=prefix`), never
from a request. A key is compared with a granted prefix as text, after spelling rules that leave one way
to write it: no `.`/`..` or empty (`//`) segments, no percent-encoding (stores take keys literally, so
`%2e%2e` is refused rather than decoded or passed on), no scheme or `:` in the key, no `?`/`#` (s3fs reads
`?versionId=`), no glob characters, no backslashes or control characters, UTF-8 only. A reference outside
the tenant's prefixes is refused with the same answer whether or not the object exists: the check needs
no store and is made before any store is asked.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from lrrt.problems import DatasetInvalid

OBJECT_SCHEMES = ("s3", "gs")
FORMATS = ("npz", "npy", "parquet", "csv", "image_folder")
EXTENSIONS = {".npz": "npz", ".npy": "npy", ".parquet": "parquet", ".pq": "parquet", ".csv": "csv"}
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp")
#: S3's and GCS's bucket names: lower-case letters, digits, dots, hyphens (underscores on GCS), 3..63.
BUCKET = re.compile(r"[a-z0-9][a-z0-9._-]{1,61}[a-z0-9]")
MAX_KEY_BYTES = 1024
_FORBIDDEN = {
    "%": "percent-encoding is not decoded: write the key exactly as it is stored",
    "\\": "backslashes are not allowed",
    ":": "a key may not hold ':' (no scheme or second URI inside a key)",
    "?": "'?' is not allowed (no query strings or version ids in the uri)",
    "#": "'#' is not allowed",
    "*": "glob characters are not allowed", "[": "glob characters are not allowed",
    "]": "glob characters are not allowed", "{": "glob characters are not allowed", "}": "glob characters are not allowed",
}
_EXAMPLE = "s3://bucket/path/data.parquet (a file) or s3://bucket/path/ (a prefix of shards or an image folder)"


@dataclass(frozen=True)
class ObjectUri:
    """`<scheme>://<bucket>/<key>`; a key ending in `/` (or empty) is a prefix."""

    scheme: str
    bucket: str
    key: str

    @property
    def uri(self) -> str:
        return f"{self.scheme}://{self.bucket}/{self.key}"

    @property
    def path(self) -> str:
        """The path fsspec's s3fs/gcsfs take: `bucket/key` (without a trailing `/`)."""
        return f"{self.bucket}/{self.key}".rstrip("/")

    @property
    def is_prefix(self) -> bool:
        return self.key == "" or self.key.endswith("/")

    def within(self, prefix: ObjectUri) -> bool:
        return self.scheme == prefix.scheme and self.bucket == prefix.bucket and self.key.startswith(prefix.key)


def is_object_uri(uri: str) -> bool:
    return uri.partition(":")[0] in OBJECT_SCHEMES


def parse_object_uri(uri: str) -> ObjectUri:
    """The parts of a well-spelled object URI; raises DatasetInvalid saying what to change (from the text
    alone: nothing here asks a store)."""
    scheme, sep, rest = uri.partition("://")
    if not sep or scheme not in OBJECT_SCHEMES:
        raise DatasetInvalid(f"object-storage uris look like {_EXAMPLE} (or gs://...)")
    try:
        rest.encode("utf-8")
    except UnicodeEncodeError:
        raise DatasetInvalid("the uri is not valid UTF-8 text; write the key as it is stored") from None
    bucket, slash, key = rest.partition("/")
    if not slash:
        raise DatasetInvalid(f"give a key or a prefix after the bucket: {_EXAMPLE}")
    if not BUCKET.fullmatch(bucket) or ".." in bucket:
        raise DatasetInvalid(f"{bucket[:70]!r} is not a bucket name (lower-case letters, digits, '.', '-'; no user, "
                             f"port or credentials): {_EXAMPLE}")
    if len(key.encode("utf-8")) > MAX_KEY_BYTES:
        raise DatasetInvalid(f"the key is longer than {MAX_KEY_BYTES} bytes")
    if any(ord(c) < 32 or ord(c) == 127 for c in key):
        raise DatasetInvalid("the key holds control characters; write the key as it is stored")
    for char, why in _FORBIDDEN.items():
        if char in key:
            raise DatasetInvalid(f"the key {key[:80]!r} holds {char!r}: {why}")
    segments = key.split("/")
    body = segments[:-1] if segments[-1] == "" else segments  # a trailing '/' marks a prefix
    if key and any(s in ("", ".", "..") for s in body):
        raise DatasetInvalid(f"the key {key[:80]!r} has an empty, '.' or '..' segment ('//', '/./', '/../'): "
                             "give the plain key below the bucket")
    if key.startswith("/"):
        raise DatasetInvalid("the key may not start with '/'")
    return ObjectUri(scheme, bucket, key)


def parse_prefixes(text: str) -> list[tuple[str, ObjectUri]]:
    """`LRRT_DATA_PREFIXES` as (tenant or '*', prefix) pairs; a malformed entry is a startup error (ValueError)."""
    grants = []
    for entry in filter(None, (part.strip() for part in text.split(";"))):
        tenant, sep, prefix = entry.partition("=")
        tenant, prefix = tenant.strip(), prefix.strip()
        if not sep or not tenant or not prefix:
            raise ValueError(f"LRRT_DATA_PREFIXES entry {entry!r} must look like 'tenant=s3://bucket/prefix/'")
        try:
            parsed = parse_object_uri(prefix)
        except DatasetInvalid as exc:
            raise ValueError(f"LRRT_DATA_PREFIXES entry {entry!r}: {exc.detail}") from None
        if not parsed.is_prefix:
            raise ValueError(f"LRRT_DATA_PREFIXES entry {entry!r}: a prefix must end with '/' (so 'team-a/' "
                             "does not also grant 'team-ab/')")
        grants.append((tenant, parsed))
    return grants


def prefixes_for(tenant: str, text: str) -> list[ObjectUri]:
    return [prefix for who, prefix in parse_prefixes(text) if who in ("*", tenant)]


def check_granted(uri: str, tenant: str, prefixes: str) -> ObjectUri:
    """The parsed `uri` when it lies under a prefix granted to `tenant`; otherwise DatasetInvalid. The answer
    depends on the text and the grants only, so it cannot tell whether the object exists."""
    parsed = parse_object_uri(uri)
    granted = prefixes_for(tenant, prefixes)
    if not any(parsed.within(prefix) for prefix in granted):
        where = ", ".join(p.uri for p in granted) or "none (the operator sets LRRT_DATA_PREFIXES)"
        raise DatasetInvalid(f"{uri[:200]} is not under a prefix your tenant may read; use a uri under one of: {where}, "
                             "or upload the data with POST /v1/datasets", granted=[p.uri for p in granted])
    return parsed


def recheck_grant(uri: str, tenant: str, prefixes: str) -> None:
    """The worker's `check_granted` before it reads: the API checked the grant at submit, but the
    deployment's grants (this process's LRRT_DATA_PREFIXES) may have changed since, and a job must not
    read what its tenant may no longer read. Only object-storage URIs have grants."""
    if is_object_uri(uri):
        check_granted(uri, tenant, prefixes)


def format_of(uri: str, declared: str | None) -> str | None:
    """The format a reference names: `declared` when given, else by extension; None for a prefix that
    only a listing can tell (shards or an image folder)."""
    if declared is not None:
        return declared
    key = uri.rsplit("/", 1)[-1].lower()
    for ext, fmt in EXTENSIONS.items():
        if key.endswith(ext):
            return fmt
    if uri.endswith("/"):
        return None
    raise DatasetInvalid(f"cannot tell the format of {uri[:120]!r} from its extension: name a .npz, .npy, .parquet "
                         f"or .csv file, a prefix ending in '/', or set dataset.format to one of {', '.join(FORMATS)}")


def format_of_listing(uri: str, names: list[str]) -> str:
    """The format of a prefix from its keys (relative to the prefix): shards by extension, or class
    subfolders of images."""
    files = [n for n in names if "/" not in n]
    exts = {EXTENSIONS.get("." + n.rsplit(".", 1)[-1].lower()) for n in files if "." in n}
    exts.discard(None)
    if len(exts) == 1:
        return exts.pop()  # type: ignore[return-value]
    if any("/" in n and n.lower().endswith(IMAGE_EXTENSIONS) for n in names):
        return "image_folder"
    raise DatasetInvalid(f"cannot tell the format of the prefix {uri[:120]}: it should hold .parquet or .csv shards, "
                         ".npy arrays, or one subfolder of images per class; or set dataset.format")


def column_groups(columns: dict[str, Any]) -> dict[str, dict[str | None, list[str] | str]]:
    """`dataset.columns` by group: {'x': {None or input name: column(s)}, 'y': {...}}; DatasetInvalid for
    keys that fit no rule. A list of columns feeds one input as a row vector; one column may hold
    fixed-length lists."""
    groups: dict[str, dict[str | None, list[str] | str]] = {"x": {}, "y": {}}
    for key, value in columns.items():
        group = key[0] if key in ("x", "y") or key[:2] in ("x_", "y_") else None
        if group is None:
            raise DatasetInvalid(f"dataset.columns key {key!r}: use 'x' and 'y', or 'x_<input name>' / 'y_<output name>'")
        name = key[2:] or None
        if name is None and key not in ("x", "y"):
            raise DatasetInvalid(f"dataset.columns key {key!r} names no input or output")
        if isinstance(value, str):
            names: list[str] | str = value
        elif isinstance(value, list) and value and all(isinstance(v, str) for v in value):
            names = list(value)
        else:
            raise DatasetInvalid(f"dataset.columns[{key!r}] must be a column name or a non-empty list of column names")
        groups[group][name] = names
    for group in ("x", "y"):
        if not groups[group]:
            raise DatasetInvalid(f"dataset.columns needs {group!r} (or {group}_<name>) naming the "
                                 f"{'input' if group == 'x' else 'target'} column(s), e.g. "
                                 '{"x": ["f1", "f2"], "y": "label"}')
        if None in groups[group] and len(groups[group]) > 1:
            raise DatasetInvalid(f"dataset.columns: use either {group!r} or {group}_<name> keys, not both")
    return groups


def column_names(columns: dict[str, Any]) -> list[str]:
    """Every column `dataset.columns` reads, each once, in order."""
    seen: dict[str, None] = {}
    for names in (n for g in column_groups(columns).values() for n in g.values()):
        for name in [names] if isinstance(names, str) else names:
            seen.setdefault(name)
    return list(seen)
