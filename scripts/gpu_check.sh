#!/usr/bin/env bash
# GPU check: one call (at most GPU_CHECK_BUDGET_S, default 560 s) that takes what issue 24 asks of
# a GPU, in its order, each step under its own time limit so one slow step cannot eat the rest.
#
#   bash scripts/gpu_check.sh [OUT_DIR]        # default: $OUT if set, else ./gpu_check
#
# On the project's device machine (no PyPI there), first `bash scripts/gpu_wheels.sh` here, then
# carry .whl and run (see that script):
#   python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
#     --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:$PWD && bash scripts/gpu_check.sh $OUT
#
# Steps:
#   1. the GPU and JAX's view of it (nvidia-smi, jax.devices(), memory_stats());
#   2. untimed, side by side, GPU memory allocated on demand (XLA_PYTHON_CLIENT_PREALLOCATE=false):
#      a. the test suite on the GPU (pytest-xdist where installed); a failed resume test runs again
#         with XLA_FLAGS=--xla_gpu_deterministic_ops=true, to say whether that flag makes resuming
#         bit for bit;
#      b. TF32 or not: scripts/solve_cartpole.py, the cartpole preset on the same 64 seeds, with the
#         GPU's default float32 matmuls (TF32) and with JAX_DEFAULT_MATMUL_PRECISION=highest:
#         solve rate and start-state value ratio of each;
#   3. the launch-bound single run: DQNConfig(), 1 seed, 100k env steps, with scan_unroll 1, 10
#      (the 10 env steps of an iteration in one loop trip) and 20 (two iterations a trip; 40
#      took over 45 s to compile on XLA:CPU);
#   4. the memory check refusing, before compiling, a sweep that cannot fit;
#   5. Breakout-MinAtar (preset minatar-fast: CNN, 100k buffers of bool frames), 20k env steps,
#      512 and 1024 seeds at once, full loop (jaxdqn.memory: 1024 need about 81 GiB of the 104.9
#      GiB JAX takes of an H200); nothing else holds GPU memory by then (the log shows it);
#   6. with the time left (optional: skipping them does not fail the check), the cartpole preset's
#      throughput at 1, 256 and 4096 seeds, and the cost per gradient step of Rainbow's components.
# Before each step the log records the GPU memory in use and which processes hold it.
# Results: OUT_DIR/*.json, OUT_DIR/pytest_gpu.xml and OUT_DIR/gpu_check.log (at most 8 files come
# back from the device machine: the optional steps' JSON are the last). PYTHON names the
# interpreter (default: python3).
set -u
cd "$(dirname "$0")/.."
out="${1:-${OUT:-gpu_check}}"
mkdir -p "$out"
log="$out/gpu_check.log"
budget=${GPU_CHECK_BUDGET_S:-560}   # seconds for the whole check
start=$(date +%s)
status=0
export PY=${PYTHON:-python3} PYTHONUNBUFFERED=1

left() { echo $(( budget - ($(date +%s) - start) )); }

gpu_memory() {
  if command -v nvidia-smi >/dev/null; then
    nvidia-smi --query-gpu=memory.used,memory.total --format=csv,noheader \
      | sed 's/^/   GPU memory used, total: /'
    nvidia-smi --query-compute-apps=pid,process_name,used_memory --format=csv,noheader \
      | sed 's/^/   held by pid, name, memory: /'
  fi
}

merge() {  # merge OUT_JSON NAME=FILE...: one JSON {NAME: contents} (at most 8 files come back)
  "$PY" - "$@" <<'PYEOF'
import json, os, sys
merged = {}
for arg in sys.argv[2:]:
    name, path = arg.split("=", 1)
    if os.path.exists(path):
        with open(path) as f:
            merged[name] = json.load(f)
        os.remove(path)
with open(sys.argv[1], "w") as f:
    json.dump(merged, f, indent=1)
print(f"wrote {sys.argv[1]}: {sorted(merged)}")
PYEOF
}

step() {  # step NAME MAX_SECONDS COMMAND...: runs COMMAND with min(MAX_SECONDS, time left)
  local name=$1 limit=$2; shift 2
  local remaining; remaining=$(left)
  (( remaining < limit )) && limit=$remaining
  if (( limit < 10 )); then
    echo "== $name: skipped, out of time" | tee -a "$log"
    [[ -z ${OPTIONAL:-} ]] && status=1
    return 0
  fi
  echo "== $name (limit ${limit}s): $*" | tee -a "$log"
  gpu_memory | tee -a "$log"
  local t0; t0=$(date +%s)
  # SIGNAL=INT: pytest then stops, names its failures so far and writes its report
  timeout ${SIGNAL:+-s "$SIGNAL" -k 20} "$limit" "$@" 2>&1 | tee -a "$log"
  local rc=${PIPESTATUS[0]}
  echo "== $name: exit $rc after $(( $(date +%s) - t0 ))s" | tee -a "$log"
  (( rc != 0 )) && [[ -z ${OPTIONAL:-} ]] && status=1
  return 0
}

: > "$log"
step "gpu" 30 bash -c 'nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true;
  "$PY" -c "import jax; print(jax.__version__, jax.default_backend(), jax.devices());
