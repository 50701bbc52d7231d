"""A Keras 3 `.keras` archive split on the client into what the service takes: its `config.json` (sent
as the model) and its `model.weights.h5` (uploaded as the weights to start from).

The archive is a zip that Keras's `model.save("m.keras")` writes (`keras/src/saving/saving_lib.py`:
`config.json`, `metadata.json`, `model.weights.h5`, optionally `assets/`). Only those two members are
read, by name, with their declared sizes checked against the file's; nothing in the archive is
deserialized here, and the service checks both again as it checks any model and weights.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

CONFIG = "config.json"
WEIGHTS = "model.weights.h5"


def split_keras_archive(path: Path, into: Path) -> tuple[dict[str, Any], Path]:
    """(the model config, the path of its weights extracted into the folder `into`); ValueError saying
    what is wrong when `path` is not a Keras 3 `.keras` archive with both members."""
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise ValueError(f"{path} is not a .keras archive ({exc}): save it with model.save('model.keras')") from None
    with archive:
        names = set(archive.namelist())
        missing = [name for name in (CONFIG, WEIGHTS) if name not in names]
        if missing:
            raise ValueError(f"{path} has no {' or '.join(missing)}: save it with Keras 3's model.save('model.keras') "
                             "(sharded or older archives are not split here)")
        declared = sum(archive.getinfo(name).file_size for name in (CONFIG, WEIGHTS))
        if declared > 64 * Path(path).stat().st_size + (1 << 20):  # far past any real compression ratio
            raise ValueError(f"{path} declares {declared:,} bytes in {Path(path).stat().st_size:,}: re-save the model")
        try:
            config = json.loads(archive.read(CONFIG))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ValueError(f"{path}: {CONFIG} is not JSON ({exc})") from None
        weights = Path(into) / WEIGHTS
        with archive.open(WEIGHTS) as source, weights.open("wb") as out:
            while chunk := source.read(1 << 20):
                out.write(chunk)
    if not isinstance(config, dict):
        raise ValueError(f"{path}: {CONFIG} is not a model config object")
    return config, weights
