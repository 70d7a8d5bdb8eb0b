"""Benchmark the training loop: compile time, run time, throughput and memory per seed count, and
the loop's two halves timed alone (env stepping only, gradient updates only).

    python scripts/benchmark.py                                  # DQNConfig(), 1 8 64 256 seeds
    python scripts/benchmark.py --seeds 1 --out bench.json       # the 1-seed full-vs-parts figure
    python scripts/benchmark.py --preset cartpole --seeds 1 64
    python scripts/benchmark.py --set total_timesteps=50000 --set learning_starts=1000

Every seed count runs in a fresh Python process, so its compile cache, peak host RSS and peak
device memory are its own. In each, the runs go through ``jaxdqn.runs`` (split across all
devices, memory checked before compiling), compile is timed apart from running
(``lower().compile()``), a first call warms up and the median of ``--repeats`` timed calls is
reported (one call only when a call takes longer than ``--budget`` / ``--repeats`` seconds).

The pieces, each the same vmapped, sharded program shape as the full loop:

- env only: the training loop itself with ``learning_starts`` past the end, so every iteration
  acts (epsilon-greedy from the Q-network), steps the envs and stores transitions, and the
  learning branch is never taken;
- updates only: the loop's learning half on a full replay buffer of the same shape: per
  iteration ``updates_per_iteration`` x (``buffer_sample`` with a fresh key -> ``td_update``),
  then the target sync on the real schedule, for the run's ``num_updates`` gradient steps.

``full / parts`` is the full loop's run time over the sum of the two; near 1 means the loop adds
no cost of its own. ``seed throughput`` is seeds trained per second relative to 1 seed.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import shlex
import statistics
import subprocess
import sys
import time
from typing import Any

from jaxdqn.runtime import fast_cpu_compile

fast_cpu_compile()  # before JAX starts: in the parent it only sets the workers' environment

CPU_SEEDS = (1, 8, 64, 256)
ACCELERATOR_SEEDS = (1, 64, 256, 1024, 4096)
WORKER_FLAG = "--worker"
RANDOM_BLOCK = 1024  # distinct random observations in the updates-only piece's buffer
RESULT_PREFIX = "BENCHMARK_RESULT "


# ---------------------------------------------------------------------------------------------
# The measured programs (worker side: imports JAX)


def updates_only(config):
    """``fn(key) -> (TrainState, loss_sum)``: the run's gradient steps and target syncs alone, on
    a full buffer of random transitions of the env's shapes."""
    import jax
    import jax.numpy as jnp

    from jaxdqn.buffer import BufferState, Transition, buffer_sample
    from jaxdqn.envs import env_spec
    from jaxdqn.estimators import ESTIMATORS
    from jaxdqn.networks import make_q_fn
    from jaxdqn.train import HParams, make_trainer
    from jaxdqn.update import make_optimizer, make_td_update, step_takes_key, sync_target

    trainer = make_trainer(config)
    q_fn = make_q_fn(config)
    hp = HParams.from_config(config)
    td_update = make_td_update(config, q_fn, make_optimizer(config, hp.learning_rate),
                               env_spec(config).legal_fn)
    takes_key = step_takes_key(config)  # a member chosen at random, or ties broken at random
    snapshots = ESTIMATORS[config.estimator].snapshots  # Averaged-DQN's ring of targets
    per_iteration = config.steps_per_iteration
    first = config.first_learning_iteration
    learning_iterations = config.num_iterations - first

    def random_obs(key, like):
        """Normal floats, or for bool frames (MinAtar) about 10% set: ``RANDOM_BLOCK`` random
        observations repeated through the buffer. Drawing every slot's bits at once would make
        threefry's uint32 temporaries several times the buffer (0.96 GB per MinAtar run, 493 GB
        of temporaries at 512 runs); the sampled minibatches are as random either way."""
        block = (min(RANDOM_BLOCK, like.shape[0]), *like.shape[1:])
        if like.dtype == jnp.bool_:
            obs = jax.random.bernoulli(key, 0.1, block)
        else:
            obs = jax.random.normal(key, block, like.dtype)
        reps = -(-like.shape[0] // block[0])
        return jnp.tile(obs, (reps,) + (1,) * (obs.ndim - 1))[:like.shape[0]]

    def fn(key):
        key, buffer_key = jax.random.split(key)
        runner = trainer.init(key)
        data = runner.buffer.data
        k1, k2, k3, k4 = jax.random.split(buffer_key, 4)
        capacity = data.reward.shape[0]
        num_actions = env_spec(config).num_actions
        buffer = BufferState(
            data=Transition(
                obs=random_obs(k1, data.obs),
                action=jax.random.randint(k2, (capacity,), 0, num_actions, jnp.int32),
                reward=jnp.ones((capacity,), jnp.float32),
                terminated=jax.random.uniform(k3, (capacity,)) < 0.05,
                next_obs=random_obs(k4, data.next_obs),
            ),
            pos=jnp.int32(0), size=jnp.int32(capacity))

        def iteration(carry, it):
            train_state, key, loss_sum = carry

            def one_update(_, c):
                train_state, key, loss_sum = c
                if takes_key:  # as the training loop draws them (train.learn)
                    key, sample_key, step_key = jax.random.split(key, 3)
                else:
                    (key, sample_key), step_key = jax.random.split(key), None
                batch = buffer_sample(buffer, sample_key, config.batch_size)
                train_state, info = td_update(train_state, batch, hp.gamma, step_key)
                return train_state, key, loss_sum + info.loss

            train_state, key, loss_sum = jax.lax.fori_loop(
                0, config.updates_per_iteration, one_update, (train_state, key, loss_sum))
            step0 = it * per_iteration
            freq = hp.target_update_freq
            crossed = (step0 + per_iteration) // freq > step0 // freq
            train_state = sync_target(train_state, crossed, hp.tau, snapshots=snapshots)
            return (train_state, key, loss_sum), None

        (train_state, _, loss_sum), _ = jax.lax.scan(
            iteration, (runner.train, runner.key, jnp.float32(0.0)),
            first + jnp.arange(learning_iterations))
        return train_state.params, loss_sum

    return fn


def env_only_config(config):
    """``config`` with learning never starting: the same loop, acting and storing only."""
    return config.replace(learning_starts=config.total_timesteps + config.steps_per_iteration,
                          log_interval=config.log_interval)


def _time_calls(call, repeats: int, budget_s: float) -> dict[str, Any]:
    """Warm-up call, then up to ``repeats`` timed calls; a slow first call counts as the one
    measurement instead (so a long run is not paid for twice). Wall time is the figure; the
    process's CPU time (all threads) is kept too, as it is less sensitive to a busy machine."""
    import jax

    def timed():
        wall, cpu = time.perf_counter(), time.process_time()
        jax.block_until_ready(call())
        return time.perf_counter() - wall, time.process_time() - cpu

    first = timed()
    warm = first[0] * (repeats + 1) <= budget_s
    times = [timed() for _ in range(repeats)] if warm else [first]
    return {"run_s": statistics.median(t for t, _ in times), "run_s_all": [t for t, _ in times],
            "cpu_s": statistics.median(c for _, c in times), "first_call_s": first[0],
            "first_call_only": not warm}


def _compile(fn, *args):
    t = time.perf_counter()
    compiled = fn.lower(*args).compile()
    compile_s = time.perf_counter() - t
    mem = None
    try:
        ma = compiled.memory_analysis()
        if ma is not None:
            mem = {"temp_bytes": ma.temp_size_in_bytes, "argument_bytes": ma.argument_size_in_bytes,
                   "output_bytes": ma.output_size_in_bytes, "alias_bytes": ma.alias_size_in_bytes,
                   "total_bytes": ma.temp_size_in_bytes + ma.argument_size_in_bytes
                   + ma.output_size_in_bytes - ma.alias_size_in_bytes}
    except Exception:  # noqa: BLE001 - not every backend implements it
        mem = None
    return compiled, compile_s, mem


def run_case(spec: dict[str, Any]) -> dict[str, Any]:
    """Worker: every measurement of one seed count, as a JSON-able dict."""
    import jax

    from jaxdqn.buffer import buffer_bytes
    from jaxdqn.config import DQNConfig
    from jaxdqn.memory import check_fits
    from jaxdqn.parallel import seed_mesh, shard_runs, sharded_vmap
    from jaxdqn.runs import even_round_size, make_train_seeds, padded_count, run_devices, seed_keys
    from jaxdqn.train import make_trainer

    config = DQNConfig(**{k: tuple(v) if isinstance(v, list) else v
                          for k, v in spec["config"].items()})
    seeds, at_once = spec["seeds"], spec["seeds_at_once"]
    devices = run_devices(seeds)  # as train_seeds
    mesh = seed_mesh(devices)
    num_devices = len(devices)
    padded = padded_count(seeds, num_devices)
    if at_once is not None:
        at_once = even_round_size(padded // num_devices, at_once)
        padded = padded_count(seeds, num_devices * at_once)
    estimate = check_fits(config, padded, devices, at_once)  # ValueError: reported, not compiled
    run_mesh = mesh if num_devices > 1 else None
    key_data = jax.random.key_data(seed_keys(spec["seed"], padded))
    if num_devices > 1:
        key_data = shard_runs(key_data, mesh)

    one_state = jax.jit(make_trainer(config).init)(jax.random.key(0))
    real_buffer_bytes = buffer_bytes(one_state.buffer)
    result: dict[str, Any] = {
        "seeds": seeds, "padded_seeds": padded, "seeds_at_once": at_once,
        "num_devices": num_devices,
        "memory": {
            "transition_bytes": estimate.transition_bytes,
            "buffer_bytes_per_seed": real_buffer_bytes,
            "buffer_is_capacity_x_transition":
                real_buffer_bytes == config.buffer_size * estimate.transition_bytes,
            "buffer_bytes_all_seeds": real_buffer_bytes * padded,
            "state_bytes_per_seed": estimate.state_bytes,
            "estimated_device_bytes": estimate.device_bytes,
        },
    }
    repeats, budget = spec["repeats"], spec["budget_s"]

    full = make_train_seeds(config, None, mesh=run_mesh, seeds_at_once=at_once)
    compiled, compile_s, mem = _compile(full, key_data, None)
    timing = _time_calls(lambda: compiled(key_data, None), repeats, budget)
    env_steps = padded * config.total_timesteps
    updates = padded * config.num_updates
    result["full"] = {"compile_s": compile_s, **timing, "compiled_memory": mem,
                      "env_steps_per_s": env_steps / timing["run_s"],
                      "updates_per_s": updates / timing["run_s"],
                      "seconds_per_seed": timing["run_s"] / padded}
    full_call = compiled

    if spec["pieces"]:
        env_cfg = env_only_config(config)
        env_fn = make_train_seeds(env_cfg, None, mesh=run_mesh, seeds_at_once=at_once)
        compiled, compile_s, _ = _compile(env_fn, key_data, None)
        timing = _time_calls(lambda: compiled(key_data, None), repeats, budget)
        result["env_only"] = {"compile_s": compile_s, **timing,
                              "env_steps_per_s": env_steps / timing["run_s"]}
        del compiled
        if config.num_updates > 0:
            upd = updates_only(config)
            upd_fn = jax.jit(sharded_vmap(lambda k: upd(jax.random.wrap_key_data(k)), run_mesh,
                                          at_once=at_once))
            compiled, compile_s, _ = _compile(upd_fn, key_data)
            timing = _time_calls(lambda: compiled(key_data), repeats, budget)
            result["updates_only"] = {"compile_s": compile_s, **timing,
                                      "updates_per_s": updates / timing["run_s"]}
            del compiled
        else:
            result["updates_only"] = {"run_s": 0.0, "cpu_s": 0.0,
                                      "note": "the run takes no gradient steps"}
        parts = result["env_only"]["run_s"] + result["updates_only"]["run_s"]
        result["sum_of_parts_s"] = parts
        result["full_over_parts"] = result["full"]["run_s"] / parts
        cpu_parts = result["env_only"]["cpu_s"] + result["updates_only"]["cpu_s"]
        result["full_over_parts_cpu"] = result["full"]["cpu_s"] / cpu_parts

    result["peak_host_rss_bytes"] = _peak_rss_bytes()
    stats = devices[0].memory_stats()
    result["device_peak_bytes"] = (max(d.memory_stats().get("peak_bytes_in_use", 0)
                                       for d in devices) if stats else None)
    result["device_bytes_limit"] = stats.get("bytes_limit") if stats else None
    if spec["profile_dir"]:  # last: the profiler's own memory must not count in the peaks above
        result["profile"] = _profile(lambda: full_call(key_data, None), spec["profile_dir"],
                                     seeds)
    return result


def _peak_rss_bytes() -> int:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # bytes on macOS, KiB on Linux


def _profile(call, directory: str, seeds: int) -> dict[str, Any]:
    """One traced call (``jax.profiler``, Perfetto format; open it in ui.perfetto.dev or
    TensorBoard) and the XLA ops with the most self time. The profiler keeps a bounded number of
    events, so profile a short run (``--set total_timesteps=...``) for a complete op table; and
    tracing every op adds about a microsecond to each, which inflates the many tiny ops of a
    small run (a 1-seed run traces about 5x slower): trust the table for the large ops only."""
    import collections
    import glob
    import gzip

    import jax

    out = os.path.join(directory, f"seeds{seeds}")
    with jax.profiler.trace(out, create_perfetto_trace=True):
        jax.block_until_ready(call())
    traces = glob.glob(os.path.join(out, "**", "perfetto_trace.json.gz"), recursive=True)
    if not traces:
        return {"trace_dir": out, "top_ops": []}
    with gzip.open(max(traces, key=os.path.getmtime)) as f:
        trace = json.load(f)
    events = trace["traceEvents"] if isinstance(trace, dict) else trace
    # Self time of XLA's per-op events: a loop's or conditional's event encloses its body's, so
    # each event's time minus its children's. Python frames and executor wrappers are skipped.
    ops = sorted((e for e in events if e.get("ph") == "X" and "dur" in e
                  and not e.get("name", "").startswith(("$", "ThunkExecutor", "PjitFunction"))
                  and " " not in e.get("name", "")),
                 key=lambda e: (e.get("pid"), e.get("tid"), e["ts"], -e["dur"]))
    total = collections.Counter()
    count = collections.Counter()
    stack: list[dict] = []
    for e in ops:
        while stack and (stack[-1]["pid"], stack[-1]["tid"]) == (e.get("pid"), e.get("tid")) \
                and stack[-1]["end"] <= e["ts"]:
            stack.pop()
        if stack and (stack[-1]["pid"], stack[-1]["tid"]) != (e.get("pid"), e.get("tid")):
            stack.clear()
        if stack:
            total[stack[-1]["name"]] -= e["dur"]
        total[e["name"]] += e["dur"]
        count[e["name"]] += 1
        stack.append({"pid": e.get("pid"), "tid": e.get("tid"), "name": e["name"],
                      "end": e["ts"] + e["dur"]})
    traced = sum(total.values())
    top = [{"op": name, "ms": us / 1e3, "calls": count[name], "share": us / traced}
           for name, us in total.most_common(25)]
    kinds = collections.Counter()
    for name, us in total.items():
        kinds[_op_kind(name)] += us
    by_kind = {kind: {"ms": us / 1e3, "share": us / traced} for kind, us in kinds.most_common()}
    return {"trace_dir": out, "traced_op_ms": traced / 1e3, "by_kind": by_kind, "top_ops": top}


def _op_kind(name: str) -> str:
    """A coarse class of an XLA:CPU op from its name, e.g. ``ynn_fusion.6`` -> matmul."""
    base = name.split(".")[0]
    if base in ("dot", "ynn_fusion", "convolution") or "dot" in base.split("_"):
        return "matmul"
    if base in ("while", "cond", "conditional", "call"):
        return "loop and branch control"
    if base == "copy":
        return "copies"
    if "gather" in base or "scatter" in base or "dynamic-update-slice" in base \
            or "dynamic-slice" in base:
        return "gather/scatter/slices"
    return "elementwise and reduction fusions"


def _environment() -> dict[str, Any]:
    import jax
    import jaxlib

    import jaxdqn

    devices = jax.devices()
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True, cwd=os.path.dirname(os.path.abspath(__file__)),
                                timeout=10).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        commit = None
    return {
        "jax_version": jax.__version__, "jaxlib_version": jaxlib.__version__,
        "jaxdqn_version": jaxdqn.__version__, "git_commit": commit,
        "backend": jax.default_backend(), "device_kind": devices[0].device_kind,
        "num_devices": len(devices), "cpu": cpu, "cpu_count": os.cpu_count(),
        "python": platform.python_version(), "xla_flags": os.environ.get("XLA_FLAGS", ""),
    }


def worker_main(spec_json: str) -> int:
    spec = json.loads(spec_json)
    try:
        result = run_case(spec)
    except ValueError as e:  # a run that will not fit, found before compiling
        result = {"seeds": spec["seeds"], "error": str(e)}
    except Exception as e:  # out of device memory (re-raised otherwise): what the device held
        if "RESOURCE_EXHAUSTED" not in str(e):
            raise
        result = {"seeds": spec["seeds"], "error": str(e).strip().splitlines()[0][:300],
                  "device_memory_stats": _device_memory_stats()}
    if spec.get("with_environment"):
        result["environment"] = _environment()
    print(RESULT_PREFIX + json.dumps(result), flush=True)
    return 0


# ---------------------------------------------------------------------------------------------
# The driver (parent side: never initialises a JAX backend, so each worker gets the device whole)


from jaxdqn.cli.parser import OneLineParser as _Parser  # noqa: E402
from jaxdqn.cli.parser import UserError as UsageError  # noqa: E402


def parse_args(argv):
    from jaxdqn.cli.parser import DefaultsHelpFormatter

    p = _Parser(prog="benchmark.py", description=__doc__.splitlines()[0],
                formatter_class=DefaultsHelpFormatter)
    p.add_argument("--preset", default="reference",
                   help="preset to start from ('reference' is DQNConfig())")
    p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE", dest="sets",
                   help="override a config field (repeatable), e.g. --set total_timesteps=50000")
    p.add_argument("--seeds", type=int, nargs="+", default=None, metavar="N",
                   help=f"seed counts (default: {' '.join(map(str, CPU_SEEDS))} on CPU, "
                        f"{' '.join(map(str, ACCELERATOR_SEEDS))} on an accelerator)")
    p.add_argument("--pieces-seeds", type=int, nargs="*", default=None, metavar="N",
                   help="seed counts at which to time the pieces alone (default: all; "
                        "none: give the flag alone)")
    p.add_argument("--seeds-at-once", type=int, default=None, metavar="K",
                   dest="seeds_at_once", help="run at most K seeds at once per device (default: "
                   "all at once)")
    p.add_argument("--repeats", type=int, default=3, help="timed calls per measurement (median)")
    p.add_argument("--budget", type=float, default=180.0, metavar="S",
                   help="seconds a measurement may take; a slower first call is the only one")
    p.add_argument("--seed", type=int, default=0, help="keys are runs.seed_keys(seed, N)")
    p.add_argument("--profile", metavar="DIR", default=None,
                   help="also trace one full-loop call per seed count into DIR (jax.profiler; "
                        "default: no trace)")
    p.add_argument("--out", metavar="FILE", default="benchmark.json",
                   help="JSON results")
    p.add_argument("--timeout", type=float, default=None, metavar="S",
                   help="give up on a seed count after S seconds (default: never)")
    args = p.parse_args(argv)
    for name in ("seeds", "pieces_seeds"):
        values = getattr(args, name)
        if values is not None and any(n < 1 for n in values):
            raise UsageError(f"--{name.replace('_', '-')} {values} is invalid: counts must be >= 1")
    if args.seeds_at_once is not None and args.seeds_at_once < 1:
        raise UsageError(f"--seeds-at-once {args.seeds_at_once} is invalid: must be >= 1")
    if args.repeats < 1 or args.budget <= 0:
        raise UsageError("--repeats must be >= 1 and --budget > 0")
    return args