d = jax.devices()[0]; s = d.memory_stats() or {};
print(\"bytes_limit\", s.get(\"bytes_limit\"), \"bytes_in_use\", s.get(\"bytes_in_use\"));
assert jax.default_backend() == \"gpu\", \"JAX sees no GPU: install jaxdqn[cuda]\""'

# Step 2: the tests and the two solve runs side by side (neither is timed), each to its own log.
# The tests get what steps 3-5 leave (their limits add up to 305 s; 20 more for a stopped
# pytest's report), at most 230 s.
later=305
tests_limit=$(( $(left) - later - 20 < 230 ? $(left) - later - 20 : 230 ))
workers=$("$PY" -c "import xdist" 2>/dev/null && echo "-n 10 --dist loadfile")
(
  export XLA_PYTHON_CLIENT_PREALLOCATE=false log="$out/tests.log"
  : > "$log"
  SIGNAL=INT step "tests on the GPU" "$tests_limit" "$PY" -m pytest -q -p no:cacheprovider $workers \
    -o addopts="" -rfEs --durations=15 --junitxml="$out/pytest_gpu.xml"
  failed=$(grep -o '^FAILED tests/[^ ]*resum[^ ]*' "$log" | sed 's/^FAILED //' | sort -u)
  if [[ -n $failed ]]; then
    # with what steps 3-5 leave, at most 60 s
    XLA_FLAGS="${XLA_FLAGS:-} --xla_gpu_deterministic_ops=true" OPTIONAL=1 \
      step "failed resume tests with --xla_gpu_deterministic_ops=true" \
      "$(( $(left) - later < 60 ? $(left) - later : 60 ))" \
      "$PY" -m pytest -q -p no:cacheprovider -o addopts="" -rfE $failed
  fi
  exit $status
) > /dev/null 2>&1 &
tests_pid=$!
(
  export XLA_PYTHON_CLIENT_PREALLOCATE=false log="$out/solve.log"
  : > "$log"
  step "solve cartpole 64 seeds, default precision" 70 "$PY" scripts/solve_cartpole.py \
    --preset cartpole --seeds 64 --out "$out/solve_default.json"
  JAX_DEFAULT_MATMUL_PRECISION=highest step "solve cartpole 64 seeds, highest precision" 70 \
    "$PY" scripts/solve_cartpole.py --preset cartpole --seeds 64 --out "$out/solve_highest.json"
  exit $status
) > /dev/null 2>&1 &
solve_pid=$!
wait "$solve_pid" || status=1
wait "$tests_pid" || status=1
# timeout kills its command's process group; pytest-xdist's workers are ended here if any remain
pkill -9 -f "exec(eval(sys.stdin" 2>/dev/null
cat "$out/solve.log" "$out/tests.log" >> "$log" && rm -f "$out/solve.log" "$out/tests.log"
merge "$out/solve_cartpole_gpu_precision.json" default="$out/solve_default.json" \
  highest="$out/solve_highest.json" | tee -a "$log"
grep -E "^== |passed|failed|^FAILED|^ERROR|^solved|^start-state" "$log" | tail -40

# Steps 3-5 run alone: their times and memory are the GPU's.
for k in 1 10 20; do
  step "DQNConfig() 1 seed, scan_unroll=$k" 50 "$PY" scripts/benchmark.py \
    --set total_timesteps=100000 --set scan_unroll=$k --seeds 1 --pieces-seeds --repeats 1 \
    --budget 20 --out "$out/unroll_$k.json"
done
merge "$out/benchmark_gpu_unroll.json" 1="$out/unroll_1.json" 10="$out/unroll_10.json" \
  20="$out/unroll_20.json" | tee -a "$log"
step "memory refusal" 25 "$PY" -c '
import jax, jaxdqn
from jaxdqn.memory import check_fits, estimate_memory
cfg = jaxdqn.DQNConfig(buffer_size=1_000_000)
print("estimate for 100000 runs:", estimate_memory(cfg, 100_000).device_bytes / 2**30, "GiB")
try:
    check_fits(cfg, 100_000)
except ValueError as e:
    print("refused before compiling:", e)
else:
    raise SystemExit("check_fits accepted a sweep that cannot fit")
for n in (512, 1024):
    est = estimate_memory(jaxdqn.config.preset("minatar-fast"), n)
    print(f"minatar-fast, {n} seeds: estimate {est.device_bytes / 2**30:.1f} GiB")'
step "benchmark minatar 512 1024" 130 "$PY" scripts/benchmark.py --preset minatar-fast \
  --set total_timesteps=20000 --seeds 512 1024 --pieces-seeds --repeats 1 --budget 20 \
  --timeout 60 --out "$out/benchmark_gpu_minatar_512_1024.json"

SIX="n_step=3+prioritized=true+distributional=c51+v_min=-100+v_max=100+dueling=true+noisy=true"
SIX="$SIX+estimator=double_dqn"
OPTIONAL=1 step "benchmark cartpole 1 256 4096" 80 "$PY" scripts/benchmark.py --preset cartpole \
  --seeds 1 256 4096 --pieces-seeds --repeats 1 --budget 30 --timeout 60 \
  --out "$out/benchmark_gpu_cartpole.json"
OPTIONAL=1 step "option cost cartpole and minatar" 60 bash -c '"$PY" scripts/option_cost.py \
  --variant base --variant dueling=true --variant distributional=c51 \
  --variant distributional=qr --variant noisy=true --variant "$0" --repeats 5 \
  --out "$1/option_cost_gpu_cartpole.json" && "$PY" scripts/option_cost.py --preset minatar-fast \
  --set batch_size=32 --iterations 100 --variant base --variant distributional=c51 \
  --variant noisy=true --variant "$0" --repeats 5 --out "$1/option_cost_gpu_minatar.json"' \
  "$SIX" "$out"
echo "== total $(( $(date +%s) - start ))s, status $status" | tee -a "$log"
exit $status
