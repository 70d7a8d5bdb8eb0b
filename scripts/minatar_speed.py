"""Wall time of one MinAtar training run, everything included: imports, tracing, compiling, running.

The issue-11 speed target: 1M env steps of Breakout-MinAtar, one update every 4 steps, batch 32,
one seed (``preset("minatar-fast")``), in at most 240 s on one core of this CPU, compile and
imports included. One jitted ``make_train`` call, lowered and compiled apart so the two are timed
separately; the clock starts before ``import jax``.

    flock -x /tmp/jaxdqn-quiet.lock taskset -c 0 python scripts/minatar_speed.py   # the target
    taskset -c 0 python scripts/minatar_speed.py --steps 50000      # a short run, per-step cost
    taskset -c 0 python scripts/minatar_speed.py --preset minatar --steps 20000
    taskset -c 0 python scripts/minatar_speed.py --steps 50000 --seeds 3   # 3 seeds vmapped

``--steps`` shortens the run (the epsilon schedule keeps the preset's 100k-step decay where it
fits); the line printed gives the cost per gradient step with its env steps, and the 1M-step
figure extrapolated from it. ``--seeds N`` vmaps N seeds in the one program (as ``jaxdqn train
--seeds N`` does on one device); the per-update and 1M-step figures are then per seed.
"""
import time

T_START, C_START = time.time(), time.process_time()

import argparse  # noqa: E402
import dataclasses  # noqa: E402
import os  # noqa: E402


def main() -> None:
    from jaxdqn.cli.parser import DefaultsHelpFormatter

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=DefaultsHelpFormatter)
    parser.add_argument("--preset", default="minatar-fast", help="minatar-fast or minatar")
    parser.add_argument("--env", default=None, help="a MinAtar id (default: the preset's Breakout)")
    parser.add_argument("--steps", type=int, default=None, help="env steps (default: the preset's)")
    parser.add_argument("--seed", type=int, default=0, help="the run's key is PRNGKey(seed)")
    parser.add_argument("--seeds", type=int, default=1, help="seeds vmapped together")
    args = parser.parse_args()

    from jaxdqn.runtime import compiler_options, fast_cpu_compile
    fast_cpu_compile()
    import jax

    from jaxdqn.config import preset
    from jaxdqn.runs import seed_keys
    from jaxdqn.train import make_train

    config = preset(args.preset)
    if args.env is not None:
        config = dataclasses.replace(config, env_id=args.env)
    if args.steps is not None:
        decay = config.exploration_fraction * config.total_timesteps
        config = dataclasses.replace(config, total_timesteps=args.steps,
                                     exploration_fraction=min(1.0, decay / args.steps))
    key, train = seed_keys(args.seed, args.seeds), make_train(config)
    if args.seeds > 1:
        train = jax.vmap(train)
    else:
        key = key[0]
    t0 = time.time()
    compiled = jax.jit(train, compiler_options=compiler_options(config)).lower(key).compile()
    t1, c1 = time.time(), time.process_time()
    out = jax.block_until_ready(compiled(key))
    t2, c2 = time.time(), time.process_time()
    run = t2 - t1
    per_update = run / max(config.num_updates, 1) / args.seeds
    per_iteration = run / (config.total_timesteps / config.train_frequency) / args.seeds
    print(f"{config.env_id} preset {args.preset}, {args.seeds} seed{'s' * (args.seeds > 1)}: "
          f"{config.total_timesteps} env steps, "
          f"{config.num_updates} updates | imports {t0 - T_START:.1f} s, compile {t1 - t0:.1f} s, "
          f"run {run:.1f} s (cpu {c2 - c1:.1f} s), total {t2 - T_START:.1f} s wall "
          f"(cpu {c2 - C_START:.1f} s) | {per_update * 1e3:.3f} ms per update with its env steps, "
          f"1M env steps ~ {per_iteration * 1e6 / config.train_frequency:.0f} s of run | "
          f"load {' '.join(f'{x:.2f}' for x in os.getloadavg())} | "
          f"last row's mean return {float(out.metrics.episode_return[..., -1].mean()):.2f}",
          flush=True)


if __name__ == "__main__":
    main()
