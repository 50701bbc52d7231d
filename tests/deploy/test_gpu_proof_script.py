"""bench/gpu_proof.sh's plumbing, on the CPU with a stand-in for bench/sweep.py.

The GPU numbers themselves need the device machine; this proves the script runs the single and the
side-by-side phases, reads each run's last-line JSON, sums the steps/s, and fails when a run fails,
so a device session is not spent debugging shell.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

STUB = """
import argparse, json, sys, time
p = argparse.ArgumentParser()
p.add_argument("--model"); p.add_argument("--batch-size", type=int); p.add_argument("--data")
p.add_argument("--fail", action="store_true")
a = p.parse_args()
assert (a.model, a.batch_size, a.data) == ("convnet", 250, "synthetic-mnist"), a
print("compiling...")
if a.fail:
    sys.exit(3)
t0 = time.time(); time.sleep(0.2)
print(json.dumps({"t_start": t0, "t_end": time.time(), "sweep": {"steps_per_s": 100.0}, "fit_callback_steps_per_s": 40.0}))
"""


def run_proof(tmp_path: Path, *bench_args: str, procs: int = 3) -> tuple[subprocess.CompletedProcess[str], Path]:
    stub = tmp_path / "stub_sweep.py"
    stub.write_text(STUB)
    out = tmp_path / "out"
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "NO_WHEELS": "1",
        "KERAS_BACKEND": "tensorflow",  # the device uses jax; the venv here has TensorFlow
        "BENCH": str(stub),
        "OUT": str(out),
        "PROCS": str(procs),
        "BENCH_ARGS": " ".join(bench_args),
        "RUN_TIMEOUT": "60",
    }
    done = subprocess.run(["bash", str(ROOT / "bench" / "gpu_proof.sh")], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=240)
    return done, out


def test_gpu_proof_sums_side_by_side_runs(tmp_path: Path) -> None:
    done, out = run_proof(tmp_path)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert sorted(p.name for p in out.iterdir()) == ["env.txt", "gpu-util.log", "multi.log", "single.log", "summary.json"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["single"]["steps_per_s"] == {"sweep.steps_per_s": 100.0, "fit_callback_steps_per_s": 40.0}
    side = summary["side_by_side"]
    assert side["processes"] == 3 and side["exit"] == 0
    assert side["steps_per_s_total"] == {"fit_callback_steps_per_s": 120.0, "sweep.steps_per_s": 300.0}
    assert 0.0 <= side["window_overlap"] <= 1.0
    assert (out / "multi.log").read_text().count("===== process") == 3


def test_gpu_proof_fails_when_the_bench_fails(tmp_path: Path) -> None:
    done, out = run_proof(tmp_path, "--fail", procs=1)
    assert done.returncode != 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["single"]["exit"] == 3 and summary["single"]["result"] is None
