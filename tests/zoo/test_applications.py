"""Every architecture in the installed `keras.applications` through the API's vetting and the worker's
build, twice in one process (Keras consumes a Functional config in place, so a second build from the
same dict is where that bug shows). Models over the parameter cap get the cap's 422 problem from the
JSON alone, never a build error.
"""

from __future__ import annotations

import pytest

from lrrt.problems import CapExceeded
from lrrt.settings import Settings
from lrrt.spec import JobSpec
from lrrt.vetting.vet import vet_spec
from tests.zoo.models import application, application_names, as_json

pytestmark = pytest.mark.slow
CAPS = Settings()


@pytest.mark.parametrize("name", application_names())
def test_application_is_vetted_and_built_twice_or_refused_by_the_cap(name: str) -> None:
    from worker.engine.models import build_model

    original = application(name)
    expected = original.count_params()
    spec = JobSpec(model=as_json(original), dataset={"uri": "builtin:digits"}, loss="categorical_crossentropy")
    if expected > CAPS.max_params:
        with pytest.raises(CapExceeded) as refused:
            vet_spec(spec, CAPS)
        assert refused.value.extensions == {"cap": "max_params", "limit": CAPS.max_params, "value": expected}
        return
    config = vet_spec(spec, CAPS)
    first, second = build_model(config, CAPS), build_model(config, CAPS)
    assert first.count_params() == second.count_params() == expected
    assert [w.shape for w in first.weights] == [w.shape for w in original.weights]
    assert len(first.layers) == len(original.layers)
