"""Everything `POST /v1/jobs` checks before a job record exists, so that bad input is a 4xx and no job.

In order: the body parses as JSON (a nesting bomb is a 422, not a RecursionError), the model JSON is not
nested deeper than the cap, the body validates as a `JobSpec`, the model passes the allow-list walk
and the parameter cap, the sweep is within the deployment's caps, and the dataset reference points at
something this tenant may use. The worker repeats the checks it can make better (epochs need the
dataset size, the parameter count is exact once built).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path, PurePosixPath
from typing import Any, NoReturn

from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError

from service.datasets import DatasetStore
from service.problems import ProblemError
from worker.core.allowlist import check_model_json, check_params, json_depth
from worker.core.problems import CapExceeded
from worker.core.settings import Settings
from worker.core.spec import JobSpec, cap_violations

BUILTIN_DATASETS = frozenset({"digits"})
KERAS_DATASETS = frozenset({"mnist", "fashion_mnist", "cifar10", "cifar100"})


def parse_json(raw: bytes | str, *, pointer: str = "") -> Any:
    """json.loads, with syntax errors and nesting bombs answered as 422 problems that say where."""
    try:
        return json.loads(raw)
    except json.JSONDecodeError as exc:
        raise RequestValidationError(
            [{"loc": ("body", *_parts(pointer)), "type": "json_invalid",
              "msg": f"not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"}]
        ) from None
    except RecursionError:
        raise RequestValidationError(
            [{"loc": ("body", *_parts(pointer)), "type": "json_too_deep",
              "msg": "JSON nested far too deep; flatten it (see the max_json_depth cap)"}]
        ) from None
    except UnicodeDecodeError as exc:  # json.loads guesses UTF-16/32 from the first bytes, then fails here
        raise RequestValidationError(
            [{"loc": ("body", *_parts(pointer)), "type": "json_invalid",
              "msg": f"the body is not UTF-8 encoded JSON ({exc.reason} at byte {exc.start}); send UTF-8"}]
        ) from None


def parse_spec(raw: bytes, settings: Settings) -> JobSpec:
    """Bytes -> JobSpec; 422 for anything malformed. A model sent as a JSON string is parsed here, once."""
    body = parse_json(raw)
    if isinstance(body, dict) and isinstance(body.get("model"), str):
        body["model"] = parse_json(body["model"], pointer="/model")
    if isinstance(body, dict) and isinstance(body.get("model"), (dict, list)):
        depth = json_depth(body["model"])
        if depth > settings.max_json_depth:
            raise CapExceeded(f"the model JSON nests {depth} levels deep; the limit is {settings.max_json_depth}",
                              cap="max_json_depth", limit=settings.max_json_depth, value=depth)
    try:
        return JobSpec.model_validate(body)
    except ValidationError as exc:
        raise RequestValidationError(
            [{**err, "loc": ("body", *err["loc"])} for err in exc.errors(include_url=False, include_input=False)]
        ) from None


def body_sha256(spec: JobSpec) -> str:
    """Fingerprint for Idempotency-Key: the validated spec, canonically serialized (so whitespace, key order
    and a model sent as a string or an object do not count as a different body)."""
    canonical = json.dumps(spec.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def check_model(spec: JobSpec, settings: Settings) -> None:
    """The allow-list walk and the parameter cap; raises ModelRejected / CapExceeded (422 problems)."""
    check_model_json(spec.model, max_depth=settings.max_json_depth, max_layers=settings.max_layers)
    check_params(spec.model, max_params=settings.max_params)


def check_caps(spec: JobSpec, settings: Settings) -> None:
    """Batch size, repeats and steps (when set by num_steps) against the caps, all reported at once."""
    errors = [
        {"in": "body", "pointer": v.pointer, "type": "cap_exceeded", "limit": v.limit, "value": v.value,
         "message": v.message}
        for v in cap_violations(spec, settings)
    ]
    if errors:
        raise ProblemError(
            422, "cap-exceeded", "; ".join(e["message"] for e in errors) + ". Lower the value(s) and resubmit.",
            title=CapExceeded.title, errors=errors,
        )


def check_dataset(spec: JobSpec, tenant: str, datasets: DatasetStore, data_root: Path) -> None:
    """The dataset reference must name something that exists and that this tenant may read."""
    scheme, _, name = spec.dataset.uri.partition(":")
    if scheme == "builtin" and name not in BUILTIN_DATASETS:
        _dataset_problem("dataset-invalid", f"unknown builtin dataset {name!r}: use builtin:digits")
    if scheme == "keras" and name not in KERAS_DATASETS:
        _dataset_problem("dataset-invalid", f"unknown Keras dataset {name!r}: use one of "
                         + ", ".join(f"keras:{n}" for n in sorted(KERAS_DATASETS)))
    if scheme == "dataset" and datasets.get(name, tenant) is None:
        _dataset_problem("dataset-not-found", f"dataset {name!r} not found: upload the .npz with POST /v1/datasets and use the uri "
                         "it returns, or list yours with GET /v1/datasets")
    if scheme == "file":
        _check_file(name, data_root)


def _check_file(relative: str, data_root: Path) -> None:
    path = PurePosixPath(relative)
    if path.is_absolute() or relative.startswith("\\") or ":" in (path.parts or ("",))[0]:
        _dataset_problem("dataset-invalid", "file: paths are relative to the server's data root; drop the leading '/' or drive")
    if ".." in path.parts:
        _dataset_problem("dataset-invalid", "file: paths may not contain '..'; give the path below the server's data root")
    root = data_root.resolve()
    try:
        target = (root / path).resolve()
        found = target.is_file()
    except (ValueError, OSError) as exc:  # NUL bytes, names or paths longer than the filesystem allows
        _dataset_problem("dataset-invalid", f"file:{relative[:80]!r} is not a usable path ({exc}); give a plain "
                         "relative path to an .npz under the server's data root")
    if not target.is_relative_to(root):
        _dataset_problem("dataset-invalid", "file: path leads outside the server's data root (through a symlink); copy the file in")
    if not found:
        _dataset_problem("dataset-not-found", f"file:{relative} does not exist under the server's data root; check the path, or upload "
                         "the .npz with POST /v1/datasets")


def _dataset_problem(slug: str, message: str) -> NoReturn:
    raise ProblemError(
        422, slug, message + ".", title="The dataset reference cannot be used",
        errors=[{"in": "body", "pointer": "/dataset/uri", "type": "dataset", "message": message}],
    )


def _parts(pointer: str) -> list[str]:
    return [p for p in pointer.split("/") if p]
