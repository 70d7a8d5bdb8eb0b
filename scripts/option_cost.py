"""What each option costs per gradient step against plain DQN, on the loop's own pieces.

    python scripts/option_cost.py                           # CartPole MLP, batch 128, buffer 100k
    python scripts/option_cost.py --preset minatar-fast --set batch_size=32
    python scripts/option_cost.py --variant n_step=3 --variant prioritized=true+n_step=3
    python scripts/option_cost.py --profile /tmp/option_cost   # + the ops that take the time

Each variant is the base config (``--preset`` with ``--set`` changes; ``buffer_size`` 100k unless
set) plus its own ``FIELD=VALUE`` changes joined by ``+`` (``base`` for none). For each, two
programs run on one state whose replay buffer is full (random transitions of the env's shapes;
with ``prioritized``, random priorities in the sum tree):

- ``learn``: ``train.learn`` alone, ``--iterations`` times in one ``lax.scan``: the sampling,
  the gradient step, the priority update;
- ``iteration``: ``train.iteration`` (act and store ``steps_per_iteration`` env steps, the
  iteration's tree insertion, ``learn``, the target sync), the loop's whole unit of work.

Times are medians of ``--repeats`` calls after a warm-up, per gradient step, and each variant's
ratio to the first; memory is XLA's ``memory_analysis()`` of the ``iteration`` program (arguments
+ outputs + temporaries). With ``--profile`` each variant's ``learn`` call is traced once
(``jax.profiler``) and its ops with the most self time printed, grouped by kind.

With ``--interleave`` every variant is compiled first and the repeats then take turns (variant 1,
variant 2, ..., again), and CPU time is reported beside wall time, so a change of load during the
run moves every variant alike; run it pinned to one core (``taskset -c 0 python
scripts/option_cost.py --interleave ...``) for figures that wall time and CPU time agree on.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import sys
import time

from jaxdqn.runtime import fast_cpu_compile

fast_cpu_compile()

VARIANTS = ("base", "n_step=3", "prioritized=true", "estimator=munchausen",
            "n_step=3+prioritized=true")


def _benchmark_module():
    """scripts/benchmark.py, for its profile reader."""
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "benchmark.py")
    spec = importlib.util.spec_from_file_location("jaxdqn_benchmark", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def parse_changes(text: str, where: str) -> dict:
    """``"n_step=3+prioritized=true"`` -> ``{"n_step": 3, "prioritized": True}``."""
    from jaxdqn.cli.options import parse_assignment, parse_field_value

    if text == "base":
        return {}
    changes = {}
    for part in text.split("+"):
        name, value = parse_assignment(part, where)
        changes[name] = parse_field_value(name, value, where)
    return changes


def full_buffer(loop, runner, key):
    """``runner`` with every replay slot holding a random transition of the env's shapes (and,
    with priorities, a random priority in (0, 1]); the write head at slot 0."""
    import jax
    import jax.numpy as jnp

    buffer = runner.buffer
    leaves, treedef = jax.tree.flatten(buffer.data)
    keys = jax.random.split(key, len(leaves) + 1)
    num_actions = loop.spec.num_actions

    def random_like(k, x):
        if x.dtype == jnp.bool_:  # terminated/truncated flags; MinAtar's frames
            return jax.random.bernoulli(k, 0.05, x.shape)
        if jnp.issubdtype(x.dtype, jnp.integer):
            return jax.random.randint(k, x.shape, 0, num_actions, x.dtype)
        return jax.random.normal(k, x.shape, x.dtype)

    data = jax.tree.unflatten(treedef, [random_like(k, x) for k, x in zip(keys[:-1], leaves)])
    buffer = buffer._replace(data=data, pos=jnp.int32(0), size=jnp.int32(buffer.capacity))
    if buffer.priorities is not None:
        from jaxdqn.sum_tree import sum_tree_set

        slots = jnp.arange(buffer.capacity, dtype=jnp.int32)
        values = jax.random.uniform(keys[-1], (buffer.capacity,), minval=1e-3, maxval=1.0)
        buffer = buffer._replace(priorities=sum_tree_set(buffer.priorities, slots, values))
    return runner._replace(buffer=buffer)


def programs(config, iterations: int):
    """``(learn_fn, iteration_fn, state)``: jitted scans of ``iterations`` learn pieces and whole
    iterations (learning on), and the state they start from."""
    import functools

    import jax
    import jax.numpy as jnp

    from jaxdqn import train

    loop = train.Loop.of(config)
    hp = train.HParams.from_config(config)
    runner = full_buffer(loop, train.init(loop, jax.random.key(0), hp), jax.random.key(1))
    first, steps = config.first_learning_iteration, config.steps_per_iteration
    its = first + jnp.arange(iterations)

    @jax.jit
    def learn_fn(runner):
        def one(carry, _):
            runner, sums = carry
            return train.learn(loop, hp, runner, sums, env_steps=(first + 1) * steps), None

        (runner, sums), _ = jax.lax.scan(one, (runner, train._RowSums.zeros(loop.config)), None,
                                         length=iterations)
        return runner, sums

    @jax.jit
    def iteration_fn(runner):
        (runner, sums), _ = jax.lax.scan(functools.partial(train.iteration, loop, hp),
                                         (runner, train._RowSums.zeros(loop.config)), its)
        return runner, sums

    return learn_fn, iteration_fn, runner


def median_time(fn, state, repeats: int) -> float:
    import jax

    jax.block_until_ready(fn(state))  # warm-up (compiled already)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        jax.block_until_ready(fn(state))
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def prepare(config, iterations: int) -> dict:
    """Both programs of ``config`` compiled and warmed up, their state and XLA's memory figure."""
    import jax

    learn_fn, iteration_fn, state = programs(config, iterations)
    t = time.perf_counter()
    compiled = iteration_fn.lower(state).compile()
    compile_s = time.perf_counter() - t
    ma = compiled.memory_analysis()
    memory = None if ma is None else (ma.argument_size_in_bytes + ma.output_size_in_bytes
                                      + ma.temp_size_in_bytes - ma.alias_size_in_bytes)
    learn = learn_fn.lower(state).compile()
    for fn in (learn, compiled):
        jax.block_until_ready(fn(state))
    return {"learn": learn, "iteration": compiled, "state": state, "memory_bytes": memory,
            "compile_s": compile_s, "steps": iterations * config.updates_per_iteration}


