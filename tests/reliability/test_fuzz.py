"""Property-based hostile input (hypothesis, schemathesis), in-process against the ASGI app.

- schemathesis against /openapi.json: no 5xx, every response conforms to the documented schema.
- The model allow-list (the summary walk with its parameter estimate, then its verdict) on random
  JSON and on mutated real `to_json()` output: only `ModelRejected` / `CapExceeded` escape, and no module
  at all is imported while it runs (so the canary module named in the payloads never is).
- Mutated models, random bodies, corrupted uploads, `file:` paths and Authorization headers sent to the
  API: never a 5xx, and whatever is accepted is safe (a readable dataset, a path inside the data root).

Examples are derandomized, so CI sees the same ones each run; LRRT_FUZZ_EXAMPLES=N raises every test's
count for a longer hunt.
"""

from __future__ import annotations

import copy
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

hypothesis = pytest.importorskip("hypothesis", reason="pip install -e '.[dev]' (hypothesis)")
schemathesis = pytest.importorskip("schemathesis", reason="pip install -e '.[dev]' (schemathesis)")

from fastapi.testclient import TestClient  # noqa: E402
from hypothesis import HealthCheck, given  # noqa: E402
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from schemathesis.checks import negative_data_rejection, not_a_server_error  # noqa: E402

from lrrt.problems import CapExceeded, DatasetError, ModelRejected  # noqa: E402
from lrrt.settings import Settings  # noqa: E402
from lrrt.vetting.allowlist import NEVER_ALLOWED  # noqa: E402
from lrrt.vetting.summary import summarize  # noqa: E402
from lrrt.vetting.vet import check_allowed  # noqa: E402
from tests.e2e.conftest import EXAMPLES  # noqa: E402
from tests.service.api.conftest import ALICE, make_spec  # noqa: E402

from .hostile import (  # noqa: E402
    CANARY,
    CANARY_MARKER,
    DATASET_CAP,
    HOSTILE_APP,
    VALID_NPZ,
    assert_problem,
    upload,
)

pytestmark = pytest.mark.usefixtures("drop_queue")

EXAMPLES_N = int(os.environ.get("LRRT_FUZZ_EXAMPLES", "0"))


def fuzz(n: int) -> Any:
    """`n` examples (or LRRT_FUZZ_EXAMPLES), derandomized, no deadline (2 shared cores)."""
    return hsettings(max_examples=EXAMPLES_N or n, deadline=None, derandomize=True, database=None,
                     suppress_health_check=list(HealthCheck))


# ------------------------------------------------------------------------------------------ schemathesis
schema = schemathesis.openapi.from_asgi("/openapi.json", HOSTILE_APP)


# /events streams until its job ends (no worker runs jobs here), so it is left out.
@schema.exclude(path_regex=r"/events$").parametrize()
@fuzz(30)
def test_openapi_no_5xx_and_responses_match_the_schema(hostile_settings: Settings, case: Any) -> None:
    # /readyz answers its documented 503 here by design: no worker runs beside this in-process app.
    # Unknown query parameters are ignored, as REST services conventionally do; schemathesis counts them
    # as negative data that must be refused, which is not this test's claim (no 5xx, schema-true answers).
    excluded = [negative_data_rejection] + ([not_a_server_error] if case.path == "/readyz" else [])
    response = case.call_and_validate(headers={**ALICE, **(case.headers or {})}, excluded_checks=excluded)
    assert response.status_code < 500 or (case.path, response.status_code) == ("/readyz", 503)


# ------------------------------------------------------------------------------------------ model JSON
REAL_MODELS = [json.loads((EXAMPLES / name).read_text()) for name in ("digits_mlp.json", "mnist_convnet.json")]
KEYS = ["class_name", "module", "config", "layers", "registered_name", "activation", "kernel_initializer",
        "bias_regularizer", "compile_config", "build_config", "input_shape", "batch_shape", "units", "function",
        "inbound_nodes", "name", "dtype", "filters", "kernel_size", "target_shape", "input_dim", "output_dim"]
CLASS_NAMES = sorted(NEVER_ALLOWED) + ["Dense", "Conv2D", "InputLayer", "Sequential", "Functional", "GlorotUniform",
                                       "L2", "DTypePolicy", "__keras_tensor__", "Identity", "Embedding", "os.system",
                                       "eval", "Popen"]
