"""Every check of a submission that needs no Keras, in one place: the API runs exactly these at
submission, and the worker runs them again before it builds anything, so a job the API accepted is
never refused by the worker for a reason the API could have known.

In order: the allow-list walk of the JSON as sent, the Keras 2 rewrite and the walk again on its
output, the parameter estimate against the cap, and the dataset reference's form (loss and optimizer
names are part of `JobSpec` validation itself) (`worker.core.datasets`). What only the worker can know (the exact parameter count
once built, whether the arrays fit the model) is checked there.
"""

from __future__ import annotations

from typing import Any

from worker.core.allowlist import check_model_json, check_params
from worker.core.datasets import at_uri, check_uri
from worker.core.legacy import to_keras3
from worker.core.problems import DatasetError
from worker.core.settings import Settings
from worker.core.spec import JobSpec


def vet_model_json(model_json: dict[str, Any], caps: Settings) -> dict[str, Any]:
    """The Keras 3 config to build, after every model check that needs no Keras; raises EngineError subclasses."""
    check_model_json(model_json, max_depth=caps.max_json_depth, max_layers=caps.max_layers)
    config = to_keras3(model_json)
    check_model_json(config, max_depth=caps.max_json_depth, max_layers=caps.max_layers)
    config.pop("compile_config", None)  # empty (checked above); Keras would compile from it
    check_params(config, max_params=caps.max_params)
    return config


def vet_spec(spec: JobSpec, caps: Settings, *, dataset: bool = True) -> dict[str, Any]:
    """Everything about `spec` that can be known without Keras or the data; returns the config to build.

    The sweep caps are `worker.core.spec.cap_violations`, which both sides call on their own (the API
    to report every violation at once, the worker again once an epochs-sized sweep's length is known).
    `dataset=False` skips the reference's checks, for a run on arrays the caller passed in.
    """
    try:
        if dataset:
            check_uri(spec.dataset.uri)
    except DatasetError as exc:
        raise at_uri(exc) from None
    return vet_model_json(spec.model, caps)
