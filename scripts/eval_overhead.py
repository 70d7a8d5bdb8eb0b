"""Cost of evaluation during training: the same seeds trained with and without it, timed apart
from compilation, and checked to follow the same training trajectory bit for bit.

    python scripts/eval_overhead.py --preset cartpole --seeds 1 --eval-interval 8000 --repeats 5

Runs go through ``jaxdqn.runs.train_seeds``'s program (seeds split across all devices; each
CPU core is a device here). The two programs alternate, ``--repeats`` times each, and the median
wall time of each is reported (with the minima and the process CPU time, steadier on a shared
machine); the first call of each is a warm-up and not counted.
"""

from __future__ import annotations

import statistics
import sys
import time

from jaxdqn.runtime import fast_cpu_compile, use_all_cpu_cores

fast_cpu_compile()
use_all_cpu_cores()

import jax  # noqa: E402
import numpy as np  # noqa: E402

import jaxdqn  # noqa: E402
from jaxdqn.cli.parser import OneLineParser, UserError, say  # noqa: E402
from jaxdqn.io import atomic_write_json  # noqa: E402
from jaxdqn.runs import plan_train_seeds, seed_keys  # noqa: E402


def main(argv=None) -> int:
    try:
        return _main(argv)
    except (UserError, ValueError) as e:
        say(f"error: {e}", prog="eval_overhead")
        return 2


def _main(argv) -> int:
    from jaxdqn.cli.parser import DefaultsHelpFormatter

    p = OneLineParser(prog="eval_overhead.py", description=__doc__.splitlines()[0],
                      formatter_class=DefaultsHelpFormatter)
    p.add_argument("--preset", default="cartpole", help="preset to train")
    p.add_argument("--seeds", type=int, default=1, help="seeds trained together")
    p.add_argument("--eval-interval", type=int, default=None,
                   help="env steps between evaluations (default: a tenth of the run)")
    p.add_argument("--eval-episodes", type=int, default=8, help="greedy episodes per evaluation")
    p.add_argument("--repeats", type=int, default=5,
                   help="timed calls of each program after its warm-up call")
    p.add_argument("--json", default=None, help="also write the results here (default: don't)")
    args = p.parse_args(argv)
    if args.seeds < 1 or args.eval_episodes < 1:
        raise UserError(f"--seeds={args.seeds} and --eval-episodes={args.eval_episodes} "
                        "must be >= 1")
    off = jaxdqn.preset(args.preset)
    on = off.replace(eval_interval=args.eval_interval or off.total_timesteps // 10,
                     eval_episodes=args.eval_episodes)
    keys = seed_keys(0, args.seeds)
    programs = {}
    for name, config in (("off", off), ("on", on)):
        runs = plan_train_seeds(config, keys)
        t = time.perf_counter()
        compiled = runs.fn.lower(*runs.args).compile()
        programs[name] = (runs, compiled, time.perf_counter() - t)
    outputs, times, cpu = {}, {"off": [], "on": []}, {"off": [], "on": []}
    for repeat in range(args.repeats + 1):
        for name, (runs, compiled, _) in programs.items():
            t, c = time.perf_counter(), time.process_time()
            out = jax.block_until_ready(compiled(*runs.args))
            if repeat:
                times[name].append(time.perf_counter() - t)
                cpu[name].append(time.process_time() - c)
            outputs[name] = runs.finish(out)
    a, b = outputs["off"], outputs["on"]
    identical = all(np.array_equal(x, y, equal_nan=True) for x, y in zip(
        jax.tree.leaves((a.params, a.metrics[:-2])), jax.tree.leaves((b.params, b.metrics[:-2]))))
    med = {name: statistics.median(ts) for name, ts in times.items()}
    best = {name: min(ts) for name, ts in times.items()}
    cpu_med = {name: statistics.median(ts) for name, ts in cpu.items()}
    result = {
        "preset": args.preset, "seeds": args.seeds, "total_timesteps": off.total_timesteps,
        "eval_interval": on.eval_interval, "eval_episodes": on.eval_episodes,
        "evaluations_per_run": on.total_timesteps // on.eval_interval,
        "devices": len(jax.devices()), "repeats": args.repeats,
        "compile_seconds": {name: prog[2] for name, prog in programs.items()},
        "run_seconds": times, "median_seconds": med, "min_seconds": best,
        "overhead": med["on"] / med["off"] - 1.0,
        "overhead_of_minima": best["on"] / best["off"] - 1.0,
        "cpu_seconds": cpu, "cpu_overhead": cpu_med["on"] / cpu_med["off"] - 1.0,
        "training_bit_identical": bool(identical),
        "final_eval_return": np.asarray(b.metrics.eval_return[:, -1]).tolist(),
    }
    print(f"{args.preset}, {args.seeds} seed(s), {on.eval_episodes} episodes every "
          f"{on.eval_interval} env steps: median {med['off']:.2f} s without evaluation, "
          f"{med['on']:.2f} s with ({100 * result['overhead']:+.1f}%; minima {best['off']:.2f} / "
          f"{best['on']:.2f} s, {100 * result['overhead_of_minima']:+.1f}%; CPU time "
          f"{100 * result['cpu_overhead']:+.1f}%); compile "
          f"{result['compile_seconds']['off']:.1f} / {result['compile_seconds']['on']:.1f} s; "
          f"training trajectory bit-identical: {identical}")
    if args.json:
        atomic_write_json(args.json, result)
    return 0 if identical else 1


if __name__ == "__main__":
    sys.exit(main())