def interleaved(prepared: list[dict], repeats: int) -> list[dict]:
    """Per variant the median wall and CPU microseconds per gradient step of its ``learn`` and
    ``iteration`` programs, the repeats taking turns over the variants."""
    import jax

    times = [{k: [] for k in ("learn", "iteration")} for _ in prepared]
    for _ in range(repeats):
        for prep, t in zip(prepared, times):
            for kind in ("learn", "iteration"):
                wall, cpu = time.perf_counter(), time.process_time()
                jax.block_until_ready(prep[kind](prep["state"]))
                t[kind].append((time.perf_counter() - wall, time.process_time() - cpu))
    out = []
    for prep, t in zip(prepared, times):
        row = {}
        for kind in ("learn", "iteration"):
            row[f"{kind}_us"] = 1e6 * statistics.median(w for w, _ in t[kind]) / prep["steps"]
            row[f"{kind}_cpu_us"] = 1e6 * statistics.median(c for _, c in t[kind]) / prep["steps"]
        out.append(row)
    return out


def measure(config, iterations: int, repeats: int, profile_dir: str | None, name: str) -> dict:
    prep = prepare(config, iterations)
    learn_fn, iteration_fn, state = prep["learn"], prep["iteration"], prep["state"]
    steps = prep["steps"]
    out = {"variant": name, "learn_us": 1e6 * median_time(learn_fn, state, repeats) / steps,
           "iteration_us": 1e6 * median_time(iteration_fn, state, repeats) / steps,
           "memory_bytes": prep["memory_bytes"], "compile_s": prep["compile_s"],
           "gradient_steps_per_call": steps}
    if profile_dir:
        prof = _benchmark_module()._profile(lambda: learn_fn(state), profile_dir,
                                            len(os.listdir(profile_dir))
                                            if os.path.isdir(profile_dir) else 0)
        out["profile"] = prof
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--preset", default="cartpole")
    p.add_argument("--set", action="append", default=[], dest="sets", metavar="FIELD=VALUE")
    p.add_argument("--variant", action="append", default=None, dest="variants",
                   help=f"FIELD=VALUE[+FIELD=VALUE...] or base (default: {', '.join(VARIANTS)})")
    p.add_argument("--iterations", type=int, default=200, help="iterations per timed call")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--profile", metavar="DIR", default=None)
    p.add_argument("--out", metavar="FILE", default=None, help="also write the results as JSON")
    p.add_argument("--interleave", action="store_true",
                   help="compile every variant first, then time them in turns (with CPU time)")
    args = p.parse_args(argv)

    from jaxdqn import preset
    from jaxdqn.cli.parser import UserError

    try:
        base = {"buffer_size": 100_000, **parse_changes("+".join(args.sets) or "base", "--set")}
        config = preset(args.preset).replace(**base)
        variants = [(v, config.replace(**parse_changes(v, "--variant")))
                    for v in (args.variants or VARIANTS)]
    except (UserError, ValueError) as e:
        print(f"option_cost.py: error: {e}", file=sys.stderr)
        return 2
    print(f"{args.preset} {base}: batch {config.batch_size}, network "
          f"{config.network}, {config.updates_per_iteration} update(s) per "
          f"{config.steps_per_iteration} env steps")
    print(f"{'variant':<28} {'learn us/step':>14} {'x':>6} {'iteration us/step':>18} {'x':>6} "
          f"{'memory MB':>10}")
    if args.interleave:
        prepared = [prepare(cfg, args.iterations) for _, cfg in variants]
        results = interleaved(prepared, args.repeats)
        ref = results[0]
        print(f"{'':<28} {'cpu us':>14} {'x':>6} {'cpu us':>18} {'x':>6}")
        for (name, _), prep, r in zip(variants, prepared, results):
            r.update(variant=name, memory_bytes=prep["memory_bytes"],
                     compile_s=prep["compile_s"], gradient_steps_per_call=prep["steps"])
            mem = "" if r["memory_bytes"] is None else f"{r['memory_bytes'] / 1e6:.1f}"
            print(f"{name:<28} {r['learn_us']:>14.1f} {r['learn_us'] / ref['learn_us']:>6.2f} "
                  f"{r['iteration_us']:>18.1f} {r['iteration_us'] / ref['iteration_us']:>6.2f} "
                  f"{mem:>10}\n{'':<28} {r['learn_cpu_us']:>14.1f} "
                  f"{r['learn_cpu_us'] / ref['learn_cpu_us']:>6.2f} {r['iteration_cpu_us']:>18.1f}"
                  f" {r['iteration_cpu_us'] / ref['iteration_cpu_us']:>6.2f}", flush=True)
        variants = []
    else:
        results = []
    for name, cfg in variants:
        r = measure(cfg, args.iterations, args.repeats, args.profile, name)
        results.append(r)
        ref = results[0]
        mem = "" if r["memory_bytes"] is None else f"{r['memory_bytes'] / 1e6:.1f}"
        print(f"{name:<28} {r['learn_us']:>14.1f} {r['learn_us'] / ref['learn_us']:>6.2f} "
              f"{r['iteration_us']:>18.1f} {r['iteration_us'] / ref['iteration_us']:>6.2f} "
              f"{mem:>10}", flush=True)
        for kind, v in (r.get("profile") or {}).get("by_kind", {}).items():
            print(f"    {kind:<40} {v['ms']:8.2f} ms {100 * v['share']:5.1f}%")
    if args.out:
        from jaxdqn.io import atomic_write_json

        atomic_write_json(args.out, {"preset": args.preset, "changes": base,
                                     "results": results})
    return 0


if __name__ == "__main__":
    sys.exit(main())
