"""The shape of job and dataset ids (`worker.core.store.new_id`: 32 lower-case hex digits).

Checked before an id from a URL or a `dataset:` uri becomes part of a Redis key or a file name, so a
crafted id can never address another key (`<job>:result`) or path; a malformed id is simply unknown.
"""

from __future__ import annotations

import re

_ID = re.compile(r"[0-9a-f]{32}")


def is_id(value: str) -> bool:
    return _ID.fullmatch(value) is not None