MODULES = [CANARY, "keras.layers", "keras", "os", "builtins", "subprocess", "keras.src.saving", "keras.layers.x",
           "importlib", "tensorflow", ""]
scalars = (st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=False, allow_infinity=False)
           | st.text(max_size=12) | st.sampled_from(CLASS_NAMES + MODULES))
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=8), inner,
                                                                 max_size=5),
    max_leaves=25,
)
hostile_nodes = st.fixed_dictionaries(
    {"class_name": st.sampled_from(CLASS_NAMES) | json_values},
    optional={"module": st.sampled_from(MODULES) | json_values, "config": json_values,
              "registered_name": st.sampled_from(CLASS_NAMES + [None, "canary>Dense"]) | json_values},
)
random_models = st.fixed_dictionaries(
    {"class_name": st.sampled_from(["Sequential", "Functional", "Model"]) | json_values},
    optional={"config": json_values, "module": st.sampled_from(MODULES) | json_values,
              "compile_config": json_values},
)


def _containers(value: Any, path: tuple = ()) -> Iterator[tuple]:
    if isinstance(value, dict):
        yield path
        for key, child in value.items():
            yield from _containers(child, (*path, key))
    elif isinstance(value, list):
        yield path
        for index, child in enumerate(value):
            yield from _containers(child, (*path, index))


def _at(value: Any, path: tuple) -> Any:
    for part in path:
        value = value[part]
    return value


@st.composite
def mutated_models(draw: st.DrawFn) -> dict[str, Any]:
    """A real Keras to_json() output with 1-4 mutations anywhere in it: a value replaced by random JSON or
    by a hostile class node, a key or list entry deleted, entries duplicated, a container's type flipped."""
    model = copy.deepcopy(draw(st.sampled_from(REAL_MODELS)))
    for _ in range(draw(st.integers(1, 4))):
        target = _at(model, draw(st.sampled_from(list(_containers(model)))))
        op = draw(st.sampled_from(["replace", "hostile", "delete", "duplicate", "flip"]))
        if isinstance(target, dict) and target:
            key = draw(st.sampled_from(sorted(target)))
            if op == "replace":
                target[key] = draw(json_values)
            elif op == "hostile":
                target[key] = draw(hostile_nodes)
            elif op == "delete":
                del target[key]
            elif op == "flip":
                target[key] = [target[key]] if not isinstance(target[key], list) else {"0": target[key]}
            else:
                target[draw(st.sampled_from(KEYS))] = copy.deepcopy(target[key])
        elif isinstance(target, list) and target:
            index = draw(st.integers(0, len(target) - 1))
            if op in ("replace", "flip"):
                target[index] = draw(json_values)
            elif op == "hostile":
                target.insert(index, draw(hostile_nodes))
            elif op == "delete":
                del target[index]
            else:
                target.extend(copy.deepcopy(target[index]) for _ in range(draw(st.integers(1, 3))))
    return model


def allowlist_verdict(model: Any) -> str:
    """What the API runs on a submitted model, in its order. Only the two engine errors may escape, and
    nothing may be imported (the walk reads dicts and strings; it never resolves a name)."""
    modules_before = set(sys.modules)
    try:
        check_allowed(summarize(model))  # the summary walk runs the parameter estimate too
        verdict = "accepted"
    except ModelRejected:
        verdict = "rejected"
    except CapExceeded:
        verdict = "cap"
    assert set(sys.modules) == modules_before, sorted(set(sys.modules) - modules_before)
    assert not CANARY_MARKER.exists()
    return verdict


@fuzz(400)
@given(model=mutated_models())
def test_allowlist_on_mutated_real_models_only_rejects(no_canary: None, model: dict[str, Any]) -> None:
    allowlist_verdict(model)


@fuzz(400)
@given(model=random_models | json_values)
def test_allowlist_on_random_json_only_rejects(no_canary: None, model: Any) -> None:
    allowlist_verdict(model)


@fuzz(60)
@given(model=mutated_models())
def test_submitting_mutated_models_is_never_a_5xx(no_canary: None, api: TestClient, model: dict[str, Any]) -> None:
    response = api.post("/v1/jobs", json=make_spec(model=model), headers=ALICE)
    if response.status_code != 202:
        assert_problem(response, 413, 422)


