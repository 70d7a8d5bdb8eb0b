"""Saves, or compares against saved ones, the outputs of fixed keys for a fixed set of configs.

A refactoring or a new option that is off must leave every run bit for bit as it was. This script
trains each case below with ``jax.jit(make_train(config))`` (one seed, ``key(0)``) and with
``jax.jit(jax.vmap(make_train(config)))`` (two seeds, ``split(key(1), 2)``), and writes every leaf
of the outputs (final params, metric rows, best params) to one ``.npz``. ``--compare`` re-runs the
cases and reports each array that differs in any bit (NaNs at the same places count as equal)::

    python scripts/bit_for_bit.py --save /tmp/before.npz      # on the old code
    python scripts/bit_for_bit.py --compare /tmp/before.npz   # new code: exit 1 if any differs

The cases cover the presets (the cartpole preset whole; probes; the MinAtar presets shortened),
every estimator, evaluation during training, a legal-action mask with random tie-breaking, SGD on
a table, Huber loss, gradient clipping and soft target updates.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np


def cases():
    from jaxdqn.config import DQNConfig, preset

    short = dict(env_id="CartPole-v1", total_timesteps=4000, buffer_size=1000, learning_starts=500,
                 batch_size=32, train_frequency=4, target_update_freq=200, hidden_sizes=(32,))
    out = {
        "preset_cartpole": preset("cartpole"),
        "preset_probes_probe3": preset("probes").replace(env_id="Probe3"),
        "preset_probes_probe5": preset("probes").replace(env_id="Probe5"),
        "minatar_fast_short": preset("minatar-fast").replace(
            total_timesteps=6000, learning_starts=1000, buffer_size=4000,
            exploration_fraction=0.5),
        "minatar_short_space_invaders": preset("minatar").replace(
            env_id="SpaceInvaders-MinAtar", total_timesteps=2000, learning_starts=500,
            buffer_size=2000, exploration_fraction=0.5),
        "seed_defaults_short": DQNConfig(total_timesteps=5000, buffer_size=1000),
    }
    for estimator, extra in (("dqn", {}), ("double_dqn", {}), ("double_q", {}),
                             ("clipped_double", {}), ("maxmin", {"ensemble_size": 3}),
                             ("maxmin", {"ensemble_size": 3, "update_all_members": True}),
                             ("averaged", {"ensemble_size": 3})):
        name = estimator + ("_all" if extra.get("update_all_members") else "")
        out[f"estimator_{name}"] = DQNConfig(**short, estimator=estimator, **extra)
        out[f"estimator_{name}_eval"] = DQNConfig(
            **dict(short, num_envs=4), estimator=estimator, eval_interval=1000, eval_episodes=3,
            log_interval=500, **extra)
    out["options_huber_clip_soft_anneal"] = DQNConfig(
        **short, loss="huber", max_grad_norm=1.0, tau=0.1, anneal_lr=True, num_envs=2)
    book = dict(env_id="MaxBiasMDP-book", total_timesteps=3000, buffer_size=3000,
                learning_starts=1, batch_size=1, train_frequency=1, target_update_freq=1,
                hidden_sizes=(), optimizer="sgd", learning_rate=0.1, gamma=1.0,
                start_epsilon=0.1, end_epsilon=0.1, random_tie_break=True)
    for estimator in ("dqn", "double_q"):
        out[f"maxbias_book_{estimator}"] = DQNConfig(**book, estimator=estimator)
    return out


def outputs(config) -> dict[str, np.ndarray]:
    import jax

    from jaxdqn.train import make_train

    train = make_train(config)
    one = jax.jit(train)(jax.random.key(0))
    many = jax.jit(jax.vmap(train))(jax.random.split(jax.random.key(1), 2))
    arrays = {}
    for tag, out in (("one", one), ("vmap", many)):
        for path, leaf in jax.tree_util.tree_leaves_with_path(out):
            arrays[f"{tag}{jax.tree_util.keystr(path)}"] = np.asarray(leaf)
    return arrays


def same(a: np.ndarray, b: np.ndarray) -> bool:
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    if np.issubdtype(a.dtype, np.floating):
        # reshape: a 0-d array cannot be viewed as bytes
        return bool(np.array_equal(a.reshape(-1).view(np.uint8), b.reshape(-1).view(np.uint8))
                    or np.array_equal(a, b, equal_nan=True))
    return bool(np.array_equal(a, b))


def main(argv=None) -> int:
    from jaxdqn.cli.parser import DefaultsHelpFormatter

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=DefaultsHelpFormatter)
    mode = p.add_mutually_exclusive_group(required=True)
    mode.add_argument("--save", metavar="NPZ", help="write the outputs to this file")
    mode.add_argument("--compare", metavar="NPZ", help="compare the outputs with this file")
    p.add_argument("--only", default=None, help="comma-separated case names (default: all)")
    args = p.parse_args(argv)

    chosen = cases()
    if args.only:
        names = args.only.split(",")
        unknown = [n for n in names if n not in chosen]
        if unknown:
            p.error(f"unknown case {unknown[0]!r}; known: {', '.join(chosen)}")
        chosen = {n: chosen[n] for n in names}
    saved = dict(np.load(args.compare)) if args.compare else None
    arrays, differ, new = {}, [], []
    for name, config in chosen.items():
        t0 = time.perf_counter()
        got = {f"{name}/{k}": v for k, v in outputs(config).items()}
        arrays.update(got)
        status = ""
        if saved is not None:
            # An output the saved file lacks (a metric column added since) is new, not a
            # difference: it is listed apart, and the saved outputs must all be equal.
            added = [k for k in got if k not in saved]
            bad = [k for k, v in got.items() if k in saved and not same(saved[k], v)]
            missing = [k for k in saved if k.startswith(f"{name}/") and k not in got]
            differ += bad + missing
            new += added
            status = "same" if not bad and not missing else f"DIFFERS: {', '.join(bad + missing)}"
            if added:
                status += f" (new, not compared: {', '.join(k.split('/', 1)[1] for k in added)})"
        print(f"{name:40s} {len(got):3d} arrays {time.perf_counter() - t0:6.1f} s {status}",
              flush=True)
    if args.save:
        np.savez(args.save, **arrays)
        print(f"saved {len(arrays)} arrays of {len(chosen)} cases to {args.save}")
        return 0
    compared = len(arrays) - len(new)
    print(f"{compared - len(differ)} of {compared} saved arrays equal bit for bit"
          + ("" if not differ else f"; {len(differ)} differ")
          + ("" if not new else f"; {len(new)} new arrays not in the saved file"))
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
