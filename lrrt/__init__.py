"""lrrt: the learning rate range test, as a service and in a notebook.

The public Python surface::

    from lrrt import Client, lr_find, RangeTestResult, LrrtError

`Client` talks to a running lrrt over HTTP; `lr_find` runs the range test in this process (it needs
the worker extra, and imports Keras on its first call, not here). Importing `lrrt` loads none of
Keras, TensorFlow, JAX, FastAPI or Celery: the names above are resolved on first use.

The package also holds what the API process and the workers share (docs/design.md, "Layout"): the
job spec and typed records, problems, the Redis job store, routing, vetting of models and datasets,
the suggestion rules, confirm, and the assembly of results. `service/` (HTTP) and `worker/` (Celery
and Keras) import it; it imports neither.
"""

from __future__ import annotations

from importlib import import_module
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lrrt.client.api import Client, LrrtError
    from lrrt.client.local import lr_find
    from lrrt.client.result import RangeTestResult

try:
    #: The installed distribution's version: pyproject.toml is its one definition.
    __version__ = version("lrrt")
except PackageNotFoundError:  # run from a source tree that was never `pip install`ed
    __version__ = "0+unknown"

#: Where each public name lives; imported on first access (PEP 562), so `import lrrt` stays light.
_PUBLIC = {
    "Client": "lrrt.client.api",
    "LrrtError": "lrrt.client.api",
    "RangeTestResult": "lrrt.client.result",
    "lr_find": "lrrt.client.local",
}
__all__ = ["Client", "LrrtError", "RangeTestResult", "lr_find", "__version__"]


def __getattr__(name: str) -> Any:
    if name in _PUBLIC:
        return getattr(import_module(_PUBLIC[name]), name)
    raise AttributeError(f"module 'lrrt' has no attribute {name!r}")
