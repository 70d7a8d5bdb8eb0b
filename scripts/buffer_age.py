"""The replay buffer's age, measured on CartPole-v1: how old sampled transitions are, how far their
actions are from the current policy's, and what that does to the value estimate and the return.

    python scripts/buffer_age.py --out runs/buffer_age
    python scripts/buffer_age.py --buffer-sizes 1000,10000,100000 --n-steps 1,3,5 --seeds 8

Each configuration is ``preset("cartpole")`` with ``buffer_age_metrics=True``, one buffer size
and one n-step return length (``n_step``). ``--seeds`` agents
train as one ``jit(vmap)`` program per configuration, on seed keys shared by all configurations
(differences are paired by seed), with jaxdqn's own loop (``jaxdqn.bias.make_value_study``): after
each of ``--segments`` equal segments of training, ``--eval-episodes`` greedy episodes measure
``Q(s, a)`` against the discounted return ``G`` that followed (``jaxdqn.bias``). At the end each
seed's params play ``--final-episodes`` greedy episodes.

Per configuration it reports, as means over seeds with 95% percentile-bootstrap intervals over
seeds (``jaxdqn.bias.bootstrap_ci``), each seed's value first averaged over the second half of the
run (rows, or measurements, after ``total_timesteps / 2``: epsilon has reached its end value and the
smaller buffers are full):

- ``sample_age``, ``sample_age_p90``: mean and 90th percentile of the sampled transitions' ages
  in env steps (the percentile of each minibatch, averaged over gradient steps);
- ``off_policy_fraction``: the fraction of sampled actions the current greedy policy would not
  take; ``importance_ratio``: the mean ``pi(a|s) / mu(a|s)`` of the current epsilon-greedy policy
  against the stored behaviour probability (1 in expectation: its noise is what grows);
  ``trace_coefficient``: the mean ``min(1, pi/mu)``, Retrace's ``c`` (``jaxdqn.replay_age``);
- ``bias``: mean ``Q - G`` over the measured states;
- ``final_return``: the final params' mean greedy return.

The table is printed and written with per-seed values and per-row curves (medians over seeds) to
``--out``/buffer_age.json. See docs/buffer_age.md for the measured table.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from jaxdqn.cli.parser import OneLineParser as _Parser
from jaxdqn.cli.parser import UserError as CliError
from jaxdqn.runtime import fast_cpu_compile

COLUMNS = ("sample_age", "sample_age_p90", "off_policy_fraction", "importance_ratio",
           "trace_coefficient")
"""The ``TrainMetrics`` columns of ``buffer_age_metrics``, reported per configuration."""


def int_list(text: str) -> list[int]:
    """``"1000,10000"`` -> ``[1000, 10000]``, each > 0."""
    try:
        values = [int(v) for v in text.split(",")]
    except ValueError:
        values = []
    if not values or min(values) <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is invalid: expected comma-separated "
                                         "positive ints")
    return values


def parse_args(argv):
    from jaxdqn.cli.parser import DefaultsHelpFormatter, positive_int

    p = _Parser(prog="buffer_age.py", description=__doc__.split("\n")[0],
                formatter_class=DefaultsHelpFormatter)
    p.add_argument("--out", default="runs/buffer_age", help="output folder (created)")
    p.add_argument("--buffer-sizes", type=int_list, default=[1000, 10_000, 100_000],
                   help="comma-separated replay capacities")
    p.add_argument("--n-steps", type=int_list, default=[1],
                   help="comma-separated n-step return lengths")
    p.add_argument("--seeds", type=positive_int, default=8, help="seeds per configuration")
    p.add_argument("--steps", type=positive_int, default=None,
                   help="env steps per run (default: the preset's total_timesteps)")
    p.add_argument("--segments", type=positive_int, default=4,
                   help="value measurements per run (each after an equal segment of training)")
    p.add_argument("--rows-per-segment", type=positive_int, default=5,
                   help="metric rows per segment")
    p.add_argument("--eval-episodes", type=positive_int, default=16,
                   help="greedy episodes per value measurement")
    p.add_argument("--final-episodes", type=positive_int, default=100,
                   help="greedy episodes per seed at the end")
    p.add_argument("--key", type=int, default=0, help="PRNG seed of the seed keys")
    p.add_argument("--resamples", type=positive_int, default=10_000, help="bootstrap resamples")
    return p.parse_args(argv)


def configurations(args):
    """``[(label, DQNConfig)]``, every one validated before anything compiles."""
    import jaxdqn

    base = jaxdqn.preset("cartpole").replace(buffer_age_metrics=True)
    steps = base.total_timesteps if args.steps is None else args.steps
    rows = args.segments * args.rows_per_segment
    per_iteration = base.steps_per_iteration
    if steps % (rows * per_iteration):
        raise CliError(f"--steps {steps} is invalid: must be a multiple of {rows * per_iteration} "
                       f"(--segments x --rows-per-segment metric rows of whole iterations of "
                       f"{per_iteration} env steps)")
    base = base.replace(total_timesteps=steps, log_interval=steps // rows)
    out = []
    for n in args.n_steps:
        for size in args.buffer_sizes:
            changes = {"buffer_size": size, "n_step": n}
            label = f"buffer {size:,}, n_step {n}"
            try:
                out.append((label, base.replace(**changes)))
            except ValueError as e:
                raise CliError(f"{label}: {e}") from None
    return out


def run_configuration(cfg, spec, args):
    """One configuration's seeds: per-row metrics, value measurements and final greedy returns,
    as numpy arrays with a leading seed axis."""
    import jax
    import numpy as np

    from jaxdqn.bias import make_value_study
    from jaxdqn.evaluation import evaluate

    keys = jax.random.split(jax.random.key(args.key), args.seeds)
    eval_keys = jax.random.split(jax.random.fold_in(jax.random.key(args.key), 1), args.seeds)
    study = make_value_study(cfg, spec, args.segments)
    out = jax.block_until_ready(jax.jit(jax.vmap(study))(keys))
    returns = jax.jit(jax.vmap(lambda p, k: evaluate(cfg, p, k, args.final_episodes)))(
        out.params, eval_keys)
    return {"metrics": jax.tree.map(np.asarray, out.metrics),
            "points": jax.tree.map(np.asarray, out.points),
            "final_returns": np.asarray(returns)}


def summarize(res, cfg, resamples):
    """Per-seed second-half means and their CIs over seeds; curves of medians over seeds."""
    import warnings

    import numpy as np

    from jaxdqn.bias import bootstrap_ci

    def ci(values):
        mean, low, high = bootstrap_ci(values, num_resamples=resamples)
        return {"mean": mean, "ci95": [low, high], "per_seed": np.asarray(values).tolist()}

    m, points = res["metrics"], res["points"]
    late_rows = m.env_steps[0] > cfg.total_timesteps // 2
    late_points = points.env_steps[0] > cfg.total_timesteps // 2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # rows without updates are NaN
        entry = {name: ci(np.nanmean(getattr(m, name)[:, late_rows], axis=1)) for name in COLUMNS}
        curves = {name: np.nanmedian(getattr(m, name), axis=0).tolist()
                  for name in (*COLUMNS, "episode_return", "epsilon")}
    entry["bias"] = ci(points.value.stats.bias[:, late_points].mean(axis=1))
    entry["final_return"] = ci(res["final_returns"].mean(axis=1))
    entry["curves"] = {"env_steps": m.env_steps[0].tolist(), **curves,
                       "measured_env_steps": points.env_steps[0].tolist(),
                       "bias": np.median(points.value.stats.bias, axis=0).tolist()}
    entry["max_cut_fraction"] = float(points.value.stats.cut_fraction.max())
    return entry


def fmt(entry, digits):
    low, high = entry["ci95"]
    return f"{entry['mean']:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"


HEADER = ("configuration", "age mean", "age p90", "off-policy fraction", "importance ratio",
          "trace c", "bias Q - G", "final return")
DIGITS = (0, 0, 3, 3, 3, 2, 1)


def table_rows(summary):
    return [[label, *(fmt(entry[k], d) for k, d in zip(
        (*COLUMNS, "bias", "final_return"), DIGITS))] for label, entry in summary.items()]


def print_table(summary):
    rows = [list(HEADER), *table_rows(summary)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(HEADER))]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)))


def markdown_table(summary) -> str:
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    lines += ["| " + " | ".join(r) + " |" for r in table_rows(summary)]
    return "\n".join(lines)


def main(argv=None) -> int:
    try:
        args = parse_args(sys.argv[1:] if argv is None else argv)
        plan = configurations(args)
    except CliError as e:
        print(f"buffer_age.py: {e}", file=sys.stderr)
        return 2
    fast_cpu_compile()
    from jaxdqn.bias import tail_bound, value_eval_spec
    from jaxdqn.io import atomic_write_json

    spec = value_eval_spec(plan[0][1], num_episodes=args.eval_episodes, epsilon=0.0)
    os.makedirs(args.out, exist_ok=True)
    summary, seconds = {}, {}
    for label, cfg in plan:
        start = time.perf_counter()
        res = run_configuration(cfg, spec, args)
        seconds[label] = time.perf_counter() - start
        summary[label] = summarize(res, cfg, args.resamples)
        print(f"{label}: {args.seeds} seeds x {cfg.total_timesteps} env steps in "
              f"{seconds[label]:.0f} s (compile included)", flush=True)
    print_table(summary)
    report = {"command": " ".join(["python scripts/buffer_age.py", *sys.argv[1:]]),
              "configs": {label: cfg.to_dict() for label, cfg in plan},
              "seeds": args.seeds, "eval_spec": spec._asdict(),
              # G of a measured state whose episode ran to the horizon misses at most this
              "tail_bound_per_cut_state": tail_bound(plan[0][1].gamma, spec),
              "statistics_over": "each seed's mean over the rows (measurements) after "
                                 "total_timesteps / 2; mean over seeds, 95% bootstrap CI",
              "seconds": seconds, "summary": summary, "markdown_table": markdown_table(summary)}
    atomic_write_json(os.path.join(args.out, "buffer_age.json"), report)
    print(f"wrote {os.path.join(args.out, 'buffer_age.json')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
