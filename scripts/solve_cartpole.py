"""Train N seeds of a preset (vmapped), evaluate each with 100 greedy episodes, time it all.

    python scripts/solve_cartpole.py --preset cartpole --seeds 16 --out runs/solve.json
    python scripts/solve_cartpole.py --seeds 64 --first-seed 1000 --gymnasium   # also in Gymnasium

Beside each seed's greedy return it reports the start-state value (``jaxdqn.start_state_value``:
the mean of max_a Q over 1000 reset states) and its ratio to 1/(1-gamma), the value of a policy
that never fails when rewards are 1 per step and the time limit does not cut bootstrapping (as in
CartPole-v1): a ratio above 1 is over-estimation no policy can justify.

Seed i uses ``jax.random.key(first_seed + i)``. The seeds run as ``jaxdqn.runs.train_seeds``
runs them: one program, split across all devices (each CPU core is a device here, see
``jaxdqn.runtime.use_all_cpu_cores``); one seed runs unbatched. Compile and run times are measured
separately (``.lower(...).compile()``, then the call).
"""

from __future__ import annotations

import argparse
import ast
import os
import sys
import time

T_START = time.perf_counter()

from jaxdqn.runtime import fast_cpu_compile, use_all_cpu_cores  # noqa: E402

fast_cpu_compile()
use_all_cpu_cores()

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import jaxdqn  # noqa: E402
from jaxdqn.envs import solve_threshold  # noqa: E402
from jaxdqn.io import atomic_write_json  # noqa: E402
from jaxdqn.runs import plan_train_seeds  # noqa: E402

SOLVED = solve_threshold("CartPole-v1")  # 475


