"""A Python client for the lrrt HTTP API, for notebooks, scripts and ML platforms.

    from lrrt import Client
    lrrt = Client()                      # LRRT_URL (default http://127.0.0.1:8000), LRRT_API_KEY
    job = lrrt.submit(model, "builtin:digits", optimizers=["sgd", "adam"], sweep={"num_steps": 100})
    job = lrrt.wait(job["id"])           # polls, honouring Retry-After
    result = lrrt.result(job["id"])
    open("lr.png", "wb").write(lrrt.plot(job["id"]))

    found = lrrt.lr_find(model, x, y, optimizers=["sgd", "adam"], num_steps=200)   # the one-liner
    print(found.learning_rate); found.plot("lr.png"); optimizer = found.keras_optimizer()

`model` may be a Keras model (its `to_json()` is sent), the dict or the JSON string; NumPy values
anywhere in a spec are sent as JSON numbers and lists. Every error the API answers is raised as
`LrrtError`, which carries the problem object (`.problem`) and reads as the problem's title and
detail. Only httpx and NumPy are needed: Keras is never imported here (the model is duck-typed).
"""

from __future__ import annotations

import io
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from lrrt.client.result import RangeTestResult
from lrrt.status import TERMINAL

DEFAULT_URL = "http://127.0.0.1:8000"
#: `lr_find`'s default `weights`: a built model's own current weights (None: a fresh initialisation).
FROM_MODEL: Any = type("FromModel", (), {"__repr__": lambda self: "FROM_MODEL"})()
#: Answers `wait` treats as the server being away for a moment (a restart, a proxy without a backend);
#: None stands for no answer at all.
TRANSIENT = frozenset({None, 502, 503, 504})


class LrrtError(Exception):
    """An error answered by the API (a problem+json object), or the server could not be reached."""

    def __init__(self, problem: dict[str, Any]) -> None:
        self.problem = problem
        self.status: int | None = problem.get("status")
        super().__init__(describe_problem(problem))


def describe_problem(problem: dict[str, Any]) -> str:
    """A problem object as a readable message: title and detail, then each field error when the
    detail names only the first, and the rejected class names."""
    text = str(problem.get("title") or "Error")
    if problem.get("detail"):
        text += f": {problem['detail']}"
    errors = problem.get("errors") or []
    if len(errors) > 1:
        text += "".join(f"\n  - {e.get('pointer', '')}: {e.get('message', '')}" for e in errors)
    if problem.get("disallowed"):
        text += f"\n  not allowed: {', '.join(map(str, problem['disallowed']))}"
    return text


