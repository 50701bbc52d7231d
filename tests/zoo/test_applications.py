"""Every architecture in the installed `keras.applications`, at 224x224 with 1000 classes, through the
API's vetting and the worker's build, twice in one process (Keras consumes a Functional config in place,
so a second build from the same dict is where that bug shows).

The graph walk's parameter and activation counts (what the parameter cap and the memory guard read) are
exact for every one, and every one is under the parameter cap, which is only a sanity bound: memory is
the guard. The vetting here runs with room for any of them (`ROOMY`); what the default limit says about
each is printed (`-s`) and tabled in docs/design.md "Memory estimate".
"""

from __future__ import annotations

import pytest

from lrrt.settings import Settings
from lrrt.spec import JobSpec
from lrrt.vetting.memory import describe_bytes
from lrrt.vetting.vet import job_memory, vet_spec
from tests.zoo.models import application_names, as_json, keras_activations

pytestmark = pytest.mark.slow
CAPS = Settings()
ROOMY = Settings(memory_limit_bytes=2 ** 40)


@pytest.mark.parametrize("name", application_names())
def test_application_at_224_is_estimated_exactly_vetted_and_built_twice(name: str) -> None:
    import keras

    from worker.engine.models import build_model

    original = getattr(keras.applications, name)(weights=None, input_shape=(224, 224, 3), classes=1000)
    expected = original.count_params()
    spec = JobSpec(model=as_json(original), dataset={"uri": "builtin:digits"}, loss="categorical_crossentropy",
                   optimizers=[{"name": "adam"}], sweep={"batch_size": 32})
    footprint = spec.model_summary.footprint
    assert footprint is not None and footprint.complete
    assert (footprint.params, footprint.activations) == (expected, keras_activations(original))
    assert expected <= CAPS.max_params
    memory = job_memory(spec, footprint, 0)
    assert memory is not None and memory.activations == footprint.activations * 32 * 8
    print(f"| {name} | {expected:,} | {footprint.activations:,} | {describe_bytes(memory.total)} | "
          + " | ".join(str(memory.largest_batch(limit * 1024 ** 3)) for limit in (8, 20, 72, 128)) + " |")

    config = vet_spec(spec, ROOMY)
    first, second = build_model(config, ROOMY), build_model(config, ROOMY)
    assert first.count_params() == second.count_params() == expected
    assert [w.shape for w in first.weights] == [w.shape for w in original.weights]
    assert len(first.layers) == len(original.layers)
