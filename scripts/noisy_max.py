"""The seed's noisy-max exercise: E[max of k noisy estimates of equal true values], exact against
Monte Carlo, and how the bias compounds through bootstrapping.

    python scripts/noisy_max.py [--samples 100000] [--seed 0] [--out runs/noisy_max.json]

Pure numpy (no JAX); see jaxdqn/noisy_max.py and docs/max_bias.md.
"""

from __future__ import annotations

import sys

from jaxdqn.cli.parser import OneLineParser as _Parser
from jaxdqn.cli.parser import UserError as CliError
from jaxdqn.io import atomic_write_json
from jaxdqn.noisy_max import compounding_table, noisy_max_table


def main(argv=None) -> int:
    from jaxdqn.cli.parser import DefaultsHelpFormatter

    p = _Parser(prog="noisy_max.py", description=__doc__.split("\n")[0],
                formatter_class=DefaultsHelpFormatter)
    p.add_argument("--samples", type=int, default=100_000, help="Monte Carlo draws per row")
    p.add_argument("--seed", type=int, default=0, help="numpy Generator seed")
    p.add_argument("--out", default=None,
                   help="also write the tables as JSON here (default: print them only)")
    try:
        args = p.parse_args(sys.argv[1:] if argv is None else argv)
        if args.samples < 2:
            raise CliError(f"--samples={args.samples} is invalid: must be >= 2")
        rows = noisy_max_table(num_samples=args.samples, seed=args.seed)
        compounding = compounding_table(seed=args.seed)
    except (CliError, ValueError) as e:
        print(f"noisy_max.py: error: {e}", file=sys.stderr)
        return 2

    print("E[max of k iid N(0, sigma^2)] = sigma * e_k: exact (closed form for k <= 5, else "
          "numerical integration) vs Monte Carlo")
    print(f"{'k':>5} {'sigma':>6} {'exact':>12} {'simulated':>12} {'+- s.e.':>9} {'z':>6}  form")
    for r in rows:
        print(f"{r['k']:>5} {r['sigma']:>6g} {r['exact']:>12.6f} {r['simulated']:>12.6f} "
              f"{r['standard_error']:>9.6f} {r['z']:>6.2f}  "
              f"{'closed' if r['closed_form'] else 'numeric'}")
    print("\nCompounding: bias of noisy max-bootstrapping at its fixed point "
          "gamma * sigma * e_k / (1 - gamma)")
    print(f"{'k':>5} {'sigma':>6} {'gamma':>6} {'per step':>10} {'fixed point':>12} "
          f"{'simulated':>10}")
    for r in compounding:
        print(f"{r['k']:>5} {r['sigma']:>6g} {r['gamma']:>6g} {r['per_step_bias']:>10.4f} "
              f"{r['fixed_point']:>12.4f} {r['simulated']:>10.4f}")
    if args.out:
        try:
            atomic_write_json(args.out, {"expected_max": rows, "compounding": compounding})
        except OSError as e:
            print(f"noisy_max.py: error: cannot write --out={args.out!r}: {e}", file=sys.stderr)
            return 2
        print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
