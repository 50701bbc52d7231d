"""Fine-tuning through real processes: a model trained here for a few epochs on digits, sent with its
weights, starts every arm from them on each backend (TensorFlow and JAX workers), the same JSON without
weights behaves as before, weights of another model fail the job with `weights-mismatch`, a compiled `.keras` archive runs with its own
optimizer and loss, and the clients (`Client.lr_find` and the in-process `lr_find`) start from a built model's weights by default.

Every step of these sweeps sees the whole training set (batch size = rows, no held-out split), so the
first recorded loss is the pretrained model's own loss on all of it, whatever the shuffle order.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import numpy as np
import pytest

from lrrt.client.api import Client

from .conftest import Api, Worker
from .test_cli import lrrt
from .test_cli_full import run_with_keras

pytestmark = pytest.mark.e2e

#: Relative difference allowed between the first recorded loss and the model's own loss (float32 sums in
#: another order, on another backend).
FIRST_LOSS_REL = 1e-4

PRETRAIN = """
import json, keras, numpy as np
from sklearn.datasets import load_digits
out = {out!r}
digits = load_digits()
x, y = (digits.data / 16.0).astype("float32"), digits.target.astype("int64")
np.savez(out + "/digits.npz", x=x, y=y)
def trained(hidden, name):
    keras.utils.set_random_seed(3)
    model = keras.Sequential([keras.Input((64,)), keras.layers.Dense(hidden, activation="relu"),
                              keras.layers.Dense(10, activation="softmax")])
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="sparse_categorical_crossentropy")
    model.fit(x, y, epochs=10, batch_size=64, verbose=0)
    model.save_weights(f"{{out}}/{{name}}.weights.h5")
    config = json.loads(model.to_json())
    config.pop("compile_config", None)
    json.dump(config, open(f"{{out}}/{{name}}.json", "w"))
    return model
model = trained(32, "pre")
trained(16, "other")
plain = keras.Sequential([keras.Input((64,)), keras.layers.Dense(32, activation="relu"),
                          keras.layers.Dense(10, activation="softmax")])
plain.set_weights(model.get_weights())
plain.save(out + "/pre.keras")  # uncompiled: the archive's config.json is the model JSON as sent
plain.compile(optimizer=keras.optimizers.SGD(0.05, momentum=0.9, nesterov=True, clipnorm=1.0),
              loss=keras.losses.SparseCategoricalCrossentropy(), metrics=["accuracy"])
