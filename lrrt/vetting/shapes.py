"""Tensor shapes as a model JSON declares them (batch dimension first, None where any size goes).

Shared by the parameter estimate, the summary walk (routing reads input sizes) and the engine, which
matches dataset arrays against the same shapes. Pure Python.
"""

from __future__ import annotations

from typing import Any

Shape = tuple[int | None, ...]


def declared_shape(layer: dict[str, Any]) -> Shape | None:
    """A layer's input shape (batch first) as its config or `build_config` declares it, else None.

    Reads untrusted JSON (the summary walk runs it on every `InputLayer` before the allow-list verdict),
    so anything but a list of ints and nulls is "not declared", never an exception.
    """
    config = layer.get("config")
    build = layer.get("build_config")
    candidates = [config.get(key) for key in ("batch_shape", "batch_input_shape")] if isinstance(config, dict) else []
    candidates.append(build.get("input_shape") if isinstance(build, dict) else None)
    for shape in candidates:
        if isinstance(shape, list) and all(d is None or (isinstance(d, int) and not isinstance(d, bool)) for d in shape):
            return tuple(shape)
    return None


def known_dims(dims: Shape) -> tuple[int, ...] | None:
    """`dims` when every one is known, else None (a None dimension: not modelled here, any size in a target)."""
    known = tuple(d for d in dims if d is not None)
    return known if len(known) == len(dims) else None
