#!/usr/bin/env bash
# GPU proof: the engine's benchmark (bench/sweep.py) on the tutorial's ConvNet at batch 250 on one
# GPU, once alone and then as PROCS processes side by side (several jobs on one GPU), with the card,
# the date and the GPU's load. Results go to $OUT; docs/operations.md ("Prove a GPU host") says how
# to run it and README's performance section is where the numbers end up.
#
#   bench/gpu_proof.sh --fetch-wheels   # on a machine with the package index: fill .whl/ (cp312)
#   bench/gpu_proof.sh                  # on the GPU machine: install .whl/ into /tmp/site, measure
#
# The GPU machine has Python 3.12 with JAX but no TensorFlow and no network, so Keras runs on JAX
# there and Keras, its small dependencies and pydantic travel as wheels (versions from the worker's
# lock file, so the proof runs the Keras the worker image ships). Knobs (environment):
#   PROCS=4            processes in the side-by-side run
#   BENCH_ARGS=""      extra arguments for bench/sweep.py (e.g. "--steps 2000")
#   RUN_TIMEOUT=240    seconds allowed for the single run and again for the side-by-side run
#   OUT=./gpu-proof    where logs go (the device tool sets OUT)
#   NO_WHEELS=1        use the Python environment as it is (a dry run on a machine that has Keras)
#   KERAS_BACKEND=jax  the backend (jax on the device machine; tensorflow for a CPU dry run here)
set -uo pipefail
cd "$(dirname "$0")/.."

WHEEL_PACKAGES="keras namex optree pydantic pydantic-core annotated-types typing-inspection typing-extensions pydantic-settings python-dotenv"

if [[ "${1:-}" == "--fetch-wheels" ]]; then
  mkdir -p .whl
  grep -qx '/.whl/' .git/info/exclude 2>/dev/null || grep -qx '.whl/' .gitignore || echo /.whl/ >>.git/info/exclude
  specs=()
  for name in $WHEEL_PACKAGES; do
    pin=$(grep -E "^${name}==" deploy/requirements-worker.txt) || { echo "no pin for $name in deploy/requirements-worker.txt" >&2; exit 1; }
    specs+=("$pin")
  done
  python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d .whl "${specs[@]}" || exit 1
  ls -l .whl
  echo "now run on the device: carry [\".whl\"], command: bash bench/gpu_proof.sh"
  exit 0
fi

OUT=${OUT:-./gpu-proof}
PROCS=${PROCS:-4}
BENCH_ARGS=${BENCH_ARGS:-}
RUN_TIMEOUT=${RUN_TIMEOUT:-240}
BENCH=${BENCH:-bench/sweep.py}
mkdir -p "$OUT"
work=$(mktemp -d)
say() { echo "[gpu_proof $(date -u +%H:%M:%S)] $*"; }

if [[ -z "${NO_WHEELS:-}" ]]; then
  compgen -G ".whl/*.whl" >/dev/null || { echo "no wheels in .whl/: run bench/gpu_proof.sh --fetch-wheels first" >&2; exit 1; }
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
export KERAS_BACKEND=${KERAS_BACKEND:-jax} PYTHONUNBUFFERED=1
# JAX grabs 75% of the GPU per process by default: N side-by-side processes would not fit.
export XLA_PYTHON_CLIENT_PREALLOCATE=false

{
  echo "date_utc: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
  command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv,noheader
  python3 - <<'PY'
import platform, keras, pydantic
print("python:", platform.python_version(), "keras:", keras.__version__, "backend:", keras.backend.backend(),
      "pydantic:", pydantic.VERSION)
if keras.backend.backend() == "jax":
    import jax
    print("jax:", jax.__version__, "devices:", jax.devices())
PY
} >"$OUT/env.txt" 2>&1
probe_rc=$?
cat "$OUT/env.txt"
[[ $probe_rc -eq 0 ]] || { echo "Keras or pydantic not importable: see above" >&2; exit 1; }
[[ -f "$BENCH" ]] || { echo "$BENCH is missing (the engine's benchmark)" >&2; exit 1; }

bench_cmd=(python3 "$BENCH" --model convnet --batch-size 250 --data synthetic-mnist $BENCH_ARGS)
monitor() {  # GPU load once a second while a run lasts
  command -v nvidia-smi >/dev/null || return 0
  nvidia-smi --query-gpu=timestamp,utilization.gpu,memory.used,clocks.sm --format=csv,noheader -l 1 >>"$OUT/gpu-util.log" 2>&1 &
  echo $!
}