plain.save(out + "/compiled.keras")  # compiled: its config.json carries the compile_config
loss = float(np.mean(keras.losses.sparse_categorical_crossentropy(y, model(x, training=False))))
json.dump({{"loss": loss, "rows": len(x)}}, open(out + "/expected.json", "w"))
"""


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("pretrained")
    run_with_keras(PRETRAIN.format(out=str(out)))
    with np.load(out / "digits.npz") as arrays:
        x, y = arrays["x"], arrays["y"]
    return {"dir": out, "x": x, "y": y, "model": json.loads((out / "pre.json").read_text()),
            **json.loads((out / "expected.json").read_text())}


def full_batch(rows: int, steps: int = 6) -> dict[str, Any]:
    return {"num_steps": steps, "batch_size": rows, "start_lr": 1e-4, "end_lr": 1e-2}


def finished(client: Client, job_id: str, worker: Worker) -> dict[str, Any]:
    done = client.wait(job_id, timeout=300)
    assert done["status"] == "succeeded", (done.get("error"), worker.tail())
    return client.result(job_id)


def test_a_pretrained_model_starts_from_its_weights_on_each_backend(
    client: Client, worker_proc: Worker, jax_worker: Worker, pretrained: dict[str, Any],  # noqa: F811
) -> None:
    path = pretrained["dir"] / "pre.weights.h5"
    weights = client.upload_weights(path)
    assert weights["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    data = client.upload_arrays(pretrained["x"], pretrained["y"])
    dataset = {"uri": data["uri"], "validation_split": 0.0}
    sweep = full_batch(pretrained["rows"])
    arms = ["sgd", "adam"]
    ids = {backend: client.submit(pretrained["model"], dataset, optimizers=arms, sweep=sweep, backend=backend,
                                  weights=weights["uri"])["id"] for backend in ("tensorflow", "jax")}
    fresh_id = client.submit(pretrained["model"], dataset, optimizers=arms, sweep=sweep, backend="tensorflow")["id"]

    expected = pretrained["loss"]
    assert expected < 0.3  # trained: a fresh 10-class softmax starts near ln 10 = 2.3
    for backend, job_id in ids.items():
        result = finished(client, job_id, jax_worker if backend == "jax" else worker_proc)
        assert result["engine"]["backend"] == backend
        assert result["engine"]["weights"] == {"uri": weights["uri"], "sha256": weights["sha256"]}
        firsts = [arm["losses"][0] for arm in result["arms"]]
        print(f"\nfirst loss on {backend}: {firsts} vs the model's own {expected!r}")
        assert firsts == pytest.approx([expected] * len(arms), rel=FIRST_LOSS_REL), backend
        assert len({arm["fingerprint"]["initial_weights"] for arm in result["arms"]}) == 1

    fresh = finished(client, fresh_id, worker_proc)
    assert fresh["engine"]["weights"] is None
    assert min(arm["losses"][0] for arm in fresh["arms"]) > 4 * expected
    client.delete_dataset(data["id"])


def test_a_frozen_backbone_is_unchanged_after_the_sweep(client: Client, worker_proc: Worker,
                                                         pretrained: dict[str, Any]) -> None:
    """The same weights under a JSON whose hidden layer is `trainable: false`: every run reports its frozen
    variables' fingerprint at the end equal to the one at its start, while the head trained."""
    frozen = json.loads(json.dumps(pretrained["model"]))
    hidden = next(layer for layer in frozen["config"]["layers"] if layer["class_name"] == "Dense")
    hidden["config"]["trainable"] = False
    weights = client.upload_weights(pretrained["dir"] / "pre.weights.h5")
    job = client.submit(frozen, "builtin:digits", optimizers=["sgd", "adam"], backend="tensorflow",
                        sweep={"num_steps": 20, "start_lr": 1e-3, "end_lr": 1.0}, weights=weights["uri"])
    result = finished(client, job["id"], worker_proc)
    start = {arm["fingerprint"]["initial_weights"] for arm in result["arms"]}
    runs = result["engine"]["runs"]
    assert len(runs) == 2 and len(start) == 1
    for run in runs:
        variables = run["variables"]
        assert variables["initial"] in start and variables["final"] != variables["initial"], run
        assert variables["frozen_final"] == variables["frozen_initial"], run
    client.delete_weights(weights["id"])


def test_weights_of_another_model_fail_the_job_listing_the_variables(client: Client, pretrained: dict[str, Any]) -> None:
    other = client.upload_weights(pretrained["dir"] / "other.weights.h5")
    job = client.submit(pretrained["model"], "builtin:digits", optimizers=["adam"], sweep={"num_steps": 5},
                        backend="tensorflow", weights=other["uri"])
    done = client.wait(job["id"], timeout=300)
    assert done["status"] == "failed"
    error = done["error"]
    assert error["type"].endswith("weights-mismatch"), error
    assert {"path": "layers/dense/vars/0", "expected": [64, 32], "found": [64, 16]} in error["variables"]
    assert "Traceback" not in json.dumps(error)
    client.delete_weights(other["id"])


CLIENTS = """
import json, keras, numpy as np
from lrrt import Client, lr_find
out, url = {out!r}, {url!r}
expected = json.load(open(out + "/expected.json"))["loss"]
with np.load(out + "/digits.npz") as arrays:
    x, y = arrays["x"], arrays["y"]
model = keras.Sequential([keras.Input((64,)), keras.layers.Dense(32, activation="relu"),
                          keras.layers.Dense(10, activation="softmax")])
model.load_weights(out + "/pre.weights.h5")
options = dict(optimizers=["sgd"], num_steps=4, batch_size=len(x), start_lr=1e-4, end_lr=1e-2,
               dataset={{"validation_split": 0.0}}, progress=False)
client = Client(url, api_key="key-alice")
before = {{w["id"] for w in client.list_weights()["items"]}}
remote = client.lr_find(model, x, y, timeout=240, **options)
fresh = client.lr_find(model, x, y, weights=None, timeout=240, **options)
local = lr_find(model, x, y, **options)
assert remote.weights and remote.weights["uri"].startswith("weights:"), remote.data["engine"]
assert "starting from weights" in str(remote), str(remote)
assert {{w["id"] for w in client.list_weights()["items"]}} == before  # the upload was removed afterwards
assert fresh.weights is None
assert local.weights and local.weights["uri"] == "file:model.weights.h5", local.data["engine"]
for found in (remote, local):
    first = found.arms[0]["losses"][0]
    assert abs(first - expected) <= {rel!r} * expected, (first, expected)
assert fresh.arms[0]["losses"][0] > 4 * expected
"""