def _config(args):
    from jaxdqn.cli import resolve_config

    config, _ = resolve_config(args.preset, None, args.sets, None)  # raises UsageError
    return config


def _device_memory_stats() -> dict[str, Any] | None:
    """The first device's allocator figures (bytes in use, peak, limit, largest free block...),
    None where the backend keeps none (CPU)."""
    import jax

    stats = jax.devices()[0].memory_stats()
    return None if stats is None else {k: int(v) for k, v in stats.items()}


def _die_with_parent() -> None:
    """In a worker before it starts (Linux): SIGKILL when the driver dies, so a driver killed by
    a time limit never leaves a worker holding the device's memory for the next command."""
    if sys.platform.startswith("linux"):
        import ctypes
        import signal

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _run_worker(spec: dict[str, Any], timeout: float | None) -> dict[str, Any]:
    cmd = [sys.executable, os.path.abspath(__file__), WORKER_FLAG, json.dumps(spec)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                              preexec_fn=_die_with_parent)
    except subprocess.TimeoutExpired:
        return {"seeds": spec["seeds"], "error": f"timed out after {timeout:.0f} s"}
    for line in proc.stdout.splitlines():
        if line.startswith(RESULT_PREFIX):
            return json.loads(line[len(RESULT_PREFIX):])
    tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
    return {"seeds": spec["seeds"], "error": f"worker exited with code {proc.returncode}: {tail}"}