class Client:
    """The API's verbs as methods. `http` may be any `httpx.Client` (a FastAPI `TestClient`, say)."""

    def __init__(
        self,
        url: str | None = None,
        api_key: str | None = None,
        *,
        timeout: float = 30.0,
        http: httpx.Client | None = None,
    ) -> None:
        self.url = (url or os.environ.get("LRRT_URL") or DEFAULT_URL).rstrip("/")
        key = api_key if api_key is not None else os.environ.get("LRRT_API_KEY", "")
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        if http is None:
            http = httpx.Client(base_url=self.url, timeout=timeout)
        http.headers.update(headers)
        self.http = http

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_: Any) -> None:
        self.close()

    # ------------------------------------------------------------------ jobs
    def submit(
        self,
        model: Any,
        dataset: str | dict[str, Any],
        *,
        optimizers: Iterable[str | dict[str, Any]] | None = None,
        loss: str | None = None,
        sweep: dict[str, Any] | None = None,
        labels: dict[str, str] | None = None,
        idempotency_key: str | None = None,
        backend: str | None = None,
        weights: str | None = None,
    ) -> dict[str, Any]:
        """Submit a range test; returns the queued job. Omitted fields take the server's defaults
        (`backend`: `auto`, `tensorflow` or `jax`; the server's default is `auto`). `weights`: the
        `weights:<id>` uri `upload_weights` returned (or `file:<path>.weights.h5` on the server) to start
        every arm from; None starts from a fresh initialisation."""
        body = job_body(model, dataset, optimizers=optimizers, loss=loss, sweep=sweep, labels=labels, backend=backend,
                        weights=weights)
        headers = {"Content-Type": "application/json"}
        if idempotency_key:
            headers["Idempotency-Key"] = idempotency_key
        return self._json("POST", "/v1/jobs", content=json.dumps(body, default=_json_default), headers=headers)

    def status(self, job_id: str) -> dict[str, Any]:
        return self._json("GET", f"/v1/jobs/{job_id}")

    def wait(
        self,
        job_id: str,
        *,
        timeout: float | None = None,
        on_update: Callable[[dict[str, Any]], None] | None = None,
        outage_s: float = 60.0,
    ) -> dict[str, Any]:
        """Poll until the job is terminal and return it; `on_update` sees every new state.

        Sleeps what the server's `Retry-After` asks and sends `If-None-Match`, so an unchanged job
        costs the server a 304. Rides out the server being unreachable (a restart, a rolling deploy)
        for up to `outage_s` seconds in a row. Raises TimeoutError after `timeout` seconds.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        job: dict[str, Any] | None = None
        etag: str | None = None
        down_since: float | None = None
        while True:
            headers = {"If-None-Match": etag} if etag else None
            try:
                resp = self._request("GET", f"/v1/jobs/{job_id}", headers=headers)
            except LrrtError as exc:
                now = time.monotonic()
                down_since = down_since or now
                if exc.status not in TRANSIENT or now - down_since > outage_s or (deadline and now > deadline):
                    raise
                time.sleep(1.0)
                continue
            down_since = None
            if resp.status_code != 304:  # a 304 only answers a request that carried the last 200's ETag
                job, etag = _decode(resp), resp.headers.get("ETag")
                if on_update is not None:
                    on_update(job)
            assert job is not None
            if job["status"] in TERMINAL:
                return job
            pause = _retry_after(resp, default=1.0)
            if deadline is not None and time.monotonic() + pause > deadline:
                raise TimeoutError(f"job {job_id} still {job['status']} after {timeout} s")
            time.sleep(pause)

    def result(self, job_id: str) -> dict[str, Any]:
        return self._json("GET", f"/v1/jobs/{job_id}/result")

    def result_csv(self, job_id: str) -> str:
        """The curves as CSV: `label, step, lr, loss, smoothed_loss, loss_delta, val_loss`, a row per arm and step."""
        return self._request("GET", f"/v1/jobs/{job_id}/result.csv").text

    def plot(self, job_id: str, fmt: str = "png", kind: str = "both") -> bytes:
        """The charts as PNG or SVG bytes (`kind`: loss, delta or both)."""
        return self._request("GET", f"/v1/jobs/{job_id}/plot.{fmt}", params={"kind": kind}).content

    def cancel(self, job_id: str) -> dict[str, Any]:
        return self._json("POST", f"/v1/jobs/{job_id}/cancel")

    def delete(self, job_id: str) -> None:
        self._request("DELETE", f"/v1/jobs/{job_id}")

    def jobs(self, status: str | None = None, page_size: int = 50, page_token: str | None = None) -> dict[str, Any]:
        """One page, newest first: `{"items": [...], "next_page_token": ...}`."""
        params = {k: v for k, v in {"status": status, "page_size": page_size, "page_token": page_token}.items() if v}
        return self._json("GET", "/v1/jobs", params=params)

    # ------------------------------------------------------------------ datasets
    def upload_dataset(self, path: str | os.PathLike[str]) -> dict[str, Any]:
        """Upload an `.npz` with arrays `x` and `y` (optionally `x_val`, `y_val`); use its `uri`."""
        path = Path(path)
        with path.open("rb") as fh:
            return self._json("POST", "/v1/datasets", files={"file": (path.name, fh, "application/octet-stream")})

    def upload_arrays(self, x: Any, y: Any, x_val: Any = None, y_val: Any = None) -> dict[str, Any]:
        """Upload in-memory arrays (anything `np.asarray` takes) as an `.npz` written in memory; nothing
        touches the disk. Returns the dataset (`uri` is what `submit` takes).

        For a model with several inputs (outputs), pass a dict keyed by input (output) name: it is
        stored as `x_<name>` (`y_<name>`), as the worker expects."""
        arrays: dict[str, np.ndarray] = {}
        for group, value in (("x", x), ("y", y), ("x_val", x_val), ("y_val", y_val)):
            if isinstance(value, dict):
                arrays.update({f"{group}_{name}": np.asarray(a) for name, a in value.items()})
            elif value is not None:
                arrays[group] = np.asarray(value)
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)  # type: ignore[arg-type]  # numpy's stub types the first **kwds as allow_pickle
        files = {"file": ("arrays.npz", buffer.getvalue(), "application/octet-stream")}
        return self._json("POST", "/v1/datasets", files=files)

    def upload_table(self, path: str | os.PathLike[str], columns: dict[str, Any]) -> dict[str, Any]:
        """Upload a local `.parquet` or `.csv` table as arrays, its columns chosen as `dataset.columns` chooses
        them (`{"x": ["f1", "f2"], "y": "label"}`, or `x_<input>`/`y_<output>` keys)."""
        from lrrt.client.files import table_arrays

        arrays = table_arrays(path, columns)
        return self.upload_arrays(arrays["x"], arrays["y"])

    def upload_image_folder(self, path: str | os.PathLike[str], size: tuple[int, int], channels: int = 3) -> dict[str, Any]:
        """Upload a local image folder (or a `.zip` of one), one subfolder per class, resized to `size`
        (height, width) and kept uint8 (submit with `normalize: true` to scale it). The returned dataset
        gains `classes`: the class names in label order."""
        from lrrt.client.files import image_folder_arrays

        x, y, classes = image_folder_arrays(path, size, channels)
        return {**self.upload_arrays(x, y), "classes": classes}

    def datasets(self) -> list[dict[str, Any]]:
        """Your datasets, newest first."""
        return self._json("GET", "/v1/datasets")["items"]

    def dataset(self, dataset_id: str) -> dict[str, Any]:
        return self._json("GET", f"/v1/datasets/{dataset_id.removeprefix('dataset:')}")

    def delete_dataset(self, dataset_id: str) -> None:
        self._request("DELETE", f"/v1/datasets/{dataset_id.removeprefix('dataset:')}")

    # ------------------------------------------------------------------ weights
    def upload_weights(self, model_or_path: Any) -> dict[str, Any]:
        """Upload weights to start range tests from: a built Keras model (its current weights, saved with
        `save_weights` into a temporary `.weights.h5`) or the path of a Keras 3 `.weights.h5`. Returns the
        weights resource; pass its `uri` as `submit(..., weights=...)`."""
        if hasattr(model_or_path, "save_weights"):
            with tempfile.TemporaryDirectory(prefix="lrrt-weights-") as scratch:
                path = Path(scratch) / "model.weights.h5"
                model_or_path.save_weights(str(path))
                return self.upload_weights(path)
        path = Path(model_or_path)
        with path.open("rb") as fh:
            return self._json("POST", "/v1/weights", files={"file": (path.name, fh, "application/octet-stream")})

    def list_weights(self, page_size: int = 50, page_token: str | None = None) -> dict[str, Any]:
        """One page of your weights, newest first: `{"items": [...], "next_page_token": ...}`."""
        params = {k: v for k, v in {"page_size": page_size, "page_token": page_token}.items() if v}
        return self._json("GET", "/v1/weights", params=params)

    def get_weights(self, weights_id: str) -> dict[str, Any]:
        return self._json("GET", f"/v1/weights/{weights_id.removeprefix('weights:')}")

    def delete_weights(self, weights_id: str) -> None:
        self._request("DELETE", f"/v1/weights/{weights_id.removeprefix('weights:')}")

    # ------------------------------------------------------------------ the one-liner
    def lr_find(
        self,
        model: Any,
        x: Any,
        y: Any,
        *,
        optimizers: Iterable[str | dict[str, Any]] | None = None,
        loss: str | None = None,
        x_val: Any = None,
        y_val: Any = None,
        dataset: dict[str, Any] | None = None,
        labels: dict[str, str] | None = None,
        progress: bool = True,
        timeout: float | None = None,
        keep_dataset: bool = False,
        weights: Any = FROM_MODEL,
        **sweep: Any,
    ) -> RangeTestResult:
        """Upload `x, y` (and `x_val, y_val`), run the range test of `model` for each optimizer, follow
        it with a progress bar, and return its result (`.learning_rate`, `.suggestions`, `.plot()`,
        `.keras_optimizer()`). `**sweep` are the sweep fields (`num_steps=200, start_lr=1e-5, ...`);
        `dataset` the dataset options (`{"validation_split": 0.1, "normalize": True, ...}`). `optimizers`
        and `loss` left out: a compiled model's own (docs/api.md, "Compiled models"), else adam and
        sparse_categorical_crossentropy.

        A failed or cancelled job with recorded steps comes back with `.partial` true; one that ran no
        step raises `LrrtError` with the job's error. The uploaded arrays are deleted afterwards unless
        `keep_dataset`.

        `weights`: by default a built Keras model's current weights are uploaded and every arm starts
        from them (fine-tuning; `.weights` of the result names them); `None` asks for a fresh
        initialisation; a `weights:<id>` or `file:` reference is passed on as it is.
        """
        start, uploaded_weights = self._start_weights(model, weights)
        uploaded = self.upload_arrays(x, y, x_val, y_val)
        try:
            job = self.submit(model, {**(dataset or {}), "uri": uploaded["uri"]}, optimizers=optimizers,
                              loss=loss, sweep=sweep, labels=labels, weights=start)
            if progress:
                from rich.console import Console

                from lrrt.client.progress_bar import ProgressBar

                with ProgressBar(Console(stderr=True)) as show:
                    job = self.wait(job["id"], timeout=timeout, on_update=show)
            else:
                job = self.wait(job["id"], timeout=timeout)
            try:
                data = self.result(job["id"])
            except LrrtError as exc:
                raise LrrtError(job.get("error") or exc.problem) from None
        finally:
            if not keep_dataset:
                self._forget_dataset(uploaded["id"])
            if uploaded_weights is not None:
                self._forget_weights(uploaded_weights)
        return RangeTestResult(data, status=job["status"], job_id=job["id"], error=job.get("error"))

    def _start_weights(self, model: Any, weights: Any) -> tuple[str | None, str | None]:
        """(the job's `weights`, the id of weights uploaded for it) for `lr_find`'s `weights` argument."""
        if weights is FROM_MODEL:
            if not is_built_model(model):
                return None, None
            meta = self.upload_weights(model)
            return meta["uri"], meta["id"]
        return weights, None

    def _forget_weights(self, weights_id: str) -> None:
        try:
            self.delete_weights(weights_id)
        except LrrtError as exc:
            print(f"lrrt: could not delete uploaded weights {weights_id}: {exc}", file=sys.stderr)

    def _forget_dataset(self, dataset_id: str) -> None:
        """Delete an upload lr_find made; a failure to do so must not hide the job's own outcome."""
        try:
            self.delete_dataset(dataset_id)
        except LrrtError as exc:
            print(f"lrrt: could not delete uploaded dataset {dataset_id}: {exc}", file=sys.stderr)

    # ------------------------------------------------------------------ transport
    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        return _decode(self._request(method, path, **kwargs))

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            resp = self.http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise LrrtError(
                {
                    "title": "Cannot reach the lrrt server",
                    "detail": f"no answer at {self.url} ({exc}). Start one with `lrrt standalone`, or set LRRT_URL.",
                }
            ) from None
        if resp.status_code >= 400:
            raise LrrtError(_problem(resp))
        return resp


def job_body(model: Any, dataset: str | dict[str, Any], **fields: Any) -> dict[str, Any]:
    """A `POST /v1/jobs` body (a JobSpec) from `Client.submit`'s arguments (`optimizers`, `loss`,
    `sweep`, `labels`, `backend`); those left None or empty are left to the server's defaults."""
    unknown = fields.keys() - {"optimizers", "loss", "sweep", "labels", "backend", "weights"}
    if unknown:
        raise TypeError(f"unknown job fields {sorted(unknown)}: use optimizers, loss, sweep, labels, backend or weights")
    body: dict[str, Any] = {
        "model": model_json(model),
        "dataset": {"uri": dataset} if isinstance(dataset, str) else dataset,
    }
    if fields.get("optimizers") is not None:
        body["optimizers"] = [{"name": o} if isinstance(o, str) else o for o in fields["optimizers"]]
    if fields.get("loss") is not None:
        body["loss"] = fields["loss"]
    body.update({key: fields[key] for key in ("sweep", "labels", "backend", "weights") if fields.get(key)})
    return body


def is_built_model(model: Any) -> bool:
    """A Keras model whose variables exist (what `lr_find` starts from by default); duck-typed, no Keras."""
    return bool(getattr(model, "built", False)) and hasattr(model, "save_weights")


def model_json(model: Any) -> Any:
    """What to send as `model`: a Keras model's `to_json()`, or the dict / JSON string as given."""
    if hasattr(model, "to_json"):
        return json.loads(model.to_json())
    return model


def _json_default(value: Any) -> Any:
    """NumPy scalars and arrays (and anything else with `tolist`) as JSON numbers and lists."""
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serializable: send numbers, strings, lists or dicts")


def _decode(resp: httpx.Response) -> Any:
    return resp.json() if resp.content else None


def _problem(resp: httpx.Response) -> dict[str, Any]:
    try:
        body = resp.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and ("title" in body or "type" in body):
        return {"status": resp.status_code, **body}
    return {"status": resp.status_code, "title": resp.reason_phrase or "HTTP error", "detail": resp.text[:500]}


def _retry_after(resp: httpx.Response, default: float) -> float:
    try:
        return min(max(float(resp.headers.get("Retry-After", default)), 0.2), 10.0)
    except ValueError:
        return default
