"""`lrrt standalone` reads its settings from the sources `lrrt api` and `lrrt worker` read: `LRRT_*`
variables and a `.env` file in the working directory. Nothing is started here (tests/e2e runs it whole)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from lrrt.settings import Settings
from service.standalone import configured_redis_url

REPO = Path(__file__).resolve().parents[2]


def test_data_root_comes_from_dotenv(tmp_path: Path) -> None:
    """Without --data-dir the data dir is LRRT_DATA_ROOT from .env (created before anything starts; the
    API's port is taken, so the command stops right there)."""
    data_root = tmp_path / "from-dotenv"
    (tmp_path / ".env").write_text(f"LRRT_DATA_ROOT={data_root}\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("LRRT_")}
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        run = subprocess.run(
            [sys.executable, "-m", "service.cli", "standalone", "--port", str(taken.getsockname()[1])],
            cwd=tmp_path, env={**env, "PYTHONPATH": str(REPO)}, capture_output=True, text=True, timeout=60,
            check=False,
        )
    assert run.returncode == 1 and "choose another --port" in run.stderr, run.stderr
    assert data_root.is_dir()


def test_redis_url_from_dotenv_or_environment_is_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("LRRT_REDIS_URL", "LRRT_DATA_ROOT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    assert configured_redis_url(Settings()) == ""  # only the default: standalone starts its own Redis

    (tmp_path / ".env").write_text("LRRT_REDIS_URL=redis://redis.example:6390/3\n")
    assert configured_redis_url(Settings()) == "redis://redis.example:6390/3"

    monkeypatch.setenv("LRRT_REDIS_URL", "redis://other.example:6379/0")
    assert configured_redis_url(Settings()) == "redis://other.example:6379/0"
