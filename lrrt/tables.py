"""A table's columns as the arrays a model takes, by `dataset.columns` (`lrrt.vetting.objects.column_groups`):
shared by the worker (Parquet and CSV datasets) and the client (`Client.upload_table`)."""

from __future__ import annotations

from typing import Any

import numpy as np

from lrrt.problems import DatasetError
from lrrt.vetting.objects import column_groups


def columns_to_arrays(table: Any, columns: dict[str, Any], uri: str) -> dict[str, Any]:
    """{"x": array or {input: array}, "y": ...} from a PyArrow table."""
    out: dict[str, Any] = {}
    for group, members in column_groups(columns).items():
        arrays: dict[str | None, np.ndarray] = {}
        for key, names in members.items():
            arrays[key] = _column_block(table, [names] if isinstance(names, str) else names, uri, single=isinstance(names, str))
        out[group] = arrays[None] if None in arrays else arrays
    return out


def _column_block(table: Any, names: list[str], uri: str, *, single: bool) -> np.ndarray:
    import pyarrow as pa

    parts = []
    for name in names:
        if name not in table.column_names:
            raise DatasetError(f"{uri[:200]} has no column {name!r}; its columns are {table.column_names[:50]}")
        column = table.column(name)
        kind = column.type
        if pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_fixed_size_list(kind):
            values = column.to_pylist()
            lengths = {len(v) if v is not None else -1 for v in values}
            if len(lengths) != 1 or -1 in lengths:
                raise DatasetError(f"{uri[:200]}: column {name!r} holds lists of different lengths {sorted(lengths)[:5]} "
                                   "(or nulls); one input needs lists of one fixed length")
            array = np.asarray(values)
        else:
            if column.null_count:
                raise DatasetError(f"{uri[:200]}: column {name!r} has {column.null_count} empty values; fill or drop them")
            array = column.to_numpy()
        if array.dtype.kind not in "biuf":
            raise DatasetError(f"{uri[:200]}: column {name!r} is {kind}, not numbers; encode it as numbers first")
        parts.append(array)
    if single:
        return parts[0]
    if any(p.ndim != 1 for p in parts):
        raise DatasetError(f"{uri[:200]}: list columns feed an input alone; name the list column as a string, not in a list")
    return np.column_stack(parts).astype(np.float32 if any(p.dtype.kind == "f" for p in parts) else np.result_type(*parts))