say "single run: ${bench_cmd[*]}"
echo "# single run" >>"$OUT/gpu-util.log"
mon=$(monitor)
timeout "$RUN_TIMEOUT" "${bench_cmd[@]}" >"$OUT/single.log" 2>&1
single_rc=$?
[[ -n "$mon" ]] && kill "$mon" 2>/dev/null
say "single run exit $single_rc; last line: $(tail -n 1 "$OUT/single.log")"

say "side by side: $PROCS processes, each with XLA_PYTHON_CLIENT_MEM_FRACTION=$(python3 -c "print(round(0.9 / $PROCS, 3))")"
echo "# $PROCS processes side by side" >>"$OUT/gpu-util.log"
mon=$(monitor)
started=$(date +%s.%N)
pids=()
for i in $(seq 1 "$PROCS"); do
  XLA_PYTHON_CLIENT_MEM_FRACTION=$(python3 -c "print(round(0.9 / $PROCS, 3))") \
    timeout "$RUN_TIMEOUT" "${bench_cmd[@]}" >"$work/multi-$i.log" 2>&1 &
  pids+=($!)
done
multi_rc=0
for pid in "${pids[@]}"; do wait "$pid" || multi_rc=$?; done
ended=$(date +%s.%N)
[[ -n "$mon" ]] && kill "$mon" 2>/dev/null
for i in $(seq 1 "$PROCS"); do echo "===== process $i"; cat "$work/multi-$i.log"; done >"$OUT/multi.log"
say "side by side exit $multi_rc"

python3 - "$OUT" "$PROCS" "$started" "$ended" "$single_rc" "$multi_rc" "$work" <<'PY'
import json, pathlib, sys

out, procs, started, ended, single_rc, multi_rc, work = sys.argv[1:]
procs = int(procs)


def last_json(path: pathlib.Path):
    lines = [ln for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    try:
        value = json.loads(lines[-1]) if lines else None
    except json.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


def rates(record):
    """Every numeric field whose name says steps per second, at any depth (e.g. modes.fit.steps_per_s)."""
    found = {}
    def walk(value, path):
        if isinstance(value, dict):
            for key, item in value.items():
                walk(item, f"{path}.{key}" if path else key)
        elif isinstance(value, (int, float)) and not isinstance(value, bool) and "steps_per_s" in path.split(".")[-1]:
            found[path] = float(value)
    walk(record or {}, "")
    return found


single = last_json(pathlib.Path(out, "single.log"))
multi = [last_json(pathlib.Path(work, f"multi-{i}.log")) for i in range(1, procs + 1)]
env = pathlib.Path(out, "env.txt").read_text()
summary = {
    "env": env,
    "single": {"exit": int(single_rc), "result": single, "steps_per_s": rates(single)},
    "side_by_side": {
        "processes": procs,
        "exit": int(multi_rc),
        "wall_s": round(float(ended) - float(started), 2),
        "results": multi,
        "steps_per_s_total": {
            key: round(sum(rates(r).get(key, 0.0) for r in multi), 1)
            for key in sorted({k for r in multi for k in rates(r)})
        },
    },
}
# Per-process rates add up to the GPU's total only while the processes' timed windows overlap; when the
# bench reports its window (t_start/t_end, epoch seconds), say how much they did.
windows = [(r["t_start"], r["t_end"]) for r in multi if r and {"t_start", "t_end"} <= r.keys()]
if len(windows) == procs:
    overlap = min(e for _, e in windows) - max(s for s, _ in windows)
    mean = sum(e - s for s, e in windows) / procs
    summary["side_by_side"]["window_overlap"] = round(max(overlap, 0.0) / mean, 3) if mean > 0 else None
pathlib.Path(out, "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
print("\n== GPU proof ==")
print(env.strip())
print(f"single process (exit {single_rc}):")
for key, value in rates(single).items():
    print(f"  {key:40s} {value:10.1f} steps/s")
print(f"{procs} processes side by side (exit {multi_rc}, {summary['side_by_side']['wall_s']} s wall), total:")
for key, value in summary["side_by_side"]["steps_per_s_total"].items():
    alone = rates(single).get(key)
    ratio = f"{value / alone:.2f}x one process" if alone else "no single-process figure"
    print(f"  {key:40s} {value:10.1f} steps/s  ({ratio})")
overlap = summary["side_by_side"].get("window_overlap")
print(f"timed windows overlapped {overlap:.0%}" if overlap is not None else
      "the bench reports no t_start/t_end: make each run long enough (BENCH_ARGS) that the windows overlap")
if single is None or any(r is None for r in multi):
    print("some runs printed no JSON last line: read single.log / multi.log")
PY
summary_rc=$?
rm -rf "$work"
ls -l "$OUT"
[[ $single_rc -eq 0 && $multi_rc -eq 0 && $summary_rc -eq 0 ]]
