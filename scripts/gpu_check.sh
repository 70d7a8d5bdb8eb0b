#!/usr/bin/env bash
# GPU check: one short call (about 9 minutes on one H200) that records what jaxdqn does on a GPU.
#
#   bash scripts/gpu_check.sh [OUT_DIR]        # default: $OUT if set, else ./gpu_check
#
# Steps, each under its own time limit so one slow step cannot eat the rest:
#   1. the GPU and JAX's view of it (nvidia-smi, jax.devices(), memory_stats());
#   2. the memory check refusing, before compiling, a sweep that cannot fit in GPU memory;
#   3. scripts/benchmark.py on the cartpole preset for 1, 256 and 4096 seeds (pieces timed alone
#      at 1 seed; 4096 seeds alone take ~67 s wall on an H200);
#   4. scripts/benchmark.py on DQNConfig() (500k env steps, 49k gradient steps), 1 seed, full loop;
#   5. scripts/benchmark.py on Breakout-MinAtar (preset minatar-fast: CNN, batch 32, 100k
#      buffer of bool frames), 50k env steps, for 1 and 64 seeds (pieces at 1 seed), then 512 and
#      1024 seeds, full loop only (jaxdqn.memory: 1024 need about 81 GiB of the 104.9 GiB JAX
#      takes of an H200);
#   6. scripts/solve_cartpole.py: the cartpole preset for 64 seeds, 100 greedy episodes each;
#   7. with the time left (optional: skipping them does not fail the check), what each of
#      Rainbow's components costs per gradient step against DQN (scripts/option_cost.py, wall
#      time) on CartPole and on Breakout-MinAtar.
# Before each step the log records the GPU memory in use and which processes hold it
# (nvidia-smi), so memory another process still holds shows; benchmark.py's workers die with
# their driver (a step's time limit leaves none behind) and report the allocator's figures when
# they run out of memory. Results: OUT_DIR/*.json and OUT_DIR/gpu_check.log. Needs jaxdqn installed with its cuda extra
# (pip install -e ".[cuda]"). PYTHON names the interpreter (default: python3).
set -u
cd "$(dirname "$0")/.."
out="${1:-${OUT:-gpu_check}}"
mkdir -p "$out"
log="$out/gpu_check.log"
budget=${GPU_CHECK_BUDGET_S:-570}   # seconds for the whole check
start=$(date +%s)
status=0
export PY=${PYTHON:-python3}

left() { echo $(( budget - ($(date +%s) - start) )); }

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
  if command -v nvidia-smi >/dev/null; then
    nvidia-smi --query-gpu=memory.used,memory.total --format=csv,noheader \
      | sed 's/^/   GPU memory used, total: /' | tee -a "$log"
    nvidia-smi --query-compute-apps=pid,process_name,used_memory --format=csv,noheader \
      | sed 's/^/   held by pid, name, memory: /' | tee -a "$log"
  fi
  local t0; t0=$(date +%s)
  timeout "$limit" "$@" 2>&1 | tee -a "$log"
  local rc=${PIPESTATUS[0]}
  echo "== $name: exit $rc after $(( $(date +%s) - t0 ))s" | tee -a "$log"
  (( rc != 0 )) && status=1
  return 0
}

: > "$log"
step "gpu" 30 bash -c 'nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true;
  "$PY" -c "import jax; print(jax.__version__, jax.default_backend(), jax.devices());
d = jax.devices()[0]; s = d.memory_stats() or {};
print(\"bytes_limit\", s.get(\"bytes_limit\"), \"bytes_in_use\", s.get(\"bytes_in_use\"));
assert jax.default_backend() == \"gpu\", \"JAX sees no GPU: install jaxdqn[cuda]\""'
step "memory refusal" 30 "$PY" -c '
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
print("4096 runs of DQNConfig() fit:", check_fits(jaxdqn.DQNConfig(), 4096).device_bytes / 2**30, "GiB")'
step "benchmark cartpole 1 256 4096" 150 "$PY" scripts/benchmark.py --preset cartpole \
  --seeds 1 256 4096 --pieces-seeds 1 --repeats 1 --budget 30 --timeout 100 \
  --out "$out/benchmark_gpu_cartpole.json"
step "benchmark DQNConfig() 1 seed" 55 "$PY" scripts/benchmark.py --seeds 1 --pieces-seeds \
  --repeats 1 --budget 30 --out "$out/benchmark_gpu_default.json"
step "benchmark minatar 1 64" 60 "$PY" scripts/benchmark.py --preset minatar-fast \
  --set total_timesteps=50000 --seeds 1 64 --pieces-seeds 1 --repeats 1 --budget 20 \
  --timeout 40 --out "$out/benchmark_gpu_minatar.json"
step "benchmark minatar 512 1024" 200 "$PY" scripts/benchmark.py --preset minatar-fast \
  --set total_timesteps=50000 --seeds 512 1024 --pieces-seeds --repeats 1 --budget 20 \
  --timeout 120 --out "$out/benchmark_gpu_minatar_512_1024.json"
step "solve cartpole 64 seeds" 40 "$PY" scripts/solve_cartpole.py --preset cartpole --seeds 64 \
  --out "$out/solve_cartpole_gpu.json"
SIX="n_step=3+prioritized=true+distributional=c51+v_min=-100+v_max=100+dueling=true+noisy=true"
SIX="$SIX+estimator=double_dqn"
OPTIONAL=1 step "option cost cartpole" 60 "$PY" scripts/option_cost.py --variant base \
  --variant dueling=true --variant distributional=c51 --variant distributional=qr \
  --variant noisy=true --variant "$SIX" --repeats 5 --out "$out/option_cost_gpu_cartpole.json"
OPTIONAL=1 step "option cost minatar" 60 "$PY" scripts/option_cost.py --preset minatar-fast \
  --set batch_size=32 --iterations 100 --variant base --variant distributional=c51 \
  --variant noisy=true --variant "$SIX" --repeats 5 --out "$out/option_cost_gpu_minatar.json"
echo "== total $(( $(date +%s) - start ))s, status $status" | tee -a "$log"
exit $status