def parse_args(argv=None):
    from jaxdqn.cli.parser import DefaultsHelpFormatter

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=DefaultsHelpFormatter)
    p.add_argument("--preset", default="cartpole", help="preset name")
    p.add_argument("--seeds", type=int, default=16, help="number of seeds trained in one vmap")
    p.add_argument("--first-seed", type=int, default=0, help="seed i uses key(first_seed + i)")
    p.add_argument("--episodes", type=int, default=100, help="greedy evaluation episodes per seed")
    p.add_argument("--value-states", type=int, default=1000,
                   help="reset states averaged for the start-state value")
    p.add_argument("--gymnasium", action="store_true",
                   help="also evaluate every seed in Gymnasium's own env (same episode count)")
    p.add_argument("--out", default=None,
                   help="write the results as JSON here (default: print them only)")
    p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                   help="override a DQNConfig field of the preset (Python literal), repeatable")
    args = p.parse_args(argv)
    if args.seeds <= 0 or args.episodes <= 0 or args.value_states <= 0:
        p.error("--seeds, --episodes and --value-states must be > 0")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        config = jaxdqn.preset(args.preset)
        overrides = {}
        for item in args.set:
            field, sep, value = item.partition("=")
            if not sep:
                raise ValueError(f"--set {item!r} is not FIELD=VALUE")
            try:
                overrides[field] = ast.literal_eval(value)
            except (ValueError, SyntaxError):
                overrides[field] = value  # a bare string, e.g. env_id=CartPole-v1
        config = config.replace(**overrides)
    except ValueError as err:
        print(f"solve_cartpole: error: {err}", file=sys.stderr)
        return 2
    keys = jnp.stack([jax.random.key(args.first_seed + i) for i in range(args.seeds)])
    eval_keys = jax.vmap(lambda k: jax.random.fold_in(k, 1))(keys)

    t = time.perf_counter()  # "compile" counts the set-up too: memory check, placement, lowering
    runs = plan_train_seeds(config, keys)
    train_compiled = runs.fn.lower(*runs.args).compile()
    compile_s = time.perf_counter() - t
    t = time.perf_counter()
    out = runs.finish(jax.block_until_ready(train_compiled(*runs.args)))
    run_s = time.perf_counter() - t
    params = jax.device_get(out.params)

    evaluate = jax.jit(jax.vmap(lambda p, k: jaxdqn.evaluate(config, p, k, args.episodes)))
    t = time.perf_counter()
    returns = np.asarray(jax.block_until_ready(evaluate(params, eval_keys)))
    eval_s = time.perf_counter() - t
    value_keys = jax.vmap(lambda k: jax.random.fold_in(k, 2))(keys)
    value_of = jax.vmap(lambda p, k: jaxdqn.start_state_value(config, p, k, args.value_states))
    values = np.asarray(jax.jit(value_of)(params, value_keys))
    ideal = 1.0 / (1.0 - config.gamma) if config.gamma < 1 else float("nan")
    ratios = values / ideal

    means = returns.mean(axis=1)
    solved = means > SOLVED
    gym_means = None
    if args.gymnasium:
        from jaxdqn.cli import gymnasium_returns  # the `jaxdqn evaluate --gymnasium` replay

        t = time.perf_counter()
        gym_means = np.asarray([
            gymnasium_returns(config, jax.tree.map(lambda x, i=i: np.asarray(x)[i], params),
                              args.episodes, args.first_seed, i).mean()
            for i in range(args.seeds)])
        gym_s = time.perf_counter() - t
    env_steps = config.total_timesteps * args.seeds
    result = {
        "preset": args.preset,
        "overrides": args.set,
        "config": config.to_dict(),
        "seeds": [args.first_seed + i for i in range(args.seeds)],
        "mean_return": [round(float(m), 2) for m in means],
        "min_return": [float(r.min()) for r in returns],
        "solved": [bool(s) for s in solved],
        "fraction_solved": float(solved.mean()),
        "start_state_value": [round(float(v), 3) for v in values],
        "start_state_value_ratio": [round(float(r), 4) for r in ratios],
        "value_of_never_failing": ideal,
        "median_ratio": float(np.median(ratios)),
        "max_ratio": float(ratios.max()),
        "compile_s": round(compile_s, 3),
        "run_s": round(run_s, 3),
        "train_s": round(compile_s + run_s, 3),
        "eval_s_including_compile": round(eval_s, 3),
        "wall_s_since_start": round(time.perf_counter() - T_START, 3),
        "env_steps_per_s": round(env_steps / run_s),
        "updates_per_s": round(config.num_updates * args.seeds / run_s),
        "device": str(jax.devices()[0].device_kind),
        "num_devices": runs.num_devices,
        "backend": jax.default_backend(),
        "jax_version": jax.__version__,
        # float32 matmuls: None is the backend's default (TF32 on recent NVIDIA GPUs)
        "default_matmul_precision": jax.config.jax_default_matmul_precision,
        "jaxdqn_version": jaxdqn.__version__,
    }
    print(f"preset={args.preset} seeds={args.seeds} (first {args.first_seed}) "
          f"env={config.env_id} steps/seed={config.total_timesteps:,} "
          f"matmul precision={jax.config.jax_default_matmul_precision or 'default'}")
    if gym_means is not None:
        result["gymnasium_mean_return"] = [round(float(m), 2) for m in gym_means]
        result["gymnasium_solved"] = [bool(m > SOLVED) for m in gym_means]
        result["gymnasium_fraction_solved"] = float(np.mean(gym_means > SOLVED))
        result["gymnasium_s"] = round(gym_s, 3)
        result["gymnasium_keys"] = "env.reset(seed=SeedSequence([first_seed, seed_index, episode]))"
    print(f"{'seed':>6} {'mean':>8} {'min':>6}  solved  {'V(start)':>8} {'ratio':>6}"
          + ("  gymnasium" if gym_means is not None else ""))
    for i, (s, m, r, ok) in enumerate(zip(result["seeds"], means, returns, solved)):
        gym = f"  {gym_means[i]:9.1f}" if gym_means is not None else ""
        print(f"{s:>6} {m:8.1f} {r.min():6.0f}  {'yes' if ok else 'no':>6}  {values[i]:8.1f} "
              f"{ratios[i]:6.3f}{gym}")
    print(f"solved (mean > {SOLVED:.0f} over {args.episodes} episodes): "
          f"{int(solved.sum())}/{args.seeds} = {solved.mean():.0%}"
          + (f"; in Gymnasium {int((gym_means > SOLVED).sum())}/{args.seeds}"
             if gym_means is not None else ""))
    print(f"start-state value / (1/(1-gamma) = {ideal:g}): median {np.median(ratios):.3f}, "
          f"min {ratios.min():.3f}, max {ratios.max():.3f}")
    print(f"compile {compile_s:.2f} s, run {run_s:.2f} s, train total {compile_s + run_s:.2f} s; "
          f"evaluation {eval_s:.2f} s; wall since start {result['wall_s_since_start']:.2f} s")
    print(f"{result['env_steps_per_s']:,} env steps/s, {result['updates_per_s']:,} updates/s "
          f"on {runs.num_devices} x {result['device']} ({result['backend']}), "
          f"jax {jax.__version__}")
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        atomic_write_json(args.out, result)
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
