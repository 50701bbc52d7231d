"""`lrrt.vetting.weights`: the reference rules and the inspection of a weights file before Keras sees it."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

from lrrt.problems import WeightsError, WeightsMismatch, WeightsNotFound
from lrrt.vetting.weights import (
    check_fit,
    check_reference,
    inspect_weights,
    model_variables,
    resolve,
    upload_path,
)
from tests.weights_files import HOSTILE, MLP_SHAPES, keras3_file

ID = "0123456789abcdef0123456789abcdef"


def test_a_keras3_file_lists_its_variables(tmp_path: Path) -> None:
    path = keras3_file(tmp_path / "m.weights.h5")
    summary = inspect_weights(path, max_bytes=10**6)
    assert summary.variables == {name: list(shape) for name, shape in MLP_SHAPES.items()}
    assert summary.bytes == path.stat().st_size


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_files_are_refused_saying_why(case: str, tmp_path: Path) -> None:
    build, words = HOSTILE[case]
    path = build(tmp_path / "case.weights.h5")
    with pytest.raises(WeightsError) as caught:
        inspect_weights(path, max_bytes=10**9)
    assert words in caught.value.detail
    assert "Traceback" not in caught.value.detail


def test_an_object_linked_twice_is_refused(tmp_path: Path) -> None:
    path = keras3_file(tmp_path / "m.weights.h5")
    with h5py.File(path, "a") as f:
        f["layers/again"] = f["layers/dense"]  # a second hard link to the same group
    with pytest.raises(WeightsError, match="appears elsewhere"):
        inspect_weights(path, max_bytes=10**9)


def test_a_file_over_the_cap_is_refused_before_it_is_opened(tmp_path: Path) -> None:
    path = keras3_file(tmp_path / "m.weights.h5")
    with pytest.raises(WeightsError, match="LRRT_MAX_WEIGHTS_BYTES"):
        inspect_weights(path, max_bytes=path.stat().st_size - 1)


@pytest.mark.parametrize("reference", [
    "weights", "http://x/m.weights.h5", "weights:", "file:", "s3:bucket/m.weights.h5",
    "file:../m.weights.h5", "file:/etc/m.weights.h5", "file:a/../../m.weights.h5", "file:m.weights.json",
    "file:m.h5", "file:m.keras", "file:s3://bucket/m.weights.h5", "file:weights/x.weights.h5",
    "file:datasets/x.weights.h5", "file:m\x00.weights.h5",
])
def test_bad_references_are_refused(reference: str) -> None:
    with pytest.raises(WeightsError):
        check_reference(reference)


def test_an_id_that_is_not_one_reads_as_not_found() -> None:
    with pytest.raises(WeightsNotFound):
        check_reference("weights:../../etc/passwd")


def test_references_resolve_under_the_data_root(tmp_path: Path) -> None:
    upload = upload_path(tmp_path, ID)
    upload.parent.mkdir()
    keras3_file(upload)
    (tmp_path / "team").mkdir()
    keras3_file(tmp_path / "team" / "m.weights.h5")
    assert resolve(tmp_path, f"weights:{ID}") == upload
    assert resolve(tmp_path, "file:team/m.weights.h5") == (tmp_path / "team" / "m.weights.h5").resolve()
    with pytest.raises(WeightsNotFound):
        resolve(tmp_path, f"weights:{'f' * 32}")
    (tmp_path / "sneaky.weights.h5").symlink_to(upload)
    with pytest.raises(WeightsError, match="uploads folder"):
        resolve(tmp_path, "file:sneaky.weights.h5")


def test_a_mismatch_lists_every_variable_expected_vs_found() -> None:
    expected = {name: list(shape) for name, shape in MLP_SHAPES.items()}
    found = {**expected, "layers/dense_1/vars/0": [32, 5], "layers/extra/vars/0": [3]}
    del found["layers/dense/vars/1"]
    with pytest.raises(WeightsMismatch) as caught:
        check_fit(expected, found)
    problem = caught.value.problem()
    assert problem["type"].endswith("weights-mismatch") and problem["count"] == 3
    assert problem["variables"] == [
        {"path": "layers/dense/vars/1", "expected": [32], "found": None},
        {"path": "layers/dense_1/vars/0", "expected": [32, 10], "found": [32, 5]},
        {"path": "layers/extra/vars/0", "expected": None, "found": [3]},
    ]
    assert "expected (32, 10), found (32, 5)" in problem["detail"]
    check_fit(expected, dict(expected))  # equal layouts pass


def test_optimizer_variables_are_not_the_models(tmp_path: Path) -> None:
    path = keras3_file(tmp_path / "m.weights.h5", {**MLP_SHAPES, "optimizer/vars/0": ()})
    with h5py.File(path, "a") as f:
        f["optimizer/vars/0"][()] = np.float32(3)
    assert model_variables(inspect_weights(path, 10**6)) == {k: list(v) for k, v in MLP_SHAPES.items()}
