"""The vmapped grid search that chose ``preset("cartpole")`` (see docs/cartpole_preset.md).

    python scripts/preset_search.py BASE GRID [SEEDS] [KEY] [--out FILE]
    python scripts/preset_search.py "dict(preset='cartpole')" \
        "dict(gamma=[0.99, 0.995], learning_rate=[3.5e-3, 7e-3], loss=['mse', 'huber'])" 16 seq0

BASE is a ``DQNConfig`` as ``dict(field=value, ...)``, optionally starting from a preset
(``preset='cartpole'``). GRID is every combination of its values. Combinations that differ only in
traced ``HParams`` fields (learning rate, gamma, epsilons, target period, tau) form one shape
group: every combination x every seed of a group trains in one compiled, vmapped program, split
across the devices (each CPU core is one). Any other field (loss, estimator, num_envs, steps...)
starts a new group, compiled apart. Seeds are ``jax.random.split(jax.random.key(KEY), SEEDS)``,
or with KEY=seqN the keys ``key(N), key(N+1), ...`` that ``solve_cartpole.py --first-seed N`` uses.

Each agent is judged by its final params on two things:
  * solved: mean return over 100 greedy episodes > 475;
  * calibration: its start-state value (``jaxdqn.start_state_value``, mean of max_a Q over 1000
    reset states) as a ratio to 1/(1-gamma), the value of a policy that never fails (CartPole pays
    1 per step and bootstraps through the time limit). The target is a median ratio in
    [0.95, 1.10] with no seed above 1.2.
Combinations are ranked by the objective ``solved fraction - calibration penalty``, the penalty
being how far the median ratio lies outside [0.95, 1.10] plus the fraction of seeds above 1.2.
The ``jaxdqn sweep`` command is the user-facing version of this.
"""

from __future__ import annotations

import argparse
import ast
import os
import sys
import time

from jaxdqn.runtime import fast_cpu_compile, use_all_cpu_cores

fast_cpu_compile()
use_all_cpu_cores()

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import jaxdqn  # noqa: E402
from jaxdqn.envs import solve_threshold  # noqa: E402
from jaxdqn.io import atomic_write_json  # noqa: E402
from jaxdqn.parallel import pad_runs, seed_mesh, sharded_vmap  # noqa: E402
from jaxdqn.runs import run_devices  # noqa: E402
from jaxdqn.sweep import expand_grid, shape_groups  # noqa: E402

SOLVED = solve_threshold("CartPole-v1")  # 475
CALIBRATED = (0.95, 1.10)  # the median start-state value ratio wanted
WORST_RATIO = 1.2  # no seed above this


def _literal_call(text: str) -> dict:
    """Parses ``dict(a=1, b=[2, 3])`` without eval."""
    call = ast.parse(text, mode="eval").body
    if not (isinstance(call, ast.Call) and getattr(call.func, "id", None) == "dict"):
        raise SystemExit(f"preset_search: expected dict(...), got {text!r}")
    return {kw.arg: ast.literal_eval(kw.value) for kw in call.keywords}


def base_config(fields: dict) -> jaxdqn.DQNConfig:
    """``dict(preset='cartpole', gamma=0.99)`` -> ``preset('cartpole').replace(gamma=0.99)``."""
    fields = dict(fields)
    name = fields.pop("preset", None)
    if name is None:
        return jaxdqn.DQNConfig(**fields)
    return jaxdqn.preset(name).replace(**fields)


def calibration_penalty(ratios: np.ndarray) -> float:
    """How far the median ratio lies outside ``CALIBRATED``, plus the fraction above the worst."""
    med = float(np.median(ratios))
    lo, hi = CALIBRATED
    return max(0.0, med - hi) + max(0.0, lo - med) + float(np.mean(ratios > WORST_RATIO))


def summarise(values: dict, means: np.ndarray, ratios: np.ndarray) -> dict:
    solved = float(np.mean(means > SOLVED))
    penalty = calibration_penalty(ratios)
    return {
        "values": values,
        "solved": solved,
        "median_return": float(np.median(means)),
        "min_return": float(means.min()),
        "median_ratio": float(np.median(ratios)),
        "min_ratio": float(ratios.min()),
        "max_ratio": float(ratios.max()),
        "calibrated": bool(CALIBRATED[0] <= np.median(ratios) <= CALIBRATED[1]
                           and ratios.max() <= WORST_RATIO),
        "objective": solved - penalty,
        "mean_return": np.round(means, 1).tolist(),
        "ratio": np.round(ratios, 3).tolist(),
    }


