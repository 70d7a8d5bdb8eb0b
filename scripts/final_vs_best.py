"""Final params vs the best params kept by evaluation during training, scored on fresh episodes.

    python scripts/final_vs_best.py --preset cartpole --seeds 32 --eval-interval 8000 --out r.json

Trains ``--seeds`` runs (``jaxdqn.runs.train_seeds``; seed i uses ``key(first_seed + i)``) with
``eval_episodes`` greedy episodes every ``eval_interval`` env steps, then plays ``--episodes``
greedy episodes with each run's final and best params on keys that neither training nor its
evaluations used (``fold_in(key, 1)``, as solve_cartpole.py). The best evaluation's own score is
reported beside them: it was selected as a maximum over a few episodes, so it overstates the
params it picked.
"""

from __future__ import annotations

import sys
import time

from jaxdqn.runtime import fast_cpu_compile, use_all_cpu_cores

fast_cpu_compile()
use_all_cpu_cores()

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import jaxdqn  # noqa: E402
from jaxdqn.cli.parser import OneLineParser, UserError, say  # noqa: E402
from jaxdqn.envs import solve_threshold  # noqa: E402
from jaxdqn.io import atomic_write_json  # noqa: E402
from jaxdqn.runs import train_seeds  # noqa: E402


def main(argv=None) -> int:
    try:
        return _main(argv)
    except (UserError, ValueError) as e:
        say(f"error: {e}", prog="final_vs_best")
        return 2


def _main(argv) -> int:
    from jaxdqn.cli.parser import DefaultsHelpFormatter

    p = OneLineParser(prog="final_vs_best.py", description=__doc__.splitlines()[0],
                      formatter_class=DefaultsHelpFormatter)
    p.add_argument("--preset", default="cartpole", help="preset to train")
    p.add_argument("--seeds", type=int, default=32, help="runs trained")
    p.add_argument("--first-seed", type=int, default=0, help="run i uses key(first_seed + i)")
    p.add_argument("--eval-interval", type=int, default=8000,
                   help="env steps between evaluations during training")
    p.add_argument("--eval-episodes", type=int, default=8,
                   help="greedy episodes per evaluation during training")
    p.add_argument("--episodes", type=int, default=100, help="fresh greedy episodes per params")
    p.add_argument("--out", default=None,
                   help="write the results as JSON here (default: print them only)")
    args = p.parse_args(argv)
    if args.seeds < 1 or args.eval_episodes < 1:
        raise UserError(f"--seeds={args.seeds} and --eval-episodes={args.eval_episodes} "
                        "must be >= 1")
    config = jaxdqn.preset(args.preset).replace(eval_interval=args.eval_interval,
                                                eval_episodes=args.eval_episodes)
    keys = jnp.stack([jax.random.key(args.first_seed + i) for i in range(args.seeds)])
    t = time.perf_counter()
    out = jax.device_get(train_seeds(config, keys))
    train_s = time.perf_counter() - t
    fresh = jax.vmap(lambda k: jax.random.fold_in(k, 1))(keys)
    score = jax.jit(jax.vmap(lambda params, k: jaxdqn.evaluate(config, params, k, args.episodes)))
    final = np.asarray(score(out.params, fresh)).mean(axis=1)
    best = np.asarray(score(out.best.params, fresh)).mean(axis=1)
    threshold = solve_threshold(config)
    selected = np.asarray(out.best.eval_return)
    result = {
        "preset": args.preset, "seeds": args.seeds, "first_seed": args.first_seed,
        "eval_interval": args.eval_interval, "eval_episodes": args.eval_episodes,
        "fresh_episodes": args.episodes, "solve_threshold": threshold, "seconds": train_s,
        "final_mean_return": final.tolist(), "best_mean_return": best.tolist(),
        "best_selection_score": selected.tolist(),
        "best_env_steps": np.asarray(out.best.env_steps).tolist(),
        "final_solved": int((final > threshold).sum()),
        "best_solved": int((best > threshold).sum()),
    }
    print(f"{args.preset} x {args.seeds} seeds (key({args.first_seed})..), {args.eval_episodes} "
          f"episodes every {args.eval_interval} env steps; {args.episodes} fresh episodes each:")
    print(f"  final params: solved {result['final_solved']}/{args.seeds}, mean return "
          f"{final.mean():.1f}, worst {final.min():.1f}")
    print(f"  best params:  solved {result['best_solved']}/{args.seeds}, mean return "
          f"{best.mean():.1f}, worst {best.min():.1f}")
    print(f"  best params' selection score (in training, biased upwards): mean "
          f"{selected.mean():.1f}; fresh minus selection: {np.mean(best - selected):+.1f}")
    if args.out:
        atomic_write_json(args.out, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
