"""How far apart TensorFlow and JAX put the suggestions of the same job: the tolerance the tests use.

The same spec and seed give different initial weights on the two backends (each draws them from its
own random generator), so curves are not compared point by point. Instead, per seed and arm, the
distance in decades (|log10 a - log10 b|) between the two backends' `recommended_lr` and each rule's
suggestion, and the relative difference of the first step's loss (the untrained model's loss, which
depends on the initialisation only through its scale). One runner process per backend (Keras fixes
the backend per process); the last line is one JSON object.

    python bench/backends_agree.py --seeds 0,1,2,3,4
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

#: examples/digits_job.json's sweep, the README's first job.
SWEEP = {"start_lr": 1e-4, "end_lr": 10.0, "num_steps": 150, "batch_size": 64}
RULES = ("recommended_lr", "steepest", "valley", "slide", "minimum")


def results(seed: int) -> list[dict[str, Any]]:
    """Per arm: the recommendation, each rule's suggestion and the first loss, for one seed in this process."""
    from lrrt.spec import JobSpec
    from worker.engine.sweep import run_sweep

    job = json.loads((REPO / "examples" / "digits_job.json").read_text())
    job["sweep"] = {**SWEEP, "seed": seed}
    result = run_sweep(JobSpec.model_validate(job), data_root=REPO)
    return [{"label": arm["label"], "recommended_lr": arm["recommended_lr"], **arm["suggestions"],
             "first_loss": arm["losses"][0]} for arm in result["arms"]]


def decades(a: float | None, b: float | None) -> float | None:
    return abs(math.log10(a) - math.log10(b)) if a and b else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--serve", choices=["tensorflow", "jax"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    if args.serve:
        os.environ["KERAS_BACKEND"] = args.serve
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        out = sys.stdout
        sys.stdout = sys.stderr
        out.write(json.dumps({seed: results(seed) for seed in seeds}) + "\n")
        return
    runs = {backend: json.loads(subprocess.run([sys.executable, __file__, "--serve", backend, "--seeds", args.seeds],
                                               check=True, capture_output=True, text=True, cwd=REPO).stdout)
            for backend in ("tensorflow", "jax")}
    rows = []
    for seed in map(str, seeds):
        for tf_arm, jax_arm in zip(runs["tensorflow"][seed], runs["jax"][seed]):
            rows.append({"seed": int(seed), "label": tf_arm["label"],
                         **{rule: decades(tf_arm[rule], jax_arm[rule]) for rule in RULES},
                         "first_loss_rel": abs(tf_arm["first_loss"] - jax_arm["first_loss"]) / tf_arm["first_loss"]})
            print(json.dumps(rows[-1]), flush=True)
    worst = {key: max((r[key] for r in rows if r[key] is not None), default=None) for key in (*RULES, "first_loss_rel")}
    print(json.dumps({"worst": worst, "seeds": seeds, "sweep": SWEEP, "rows": len(rows)}))


if __name__ == "__main__":
    main()