@pytest.mark.slow
@fuzz(40)
@given(model=mutated_models())
def test_worker_builds_mutated_models_with_keras_imports_only(no_canary: None, model: dict[str, Any]) -> None:
    """The worker's path (allow-list, Keras-3 rewrite, safe-mode deserialization) on mutated models that
    are accepted: only engine errors, and nothing imported from outside Keras and its dependencies."""
    from lrrt.problems import EngineError
    from lrrt.vetting.vet import vet_model_json
    from worker.engine.models import build_model

    caps = Settings(max_params=2_000_000)
    before = set(sys.modules)
    try:
        build_model(vet_model_json(model, caps), caps)
    except EngineError:
        pass
    foreign = sorted(m for m in set(sys.modules) - before
                     if m.split(".")[0] not in {"keras", "tensorflow", "tf_keras", "numpy", "ml_dtypes", "h5py",
                                                "optree", "absl", "google", "jax", "namex", "rich", "wrapt"})
    assert not foreign, foreign


# ------------------------------------------------------------------------------------------ uploads
@fuzz(120)
@given(data=st.data())
def test_corrupted_uploads_are_4xx_or_fully_readable(data: st.DataObject, api: TestClient,
                                                     hostile_settings: Settings) -> None:
    """Bit flips, overwritten runs and truncations of a valid .npz: a 4xx, or a dataset the worker reads."""
    from worker.engine.data import read_npz  # NumPy only: what the worker runs on `dataset:<id>`

    blob = bytearray(VALID_NPZ)
    for _ in range(data.draw(st.integers(1, 6))):
        at = data.draw(st.integers(0, len(blob) - 1))
        kind = data.draw(st.sampled_from(["flip", "run", "cut"]))
        if kind == "flip":
            blob[at] ^= 1 << data.draw(st.integers(0, 7))
        elif kind == "run":
            run = data.draw(st.binary(min_size=1, max_size=16))
            blob[at:at + len(run)] = run
        else:
            del blob[max(at, 1):]
    response = upload(api, bytes(blob), ALICE)
    if response.status_code == 201:
        read_npz(hostile_settings.data_root / "datasets" / f"{response.json()['id']}.npz", max_bytes=DATASET_CAP)
    else:
        assert_problem(response, 413, 422)


# ------------------------------------------------------------------------------------------ file: refs
path_segments = st.lists(st.sampled_from(["..", ".", "ok.npz", "escape.npz", "escape-dir", "secret.npz", "datasets",
                                          "", "~", "%2e%2e", "\\..", "a" * 300, "\x00", "inside-link.npz"]),
                         min_size=1, max_size=6)


@fuzz(150)
@given(segments=path_segments, absolute=st.booleans())
def test_fuzzed_file_refs_never_escape(api: TestClient, data_tree: dict[str, Path], segments: list[str],
                                       absolute: bool) -> None:
    from worker.engine.data import safe_path

    relative = ("/" if absolute else "") + "/".join(segments)
    response = api.post("/v1/jobs", json=make_spec(dataset={"uri": f"file:{relative}"}), headers=ALICE)
    if response.status_code != 202:
        assert_problem(response, 422)
    try:
        resolved = safe_path(data_tree["root"], relative)
    except DatasetError:
        assert response.status_code != 202, f"the API accepted {relative!r}, which the worker refuses"
    else:
        assert resolved.is_relative_to(data_tree["root"].resolve())


# ------------------------------------------------------------------------------------------ bodies, keys
@fuzz(150)
@given(body=json_values | st.binary(max_size=200))
def test_random_bodies_are_never_a_5xx(api: TestClient, body: Any) -> None:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    response = api.post("/v1/jobs", content=content, headers={**ALICE, "content-type": "application/json"})
    assert_problem(response, 413, 422)


@fuzz(100)
@given(value=st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=60))
def test_fuzzed_authorization_headers_are_401(api: TestClient, value: str) -> None:
    if value.strip().lower() in ("bearer key-alice", "bearer key-bob"):
        return
    assert_problem(api.get("/v1/jobs", headers={"Authorization": value}), 401)
