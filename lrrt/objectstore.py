"""Reading object storage through fsspec (s3fs, gcsfs), for the API's cheap checks at submission and the
worker's reads: one place that builds the filesystem from the deployment's settings and turns the
stores' errors (botocore, aiohttp, google-auth) into problems that name the URI, never a trace.

The endpoint and credentials are the deployment's (`LRRT_S3_ENDPOINT_URL`, the AWS_* variables, GCS's
application credentials); a request names a bucket and key and nothing else.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from lrrt.problems import CapExceeded, DatasetError, DatasetNotFound, EngineError
from lrrt.settings import Settings
from lrrt.vetting.objects import ObjectUri

#: Exception class names that mean the store refused the deployment's credentials.
_DENIED = ("NoCredentialsError", "PartialCredentialsError", "RefreshError", "DefaultCredentialsError",
           "InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "Forbidden", "ClientAuthenticationError")
#: ... and that the store could not be reached at all.
_UNREACHABLE = ("EndpointConnectionError", "ConnectTimeoutError", "ReadTimeoutError", "ClientConnectorError",
                "ServerDisconnectedError", "ConnectionError", "ConnectionRefusedError", "TimeoutError",
                "ClientOSError", "ProxyConnectionError")


def filesystem(scheme: str, settings: Settings) -> Any:
    """A fresh fsspec filesystem for `scheme` (no instance cache: settings differ between deployments and
    tests, and a cached instance would keep another's endpoint or credentials)."""
    import fsspec

    if scheme == "s3":
        client_kwargs = {"endpoint_url": settings.s3_endpoint_url} if settings.s3_endpoint_url else {}
        # Two retries, not botocore's default of many with back-off: a dead endpoint is reported, not waited on.
        return fsspec.filesystem("s3", skip_instance_cache=True, client_kwargs=client_kwargs,
                                 config_kwargs={"retries": {"max_attempts": 2}, "connect_timeout": 10, "read_timeout": 60})
    if scheme == "gs":
        return fsspec.filesystem("gcs", skip_instance_cache=True)
    raise ValueError(f"not an object-storage scheme: {scheme}")


def problem_for(exc: BaseException, uri: str) -> EngineError:
    """The problem a store's exception means, naming `uri`; never its trace."""
    if isinstance(exc, EngineError):
        return exc
    names = {cls.__name__ for cls in type(exc).__mro__}
    text = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, FileNotFoundError) or "NoSuchKey" in text or "NoSuchBucket" in text:
        return DatasetNotFound(f"{uri[:200]} does not exist in the object store: check the bucket and key (a prefix "
                               "must end in '/' and hold the data)", uri=uri[:200])
    if isinstance(exc, PermissionError) or names & set(_DENIED) or any(n in text for n in _DENIED):
        return DatasetError(f"the object store refused this deployment's credentials for {uri[:200]} "
                            f"({type(exc).__name__}); the operator must grant the server's credentials read access "
                            "(AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, or GCS's application credentials)",
                            uri=uri[:200], reason="access-denied")
    if names & set(_UNREACHABLE) or isinstance(exc, (ConnectionError, TimeoutError)):
        return DatasetError(f"the object store holding {uri[:200]} could not be reached ({type(exc).__name__}); "
                            "try again later, or ask the operator to check LRRT_S3_ENDPOINT_URL and the network",
                            uri=uri[:200], reason="unreachable")
    return DatasetError(f"{uri[:200]} could not be read from the object store ({type(exc).__name__}: {str(exc)[:200]})",
                        uri=uri[:200], reason="store-error")


@contextlib.contextmanager
def store_errors(uri: str) -> Iterator[None]:
    """Run a store call, turning whatever it raises into a problem naming `uri`."""
    try:
        yield
    except EngineError:
        raise
    except Exception as exc:  # botocore, aiohttp, google-auth and OSError spellings of the same few failures
        raise problem_for(exc, uri) from None


def info(fs: Any, obj: ObjectUri) -> dict[str, Any]:
    """The object's metadata (size, ETag); DatasetNotFound when there is no such object."""
    with store_errors(obj.uri):
        found = fs.info(obj.path)
    if found.get("type") == "directory":
        raise DatasetNotFound(f"{obj.uri[:200]} is a prefix, not an object: end the uri with '/' to read everything "
                              "under it", uri=obj.uri[:200])
    return dict(found)


def list_prefix(fs: Any, obj: ObjectUri, *, max_keys: int) -> list[dict[str, Any]]:
    """Every object under the prefix `obj` (recursively), each with its `name` relative to the prefix,
    `size` and `etag`; refused with CapExceeded when there are more than `max_keys`, after reading at most
    max_keys + 1 of them. DatasetNotFound when there are none."""
    with store_errors(obj.uri):
        if hasattr(fs, "_iterdir"):  # s3fs: page through ListObjectsV2 and stop at the cap
            from fsspec.asyn import sync

            async def collect() -> list[dict[str, Any]]:
                out: list[dict[str, Any]] = []
                async for item in fs._iterdir(obj.bucket, delimiter="", prefix=obj.key):
                    if item.get("type") != "directory":
                        out.append(item)
                    if len(out) > max_keys:
                        break
                return out

            found = sync(fs.loop, collect)
        else:
            found = list(fs.find(obj.path, detail=True).values())
    if len(found) > max_keys:
        raise CapExceeded(f"{obj.uri[:200]} holds more than {max_keys} objects; the limit is {max_keys}: point at a "
                          "smaller prefix, or shard the data into fewer, larger files", cap="max_object_keys",
                          limit=max_keys, value=f">{max_keys}")
    base = obj.path + "/"
    items = []
    for item in found:
        name = str(item["name"])
        relative = name[len(base):] if name.startswith(base) else name.rsplit("/", 1)[-1]
        if not relative or relative.endswith("/"):
            continue
        items.append({"name": relative, "size": int(item.get("size") or 0), "etag": etag_of(item)})
    if not items:
        raise DatasetNotFound(f"{obj.uri[:200]} does not exist or holds no objects: check the prefix", uri=obj.uri[:200])
    return sorted(items, key=lambda i: i["name"])


def etag_of(item: dict[str, Any]) -> str:
    """A version marker of one object: its ETag (S3), generation or md5 (GCS), else its size and mtime."""
    for key in ("ETag", "etag", "generation", "md5Hash", "VersionId"):
        if item.get(key):
            return str(item[key]).strip('"')
    return f"{item.get('size')}-{item.get('LastModified') or item.get('mtime') or item.get('updated')}"
