"""The range test in this process, without the service: `lr_find` here is `Client.lr_find`'s local twin.

    from lrrt import lr_find
    found = lr_find(model, x, y, optimizers=["sgd", "adam"], num_steps=200)
    print(found.learning_rate); found.plot("lr.png")

It builds the same JobSpec the API would validate (so a typo in a sweep field is the same error) and
runs the job here (`worker.engine.sweep.run_sweep`: the coordinator a worker runs, against a store in
memory, `lrrt.inprocess`, so the result is assembled as a service job's is), on arrays you pass or on a dataset URI
(`builtin:digits`, `keras:mnist`, `file:<path under data_root>`). Needs the worker extra (Keras);
Keras is imported on the first call, not when this module is imported. `lrrt run` is this function
on the command line.
"""

from __future__ import annotations

import functools
import shutil
import tempfile
from collections.abc import Callable, Iterable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from rich.console import Console

from lrrt.client.api import FROM_MODEL, is_built_model, job_body
from lrrt.client.progress_bar import ProgressBar
from lrrt.client.result import RangeTestResult

#: The URI a spec names when the arrays come from the caller: never resolved (run_sweep gets `data`).
IN_MEMORY_URI = "dataset:in-memory"


def lr_find(
    model: Any,
    x: Any = None,
    y: Any = None,
    *,
    dataset: str | dict[str, Any] | None = None,
    optimizers: Iterable[str | dict[str, Any]] | None = None,
    loss: str | None = None,
    x_val: Any = None,
    y_val: Any = None,
    labels: dict[str, str] | None = None,
    data_root: str | Path | None = None,
    progress: bool = True,
    weights: Any = FROM_MODEL,
    **sweep: Any,
) -> RangeTestResult:
    """Run the range test of `model` (a Keras model, its `to_json()`, or the parsed dict) here.

    Data is either `x, y` (and optionally `x_val, y_val`) or `dataset`: a URI, or a dict of dataset
    options with `uri` (`{"uri": "builtin:digits", "normalize": True}`); with arrays, `dataset` may
    hold the options alone. `**sweep` are the sweep fields. Engine errors (a rejected layer, an
    unknown loss, a cap) raise `lrrt.problems.EngineError` with `.problem()`. `optimizers` and `loss`
    left out: a compiled model's own (its optimizer with its hyperparameters, as one arm), else adam
    and sparse_categorical_crossentropy.

    `weights`, as for `Client.lr_find`: by default a built Keras model's current weights (saved into a
    temporary `.weights.h5` that the engine loads like any other), `None` for a fresh initialisation,
    a `file:` reference under `data_root`, or a `.weights.h5` file anywhere as a `Path` (copied like the
    model's own, then vetted and loaded as any other).
    """
    import numpy as np

    from lrrt.settings import get_settings
    from lrrt.spec import JobSpec
    from worker.engine.data import Arrays
    from worker.engine.sweep import run_sweep

    options = {"uri": dataset} if isinstance(dataset, str) else dict(dataset or {})
    arrays = None
    if x is not None or y is not None:
        if x is None or y is None:
            raise ValueError("pass both x and y (or neither, and a dataset URI)")
        arrays = Arrays(np.asarray(x), np.asarray(y), None if x_val is None else np.asarray(x_val),
                        None if y_val is None else np.asarray(y_val))
        options.setdefault("uri", IN_MEMORY_URI)
    elif "uri" not in options:
        raise ValueError("pass x and y, or dataset='builtin:digits' (or another dataset URI)")
    settings = get_settings()
    root = Path(data_root) if data_root else settings.data_root
    with tempfile.TemporaryDirectory(prefix="lrrt-local-") as scratch, ExitStack() as cleanup:
        if weights is FROM_MODEL or isinstance(weights, Path):
            on_disk = str(options["uri"]).startswith(("file:", "dataset:")) and arrays is None
            write = _model_writer(model) if weights is FROM_MODEL else functools.partial(shutil.copyfile, weights)
            weights = _place_weights(write, root, Path(scratch), cleanup, in_memory=not on_disk)
            if weights is not None and not on_disk:
                root = Path(scratch)  # the data needs no data root: the weights' scratch folder is it
        spec = JobSpec.model_validate(job_body(model, options, optimizers=optimizers, loss=loss, sweep=sweep,
                                               labels=labels, weights=weights))
        with ProgressBar(Console(stderr=True), plain=None if progress else True) as show:
            hook = (lambda chunk: show(_as_job(chunk))) if progress else None
            data = run_sweep(spec, data_root=root, caps=settings, data=arrays, on_chunk=hook)
    return RangeTestResult(data, status="succeeded")


def _model_writer(model: Any) -> Callable[[Path], Any] | None:
    """What writes a built model's current weights to a path; None for a model that is not built."""
    return (lambda path: model.save_weights(str(path))) if is_built_model(model) else None


def _place_weights(write: Callable[[Path], Any] | None, root: Path, scratch: Path, cleanup: ExitStack, *,
                   in_memory: bool) -> str | None:
    """Weights written by `write` (the model's own, or a copy of the user's file) as a `file:` reference
    the engine can resolve, or None when there is nothing to write.

    With arrays or a built-in dataset the scratch folder becomes the data root; with a dataset read under
    the real data root (`file:`) the weights go into a hidden folder there, removed afterwards."""
    if write is None:
        return None
    folder = scratch if in_memory else Path(tempfile.mkdtemp(prefix=".lrrt-local-", dir=root))
    if not in_memory:
        cleanup.callback(shutil.rmtree, folder, ignore_errors=True)
    write(folder / "model.weights.h5")
    return f"file:{(folder / 'model.weights.h5').relative_to(scratch if in_memory else root)}"


def _as_job(chunk: Any) -> dict[str, Any]:
    """A chunk as the job resource the progress bar reads (the API's `progress` shape)."""
    arm = {"label": chunk.arm_label, "state": chunk.state, "steps_done": chunk.steps_done,
           "lr": chunk.lrs[-1] if chunk.lrs else None, "loss": chunk.losses[-1] if chunk.losses else None}
    return {"status": "running", "progress": {"steps_done": chunk.job_steps_done,
                                              "steps_total": chunk.job_steps_total, "arms": [arm]}}
