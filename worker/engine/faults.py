"""Whose fault is an exception from Keras: the request's (`config-invalid`, `model-invalid`: the user
changes a field) or ours (the task layer reports `internal` with the job id)?

Keras says "this configuration does not fit" with ValueError, TypeError, KeyError or IndexError (shape
and dtype checks while it builds or traces, unknown classes and arguments while it deserializes);
TensorFlow's graph-time shape errors reach us as ValueError too, raised while handling its own
InvalidArgumentError. Anything else is our stack failing: an import (the JAX worker's TensorFlow block
once made every preprocessing layer fail with "This requires the tensorflow module", which Keras wrapped
in a RuntimeError, and which users were told was their configuration), XLA's runtime errors
(RuntimeError), the OS, an assertion or a bug of ours. A request-kind exception raised while one of
those was being handled is ours as well: the cause decides, not the last wrapper.
"""

from __future__ import annotations

#: What Keras raises for a configuration it cannot build or train.
REQUEST_KINDS: tuple[type[BaseException], ...] = (ValueError, TypeError, KeyError, IndexError)
#: Failures of the stack itself, wherever they sit in an exception's chain.
OURS: tuple[type[BaseException], ...] = (ImportError, OSError, MemoryError, RuntimeError, AssertionError,
                                         AttributeError, NameError, SystemError)


def explained_by_request(exc: BaseException) -> bool:
    """True when `exc` is Keras refusing the configuration, so the user can fix it by changing a field."""
    if not isinstance(exc, REQUEST_KINDS):
        return False
    return not any(isinstance(link, OURS) for link in _chain(exc))


def _chain(exc: BaseException) -> list[BaseException]:
    """`exc` and every exception it was raised from or while handling, innermost last."""
    links: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and all(current is not seen for seen in links):
        links.append(current)
        current = current.__cause__ or current.__context__
    return links