def _row_line(row: dict) -> str:
    return (f"{row['values']}  solved {row['solved']:.2f}  "
            f"return median {row['median_return']:.0f} "
            f"min {row['min_return']:.0f}  ratio median {row['median_ratio']:.3f} "
            f"[{row['min_ratio']:.2f}, {row['max_ratio']:.2f}]"
            f"{' calibrated' if row['calibrated'] else ''}  objective {row['objective']:+.3f}")


def search_group(group, seed_keys: jax.Array) -> tuple[np.ndarray, np.ndarray, float]:
    """Trains and judges every combination x seed of one shape group in one program.

    Returns ``(mean_return f32[combos, seeds], ratio f32[combos, seeds], seconds)``.
    """
    config = group.config
    num_combos, num_seeds = len(group.combinations), seed_keys.shape[0]
    train = jaxdqn.make_train(config)

    def one(k, hp):
        params = train(k, hp).params
        mean = jaxdqn.evaluate(config, params, jax.random.fold_in(k, 1), 100).mean()
        value = jaxdqn.start_state_value(config, params, jax.random.fold_in(k, 2))
        return mean, value * (1.0 - hp.gamma)

    hparams = jax.tree.map(lambda col: jnp.repeat(jnp.asarray(col), num_seeds), group.hparams)
    keys = jnp.tile(seed_keys, (num_combos,))
    t = time.perf_counter()
    mesh = seed_mesh(run_devices(num_combos * num_seeds))  # agents split across devices (cores)
    (keys, hparams), n = pad_runs((keys, hparams), mesh.devices.size)
    means, ratios = jax.jit(sharded_vmap(one, mesh))(keys, hparams)
    means = np.asarray(means)[:n].reshape(num_combos, num_seeds)
    ratios = np.asarray(ratios)[:n].reshape(num_combos, num_seeds)
    return means, ratios, time.perf_counter() - t


def main(argv=None) -> int:
    from jaxdqn.cli.parser import DefaultsHelpFormatter

    p = argparse.ArgumentParser(usage=__doc__.splitlines()[2].strip(), description=__doc__,
                                formatter_class=DefaultsHelpFormatter)
    p.add_argument("base", metavar="BASE", help="the base DQNConfig, as dict(field=value, ...)")
    p.add_argument("grid", metavar="GRID", help="the values to try, as dict(field=[values], ...)")
    p.add_argument("seeds", metavar="SEEDS", nargs="?", type=int, default=16,
                   help="seeds per combination")
    p.add_argument("key", metavar="KEY", nargs="?", default="0",
                   help="seed keys split(key(KEY), SEEDS), or seqN for key(N), key(N+1), ...")
    p.add_argument("--out", help="write every combination's figures as JSON here "
                                 "(default: print the table only)")
    argv = sys.argv[1:] if argv is None else argv
    if not argv:
        print(__doc__)
        return 2
    args = p.parse_args(argv)
    base_fields, grid = _literal_call(args.base), _literal_call(args.grid)
    try:
        groups = shape_groups(expand_grid(base_config(base_fields), grid))
    except ValueError as err:
        raise SystemExit(f"preset_search: {err}") from None
    num_seeds = args.seeds
    if args.key.startswith("seq"):
        first = int(args.key[3:])
        seed_keys = jnp.stack([jax.random.key(first + i) for i in range(num_seeds)])
    else:
        seed_keys = jax.random.split(jax.random.key(int(args.key)), num_seeds)

    rows, timings = [], []
    for group in groups:
        means, ratios, seconds = search_group(group, seed_keys)
        timings.append(seconds)
        fixed = {k: v for k, v in group.static_values(list(grid)).items()}
        print(f"group {fixed or '(one program)'}: {len(group.combinations)} combination(s) x "
              f"{num_seeds} seeds in {seconds:.1f} s (compile + run + evaluation)", flush=True)
        group_rows = [summarise(c.values, m, r)
                      for c, m, r in zip(group.combinations, means, ratios)]
        for row in group_rows:  # as each group finishes: a long search shows figures early
            print(f"  {_row_line(row)}", flush=True)
        rows += group_rows

    print(f"base={base_fields} seeds={num_seeds} key={args.key}")
    print("ranked by objective = solved - calibration penalty; "
          "ratio = start-state value x (1 - gamma)")
    for row in sorted(rows, key=lambda r: -r["objective"]):
        print(_row_line(row))
    if args.out:
        result = {"base": base_fields, "grid": grid, "seeds": num_seeds, "key": args.key,
                  "group_seconds": timings, "combinations": rows}
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        atomic_write_json(args.out, result)
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
