"""Everything `POST /v1/jobs` checks before a job record exists, so that bad input is a 4xx and no job.

In order: the body parses as JSON (a nesting bomb is a 422, not a RecursionError), the model JSON is not
nested deeper than the cap, the body validates as a `JobSpec` (loss and optimizer names included), the
model passes exactly the worker's pre-build vetting (`lrrt.vetting.vet`: allow-list, Keras 2
rewrite, parameter cap), the sweep is within the deployment's caps, and the dataset reference points
at something this tenant may use. The worker repeats them and adds what only it can know (epochs
need the dataset size, the parameter count is exact once built, the arrays must fit the model).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError

from lrrt.problems import CapExceeded, DatasetError, DatasetInvalid, DatasetNotFound, WeightsError, WeightsNotFound
from lrrt.settings import Settings, get_settings
from lrrt.spec import JobSpec, cap_violations
from lrrt.store.jobs import Created, IdempotencyConflict, JobStore
from lrrt.vetting.datasets import array_groups, at_uri, check_uri, resolve_file
from lrrt.vetting.object_check import check_layout, check_object_dataset, local_layout
from lrrt.vetting.objects import OBJECT_SCHEMES
from lrrt.vetting.summary import ModelSummary, summarize
from lrrt.vetting.vet import check_arrays_fit, check_memory_on_rows, vet_spec
from lrrt.vetting.weights import WEIGHTS_FILES, at_weights, check_reference, inspect_weights
from service.datasets import DatasetStore, UploadStore
from service.problems import ProblemError


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
    """Bytes -> JobSpec; 422 for anything malformed. A model sent as a JSON string is parsed here, once.

    The model JSON's depth cap is checked on the spec's one walk of it (`JobSpec.model_summary`); a body
    that fails validation is walked here instead, so that a nesting bomb is reported as the cap it
    exceeds rather than as whichever schema error it also makes.
    """
    body = parse_json(raw)
    if isinstance(body, dict) and isinstance(body.get("model"), str):
        body["model"] = parse_json(body["model"], pointer="/model")
    try:
        spec = JobSpec.model_validate(body)
    except ValidationError as exc:
        if isinstance(body, dict) and isinstance(body.get("model"), (dict, list)):
            _check_depth(summarize(body["model"]), settings)
        raise RequestValidationError(
            [{**err, "loc": ("body", *err["loc"])} for err in exc.errors(include_url=False, include_input=False)]
        ) from None
    _check_depth(spec.model_summary, settings)
    return spec


def _check_depth(summary: ModelSummary, settings: Settings) -> None:
    if summary.depth > settings.max_json_depth:
        raise CapExceeded(f"the model JSON nests {summary.depth} levels deep; the limit is {settings.max_json_depth}",
                          cap="max_json_depth", limit=settings.max_json_depth, value=summary.depth)


def body_sha256(spec: JobSpec) -> str:
    """Fingerprint for Idempotency-Key: the validated spec, canonically serialized (so whitespace, key order
    and a model sent as a string or an object do not count as a different body)."""
    canonical = json.dumps(spec.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def replay(store: JobStore, tenant: str, idempotency_key: str | None, sha256: str) -> Created | None:
    """The job an earlier submission made under this Idempotency-Key with this body, or None.

    Read before the job is routed, so a retry gets its job back (200) even when the backends served
    changed in between; routing first could answer a retry of an existing job with 422
    backend-unavailable. `JobStore.create` checks the key again atomically, so two first submissions
    racing still make one job. The same key with another body raises IdempotencyConflict.
    """
    if not idempotency_key:
        return None
    raw = store.prior_submission(tenant, idempotency_key)
    if not raw:
        return None
    prior = json.loads(raw)
    if prior["body_sha256"] != sha256:
        raise IdempotencyConflict(prior["job_id"])
    job = store.get(prior["job_id"], tenant=tenant)
    return Created(job=job, replayed=True) if job is not None else None


def check_model(spec: JobSpec, settings: Settings) -> dict[str, Any]:
    """The worker's own pre-build checks (`lrrt.vetting.vet.vet_spec`): the allow-list verdict on the
    spec's summary of the JSON and on its Keras 3 rewrite, the parameter cap, the dataset reference's
    form. Raises EngineError subclasses, which the API answers as 422 problems. Returns the Keras 3
    config the worker will build."""
    return vet_spec(spec, settings)


def check_caps(spec: JobSpec, settings: Settings) -> None:
    """Batch size, repeats and steps (when set by num_steps) against the caps, all reported at once."""
    errors = [
        {"in": "body", "pointer": v.pointer, "type": "cap_exceeded", "limit": v.limit, "value": v.value,
         "message": v.message}
        for v in cap_violations(spec, settings)
    ]
    if errors:
        raise ProblemError(
            422, "cap-exceeded", "; ".join(str(e["message"]) for e in errors) + ". Lower the value(s) and resubmit.",
            title=CapExceeded.title, errors=errors,
        )


def check_dataset(spec: JobSpec, tenant: str, datasets: DatasetStore, data_root: Path, config: dict[str, Any],
                  settings: Settings | None = None) -> None:
    """The dataset reference must name something that exists and that this tenant may read; an upload's
    arrays (known from its metadata) must fit the model's inputs and outputs, and the memory guard is
    checked again on their row shapes where the model leaves sizes open.

    The rules are the worker's (`lrrt.vetting.datasets`, `lrrt.vetting.vet`); only the tenant's
    ownership of an upload is the API's to check, since the worker resolves `dataset:<id>` without
    knowing tenants.
    """
    settings = settings or get_settings()
    try:
        scheme, name = check_uri(spec.dataset.uri)
        if scheme in OBJECT_SCHEMES:  # granted prefix, then exists and fits (lrrt.vetting.object_check)
            check_object_dataset(spec.dataset, tenant, settings, config)
            return
        if scheme == "file":  # the same formats and checks as a store's, on the local filesystem
            check_layout(*local_layout(data_root, name, spec.dataset, settings), spec.dataset, settings, config)
            return
        if spec.dataset.format not in (None, "npz") or spec.dataset.columns:
            raise DatasetInvalid("dataset.format and dataset.columns apply to s3://, gs:// and file: datasets; "
                                 f"{scheme}: datasets are .npz arrays")
        meta = datasets.get(name, tenant) if scheme == "dataset" else None
        if scheme == "dataset" and meta is None:
            raise DatasetNotFound(f"dataset {name!r} not found: upload the .npz with POST /v1/datasets and use the uri "
                                  "it returns, or list yours with GET /v1/datasets")
        if meta is not None:
            check_arrays_fit(config, meta["shapes"])
            check_memory_on_rows(spec, config, meta["shapes"], settings or get_settings())
            check_held_out(spec, name, meta["shapes"])
    except DatasetError as exc:
        raise at_uri(exc) from None


def check_weights(spec: JobSpec, tenant: str, weights: UploadStore, settings: Settings) -> None:
    """The `weights` reference must name weights this tenant may read: its own upload (another tenant's
    id reads as unknown), or a `file:` under the data root that passes the same inspection as an upload.
    Whether they fit the model is the worker's to tell: only a built model knows its variables' paths."""
    if spec.weights is None:
        return
    try:
        scheme, name = check_reference(spec.weights)
        if scheme == "weights" and weights.get(name, tenant) is None:
            raise WeightsNotFound(f"weights {name!r} not found: upload the .weights.h5 with POST /v1/weights and use "
                                  "the uri it returns, or list yours with GET /v1/weights")
        if scheme == "file":
            inspect_weights(resolve_file(settings.data_root, name, WEIGHTS_FILES), settings.max_weights_bytes)
    except WeightsError as exc:
        raise at_weights(exc) from None


def check_held_out(spec: JobSpec, name: str, shapes: dict[str, list[int]]) -> None:
    """An upload without `x_val`/`y_val` has held-out rows only with `validation_split > 0` (the rule is
    `Sweep.held_out_missing`; a built-in dataset is checked by `JobSpec` itself)."""
    if spec.dataset.validation_split == 0 and not array_groups(shapes)["x_val"]:
        missing = spec.sweep.held_out_missing(f"dataset {name!r} has no x_val/y_val and dataset.validation_split is 0",
                                              "set dataset.validation_split > 0, or upload x_val and y_val")
        if missing is not None:
            raise DatasetInvalid(missing)


def _parts(pointer: str) -> list[str]:
    return [p for p in pointer.split("/") if p]
