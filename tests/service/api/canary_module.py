"""A harmless canary: importing it (or calling `touch`) leaves a marker file.

Model JSON in tests names this module; the API must reject it without importing it.
"""

import tempfile
from pathlib import Path

MARKER = Path(tempfile.gettempdir()) / "lrrt-api-canary-imported"
MARKER.write_text("imported")


def touch(*_args: object, **_kwargs: object) -> None:
    MARKER.write_text("called")
