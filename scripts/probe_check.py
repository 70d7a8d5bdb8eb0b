"""Trains every probe environment for N vmapped seeds and reports how far each seed's Q-values are
from the exact ones (the seed's debugging ladder: a bug in the loss, the targets, the bootstrap
cut or the network shows up on one rung).

    python scripts/probe_check.py --seeds 4 --key 42

Config: ``preset("probes")`` with ``env_id`` set to each probe; seeds are
``jax.random.split(jax.random.key(KEY), SEEDS)``. Tolerances are the course's: 5e-4, Probe5 1e-3.
Exits 1 if any seed of any probe is outside its tolerance.
"""

from __future__ import annotations

import argparse
import sys

from jaxdqn.runtime import fast_cpu_compile

fast_cpu_compile()

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import jaxdqn  # noqa: E402
from jaxdqn.envs.probes import PROBE_TOLERANCES  # noqa: E402
from jaxdqn.runs import seed_keys  # noqa: E402


def main(argv=None) -> int:
    from jaxdqn.cli.parser import DefaultsHelpFormatter

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=DefaultsHelpFormatter)
    p.add_argument("--seeds", type=int, default=4, help="seeds trained in one vmap")
    p.add_argument("--key", type=int, default=42, help="seeds are runs.seed_keys(KEY, SEEDS)")
    args = p.parse_args(argv)
    if args.seeds <= 0:
        p.error("--seeds must be > 0")
    keys = seed_keys(args.key, args.seeds)
    failed = False
    print(f"{'probe':<8} {'max |Q - Q*| over seeds':>24} {'tolerance':>10}  pass")
    for probe, tol in PROBE_TOLERANCES.items():
        cfg = jaxdqn.preset("probes").replace(env_id=probe)
        params = jax.jit(jax.vmap(jaxdqn.make_train(cfg)))(keys).params
        q_fn = jaxdqn.make_q_fn(cfg)
        errors = np.zeros(args.seeds)
        for obs, q_star in jaxdqn.expected_q(probe, cfg.gamma).items():
            q = np.asarray(jax.vmap(q_fn, in_axes=(0, None))(params, jnp.array(obs)))
            legal = ~np.isnan(np.asarray(q_star))  # illegal actions (Probe6) have no value
            errors = np.maximum(errors,
                                np.abs(q - np.asarray(q_star))[..., legal].max(axis=-1))
        ok = bool(np.all(errors <= tol))
        failed |= not ok
        verdict = "yes" if ok else f"NO: seeds {np.flatnonzero(errors > tol).tolist()}"
        print(f"{probe:<8} {errors.max():>24.1e} {tol:>10.0e}  {verdict}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