def test_the_clients_start_from_a_built_models_weights_unless_told_not_to(api_server: Api, client: Client,
                                                                          pretrained: dict[str, Any]) -> None:
    run_with_keras(CLIENTS.format(out=str(pretrained["dir"]), url=api_server.url, rel=FIRST_LOSS_REL))


def test_the_cli_uploads_weights_and_splits_a_keras_archive(api_server: Api, client: Client,
                                                           pretrained: dict[str, Any]) -> None:
    folder = pretrained["dir"]
    data = client.upload_arrays(pretrained["x"], pretrained["y"])
    uploaded = lrrt(api_server, "weights", "upload", str(folder / "pre.weights.h5"))
    assert uploaded.returncode == 0, uploaded.stderr
    uri = uploaded.stdout.strip()
    listed = lrrt(api_server, "weights", "list", "--json")
    assert listed.returncode == 0 and uri in {w["uri"] for w in json.loads(listed.stdout)}
    shown = lrrt(api_server, "weights", "show", uri)
    assert shown.returncode == 0 and "layers/dense/vars/0: (64, 32)" in shown.stdout, shown.stdout

    sweep = ["--dataset", data["uri"], "--validation-split", "0", "--batch-size", str(pretrained["rows"]), "--steps",
             "4", "--start-lr", "1e-4", "--end-lr", "1e-2", "--backend", "tensorflow", "--wait", "--json"]
    (folder / "pre_model.json").write_text(json.dumps(pretrained["model"]))
    for args in (["submit", str(folder / "pre_model.json"), "--weights", str(folder / "pre.weights.h5")],
                 ["submit", str(folder / "pre.keras")], ["submit", str(folder / "pre_model.json"), "--weights", uri]):
        run = lrrt(api_server, *args, *sweep, timeout=300)
        assert run.returncode == 0, (args, run.stderr[-2000:])
        result = json.loads(run.stdout)["result"]
        started = result["engine"]["weights"]
        assert started["uri"].startswith("weights:") and started["sha256"], started
        assert result["arms"][0]["losses"][0] == pytest.approx(pretrained["loss"], rel=FIRST_LOSS_REL), args
    missing = lrrt(api_server, "submit", str(folder / "pre_model.json"), "--weights", str(folder / "nope.weights.h5"),
                   *sweep)
    assert missing.returncode == 1 and "no such file" in missing.stderr
    deleted = lrrt(api_server, "weights", "delete", uri)
    assert deleted.returncode == 0 and lrrt(api_server, "weights", "show", uri).returncode == 1
    client.delete_dataset(data["id"])


def test_a_compiled_keras_archive_runs_with_its_own_optimizer_and_loss(api_server: Api, client: Client,
                                                                       pretrained: dict[str, Any]) -> None:
    """`lrrt submit model.keras` of a compiled model, naming no optimizer or loss: one arm, labelled after the
    model's optimizer and built with its hyperparameters, on the model's loss, from the archive's weights."""
    data = client.upload_arrays(pretrained["x"], pretrained["y"])
    run = lrrt(api_server, "submit", str(pretrained["dir"] / "compiled.keras"), "--dataset", data["uri"],
               "--validation-split", "0", "--batch-size", str(pretrained["rows"]), "--steps", "4", "--start-lr", "1e-4",
               "--end-lr", "1e-2", "--backend", "tensorflow", "--wait", "--json", timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    job, result = json.loads(run.stdout)["job"], json.loads(run.stdout)["result"]
    assert job["spec"]["loss"] == "sparse_categorical_crossentropy"
    [arm] = result["arms"]
    assert arm["label"] == "sgd" and arm["optimizer"] == {"name": "sgd", "params": {
        "momentum": 0.9, "nesterov": True, "clipnorm": 1.0}}
    assert arm["stop_reason"] == "completed" and len(arm["losses"]) == 4
    assert arm["losses"][0] == pytest.approx(pretrained["loss"], rel=FIRST_LOSS_REL)  # the model's loss, its weights
    codes = [note["code"] for note in result["notes"]]
    assert codes[:3] == ["compiled_optimizer_used", "compiled_learning_rate", "compiled_loss_used"], result["notes"]
    client.delete_dataset(data["id"])
