"""XLA's own memory figures for every program a group of runs compiles, against jaxdqn's estimate.

Compile only (nothing runs, so no device memory is needed): for each seed count it lowers and
compiles, on this process's backend,

- ``segment``: the segment program of ``jaxdqn train``/``sweep`` (``runs.make_runs(...).run``, the
  rows of one of 20 progress segments), its state donated;
- ``segment_kept``: the same function jitted without donating its state (as it was before issue
  24: the state in and the state out both alive at its peak);
- ``fused``: ``jax.jit(jax.vmap(make_train(config)))``, the whole run as one program;
- ``env_only`` and ``updates_only``: the two pieces ``scripts/benchmark.py`` times;

and prints ``compiled.memory_analysis()``'s arguments, outputs, temporaries and aliased bytes, the
peak they imply (arguments + outputs + temporaries - aliased) and its ratio to
``memory.estimate_memory(config, seeds).device_bytes``::

    python scripts/memory_analysis.py --preset minatar-fast --seeds 4 16 64
    python scripts/memory_analysis.py --preset minatar-fast --set total_timesteps=50000 --seeds 512

Figures are the backend's: XLA:CPU's and XLA:GPU's differ (docs/benchmarks.md has CPU figures).
"""

from __future__ import annotations

import sys

sys.path.insert(0, __file__.rsplit("/", 1)[0])
import benchmark  # sets XLA_FLAGS (fast_cpu_compile) before JAX is imported

PROGRAMS = ("segment", "segment_kept", "fused", "env_only", "updates_only")


def programs(config, seeds: int, which):
    """``{name: lowered program}`` for ``seeds`` runs of ``config`` (abstract inputs only)."""
    import jax
    import jax.numpy as jnp

    from jaxdqn.parallel import sharded_vmap
    from jaxdqn.runs import make_runs, make_train_seeds, rows_per_segment, seed_keys
    from jaxdqn.runtime import compiler_options

    key_data = jax.ShapeDtypeStruct((seeds, 2), jnp.uint32)
    runs = make_runs(config, seeds)
    state = jax.eval_shape(runs.init, seed_keys(0, seeds), None)
    rows = rows_per_segment(config.num_log_rows, 20)  # jaxdqn train's progress segments
    first_row = jax.ShapeDtypeStruct((), jnp.int32)
    def updates_only():
        update = benchmark.updates_only(config)
        return jax.jit(sharded_vmap(lambda k: update(jax.random.wrap_key_data(k)), None)).lower(
            key_data)

    build = {
        "segment": lambda: runs.run.lower(state, None, first_row, rows),
        "segment_kept": lambda: jax.jit(
            runs.run.__wrapped__, static_argnums=3,
            compiler_options=compiler_options(config)).lower(state, None, first_row, rows),
        "fused": lambda: make_train_seeds(config, None).lower(key_data, None),
        "env_only": lambda: make_train_seeds(benchmark.env_only_config(config), None).lower(
            key_data, None),
        "updates_only": updates_only,
    }
    return {name: build[name] for name in which}


def main(argv=None) -> int:
    import argparse

    from jaxdqn.cli.options import resolve_config
    from jaxdqn.cli.parser import DefaultsHelpFormatter
    from jaxdqn.memory import estimate_memory

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=DefaultsHelpFormatter)
    p.add_argument("--preset", default="minatar-fast", help="the config's preset")
    p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE", dest="sets",
                   help="override a DQNConfig field (repeatable)")
    p.add_argument("--seeds", type=int, nargs="+", default=[4, 16, 64], help="seed counts")
    p.add_argument("--programs", nargs="+", choices=PROGRAMS, default=list(PROGRAMS),
                   help="which programs to compile")
    args = p.parse_args(argv)
    config, _ = resolve_config(args.preset, None, args.sets, None)
    gb = 1e9
    print(f"{'seeds':>5} {'program':<16} {'arg GB':>8} {'out GB':>8} {'temp GB':>8} "
          f"{'alias GB':>8} {'peak GB':>8} {'x estimate':>10}")
    for seeds in args.seeds:
        estimate = estimate_memory(config, seeds).device_bytes
        print(f"{seeds:>5} {'estimate':<16} {'':>8} {'':>8} {'':>8} {'':>8} "
              f"{estimate / gb:>8.3f} {1:>10.2f}", flush=True)
        for name, lower in programs(config, seeds, args.programs).items():
            m = lower().compile().memory_analysis()
            peak = (m.argument_size_in_bytes + m.output_size_in_bytes + m.temp_size_in_bytes
                    - m.alias_size_in_bytes)
            print(f"{seeds:>5} {name:<16} {m.argument_size_in_bytes / gb:>8.3f} "
                  f"{m.output_size_in_bytes / gb:>8.3f} {m.temp_size_in_bytes / gb:>8.3f} "
                  f"{m.alias_size_in_bytes / gb:>8.3f} {peak / gb:>8.3f} "
                  f"{peak / estimate:>10.2f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