def _backend_is_cpu() -> bool:
    """Which backend the workers will get, asked of a throwaway process (keeps this one clean)."""
    proc = subprocess.run([sys.executable, "-c", "import jax; print(jax.default_backend())"],
                          capture_output=True, text=True)
    return proc.stdout.strip() in ("cpu", "")


def format_table(cases: list[dict[str, Any]]) -> str:
    base = next((c for c in cases if c.get("seeds") == 1 and "full" in c), None)
    head = ["seeds", "compile s", "run s", "cpu s", "env steps/s", "updates/s", "s/seed",
            "seed thr. (cpu)", "env-only s", "updates-only s", "full/parts (cpu)", "RSS MiB",
            "dev MiB", "buffers MiB"]
    rows = []
    for c in cases:
        if "error" in c:
            rows.append([str(c["seeds"]), f"error: {c['error']}"])
            continue
        f = c["full"]
        speed = "" if base is None else (
            f"{base['full']['run_s'] * c['padded_seeds'] / f['run_s']:.2f} "
            f"({base['full']['cpu_s'] * c['padded_seeds'] / f['cpu_s']:.2f})")
        rows.append([
            str(c["seeds"]), f"{f['compile_s']:.1f}", f"{f['run_s']:.2f}", f"{f['cpu_s']:.2f}",
            f"{f['env_steps_per_s']:,.0f}", f"{f['updates_per_s']:,.0f}",
            f"{f['seconds_per_seed']:.3f}", speed,
            f"{c['env_only']['run_s']:.2f}" if "env_only" in c else "",
            f"{c['updates_only']['run_s']:.2f}" if "updates_only" in c else "",
            (f"{c['full_over_parts']:.2f} ({c['full_over_parts_cpu']:.2f})"
             if "full_over_parts" in c else ""),
            f"{c['peak_host_rss_bytes'] / 2**20:.0f}",
            "" if c["device_peak_bytes"] is None else f"{c['device_peak_bytes'] / 2**20:.0f}",
            f"{c['memory']['buffer_bytes_all_seeds'] / 2**20:.1f}",
        ])
    full_rows = [head] + [r for r in rows if len(r) == len(head)]
    widths = [max(len(r[i]) for r in full_rows) for i in range(len(head))]
    lines = ["  ".join(h.rjust(w) for h, w in zip(head, widths))]
    for r in rows:
        if len(r) == 2:
            lines.append(f"{r[0].rjust(widths[0])}  {r[1]}")
        else:
            lines.append("  ".join(v.rjust(w) for v, w in zip(r, widths)))
    return "\n".join(lines)


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == [WORKER_FLAG]:
        return worker_main(argv[1])
    try:
        args = parse_args(argv)
        config = _config(args)
    except UsageError as e:
        print(f"benchmark.py: error: {e}", file=sys.stderr)
        return 2
    seeds = args.seeds or list(CPU_SEEDS if _backend_is_cpu() else ACCELERATOR_SEEDS)
    pieces = set(seeds if args.pieces_seeds is None else args.pieces_seeds)
    out = os.path.abspath(args.out)
    report: dict[str, Any] = {
        "command": shlex.join([sys.executable, "scripts/benchmark.py", *argv]),
        "config": config.to_dict(),
        "derived": {"num_updates": config.num_updates, "num_iterations": config.num_iterations,
                    "steps_per_iteration": config.steps_per_iteration},
        "load_average_start": os.getloadavg(),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "cases": [],
    }
    print(f"config: {config.env_id}, {config.total_timesteps:,} env steps and "
          f"{config.num_updates:,} gradient steps per seed; seeds {seeds}", flush=True)
    failed = False
    for i, n in enumerate(seeds):
        spec = {"config": config.to_dict(), "seeds": n, "seeds_at_once": args.seeds_at_once,
                "repeats": args.repeats, "budget_s": args.budget, "seed": args.seed,
                "pieces": n in pieces, "profile_dir": args.profile, "with_environment": i == 0}
        t = time.perf_counter()
        case = _run_worker(spec, args.timeout)
        env = case.pop("environment", None)
        if env is not None:
            report["environment"] = env
        case["wall_s"] = time.perf_counter() - t
        report["cases"].append(case)
        if "error" in case:
            failed = True
            print(f"benchmark.py: {n} seeds: {case['error']}", file=sys.stderr, flush=True)
        else:
            f = case["full"]
            print(f"  {n} seeds: run {f['run_s']:.2f} s, {f['env_steps_per_s']:,.0f} env steps/s"
                  + (f", full/parts {case['full_over_parts']:.2f}" if "full_over_parts" in case
                     else ""), flush=True)
            if "profile" in case:
                print(f"    trace: {case['profile']['trace_dir']}", flush=True)
        _write(out, report)
    report["load_average_end"] = os.getloadavg()
    env = report.get("environment", {})
    print(f"\n{env.get('device_kind', '?')} x{env.get('num_devices', '?')} ({env.get('backend')}), "
          f"{env.get('cpu')} ({env.get('cpu_count')} cores), jax {env.get('jax_version')}; "
          f"load average {report['load_average_start'][0]:.2f} -> "
          f"{report['load_average_end'][0]:.2f}")
    print(format_table(report["cases"]))
    _write(out, report)
    print(f"wrote {out}")
    return 1 if failed else 0


def _write(path: str, report: dict[str, Any]) -> None:
    from jaxdqn.io import atomic_write_json

    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    atomic_write_json(path, report)


if __name__ == "__main__":
    sys.exit(main())
