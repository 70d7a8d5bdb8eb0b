"""The vmapped grid search that chose ``preset("cartpole")`` (see docs/cartpole_preset.md).

    python scripts/preset_search.py BASE GRID [SEEDS] [KEY]
    python scripts/preset_search.py "dict(total_timesteps=80000, num_envs=4, train_frequency=4, \
        batch_size=64, buffer_size=50000, learning_starts=1000, exploration_fraction=0.2, \
        end_epsilon=0.02, anneal_lr=True)" "dict(learning_rate=[2.5e-3, 5e-3], \
        target_update_freq=[100, 200, 400])" 6 0

BASE fixes the compiled program (a ``DQNConfig``); GRID varies traced ``HParams`` fields, so every
combination x every seed runs in one compiled, vmapped program, split across the devices (each CPU
core is one). Seeds are
``jax.random.split(jax.random.key(KEY), SEEDS)``, or with KEY=seqN the keys ``key(N), key(N+1), ...``
that ``solve_cartpole.py --first-seed N`` uses; each agent is evaluated with 100 greedy episodes.
The ``jaxdqn sweep`` command is the user-facing version of this.
"""

import ast
import itertools
import sys
import time

from jaxdqn.runtime import fast_cpu_compile, use_all_cpu_cores

fast_cpu_compile()
use_all_cpu_cores()

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import jaxdqn  # noqa: E402
from jaxdqn.parallel import devices_for, seed_mesh, sharded_vmap  # noqa: E402
from jaxdqn.train import HParams  # noqa: E402


def _literal_call(text: str) -> dict:
    """Parses ``dict(a=1, b=[2, 3])`` without eval."""
    call = ast.parse(text, mode="eval").body
    if not (isinstance(call, ast.Call) and getattr(call.func, "id", None) == "dict"):
        raise SystemExit(f"preset_search: expected dict(...), got {text!r}")
    return {kw.arg: ast.literal_eval(kw.value) for kw in call.keywords}


def main() -> int:
    if len(sys.argv) < 3 or sys.argv[1] in ("-h", "--help"):
        print(__doc__)
        return 0 if len(sys.argv) > 1 and sys.argv[1] in ("-h", "--help") else 2
    base, grid = _literal_call(sys.argv[1]), _literal_call(sys.argv[2])
    num_seeds = int(sys.argv[3]) if len(sys.argv) > 3 else 16
    key_arg = sys.argv[4] if len(sys.argv) > 4 else "0"
    if key_arg.startswith("seq"):
        seed_keys = jnp.stack([jax.random.key(int(key_arg[3:]) + i) for i in range(num_seeds)])
    else:
        seed_keys = jax.random.split(jax.random.key(int(key_arg)), num_seeds)
    config = jaxdqn.DQNConfig(**base)
    unknown = set(grid) - set(HParams._fields)
    if unknown:
        raise SystemExit(f"preset_search: {sorted(unknown)} change the program; put them in BASE")
    combos = list(itertools.product(*grid.values()))
    defaults = HParams.from_config(config)._asdict()
    rows = [{**defaults, **dict(zip(grid, c))} for c in combos]
    hparams = HParams(**{
        f: jnp.repeat(jnp.asarray([r[f] for r in rows],
                                  jnp.int32 if f == "target_update_freq" else jnp.float32),
                      num_seeds)
        for f in HParams._fields})
    keys = jnp.tile(seed_keys, (len(combos),))
    train = jaxdqn.make_train(config)

    def one(k, hp):
        out = train(k, hp)
        return jaxdqn.evaluate(config, out.params, jax.random.fold_in(k, 1), 100).mean()

    t = time.perf_counter()
    mesh = seed_mesh(devices_for(len(combos) * num_seeds))  # agents split across devices (cores)
    means = np.asarray(jax.jit(sharded_vmap(one, mesh))(keys, hparams))
    means = means.reshape(len(combos), num_seeds)
    print(f"base={base} seeds={num_seeds} time={time.perf_counter() - t:.1f}s")
    for combo, m in zip(combos, means):
        print(dict(zip(grid, combo)), f"solved {np.mean(m > 475):.2f} median {np.median(m):.0f} "
              f"min {m.min():.0f}", np.round(m).astype(int).tolist())
    return 0


if __name__ == "__main__":
    sys.exit(main())
