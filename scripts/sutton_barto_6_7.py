"""Sutton and Barto's Example 6.7 and Figure 6.5: tabular Q-learning against Double Q-learning.

    python scripts/sutton_barto_6_7.py --runs 1000 --episodes 300 --out runs/sb_6_7

The book's setting exactly: the MDP with two actions in A (left, right) and ten in B, each ending
the episode with a reward drawn from N(-0.1, 1) (env ``"MaxBiasMDP-book"``, legal actions
masked); step size alpha = 0.1, epsilon = 0.1, gamma = 1, tables initialised to zero, greedy ties
broken at random (in acting and in Double Q-learning's target). Both methods run through jaxdqn's
own training loop in its tabular mode: a linear Q without bias on one-hot observations (a table),
SGD with learning rate alpha, and online updates
(``buffer_size = batch_size = learning_starts = train_frequency = 1``, target synced every
step), so ``estimator="dqn"`` is Q-learning and ``estimator="double_q"`` is Double Q-learning (one
table updated at random each step, acting on Q1 + Q2). All runs of a method are one
``jit(vmap(train))`` program.

The loop counts env steps; episodes last one step (right) or two (left). The run logs one metric
row per env step, so a row with an episode end is exactly one episode, and that episode went left
iff it lasted two steps. ``2 * episodes`` steps always hold at least ``episodes`` episodes; the
first ``episodes`` of each run are kept.

Writes ``DIR/left_fraction.json`` (per method the fraction of runs that went left from A in each
episode, the runs, settings, timings) and ``DIR/figure_6_5.png`` in the book's style.
"""

from __future__ import annotations

import os
import sys
import time

from jaxdqn.cli.parser import OneLineParser as _Parser
from jaxdqn.cli.parser import UserError as CliError
from jaxdqn.cli.parser import positive_int
from jaxdqn.runtime import fast_cpu_compile

METHODS = (("q_learning", "Q-learning", "dqn", "tab:red"),
           ("double_q_learning", "Double Q-learning", "double_q", "tab:green"))
REPORT_EPISODES = (1, 10, 20, 50, 100, 200, 300)
EPSILON, ALPHA = 0.1, 0.1


def parse_args(argv):
    from jaxdqn.cli.parser import DefaultsHelpFormatter

    p = _Parser(prog="sutton_barto_6_7.py", description=__doc__.split("\n")[0],
                formatter_class=DefaultsHelpFormatter)
    p.add_argument("--runs", type=positive_int, default=1000, help="independent runs per method")
    p.add_argument("--episodes", type=positive_int, default=300, help="episodes per run")
    p.add_argument("--out", default="runs/sutton_barto_6_7", help="output folder (created)")
    p.add_argument("--key", type=int, default=0, help="PRNG seed; both methods share run keys")
    return p.parse_args(argv)


def book_config(episodes: int, estimator: str):
    """The book's Example 6.7 in jaxdqn's tabular mode (see the module docstring)."""
    from jaxdqn import DQNConfig

    return DQNConfig(env_id="MaxBiasMDP-book", estimator=estimator, hidden_sizes=(),
                     optimizer="sgd", learning_rate=ALPHA, gamma=1.0, buffer_size=1, batch_size=1,
                     learning_starts=1, train_frequency=1, target_update_freq=1,
                     start_epsilon=EPSILON, end_epsilon=EPSILON, exploration_fraction=1.0,
                     random_tie_break=True, total_timesteps=2 * episodes, log_interval=1)


def left_per_episode(episodes_done, episode_length, num_episodes: int):
    """``bool[runs, num_episodes]``: whether each run's k-th episode went left from A.

    ``episodes_done`` and ``episode_length`` are the per-step metric rows ``[runs, steps]``:
    1 and the episode's length where an episode ended at that step (0 and NaN elsewhere).
    """
    import numpy as np

    ends = np.asarray(episodes_done) > 0
    index = np.cumsum(ends, axis=1) - 1  # episode number of each end
    if (ends.sum(1) < num_episodes).any():
        raise ValueError(f"a run completed fewer than {num_episodes} episodes")
    keep = ends & (index < num_episodes)
    runs, steps = np.nonzero(keep)
    left = np.zeros((ends.shape[0], num_episodes), bool)
    left[runs, index[runs, steps]] = np.asarray(episode_length)[runs, steps] == 2
    return left


def run_method(estimator: str, runs: int, episodes: int, key: int):
    import jax
    import numpy as np

    from jaxdqn import make_train
    from jaxdqn.runs import seed_keys

    cfg = book_config(episodes, estimator)
    keys = seed_keys(key, runs)
    train = jax.jit(jax.vmap(make_train(cfg)))
    start = time.perf_counter()
    compiled = train.lower(keys).compile()
    compile_s = time.perf_counter() - start
    start = time.perf_counter()
    metrics = jax.block_until_ready(compiled(keys).metrics)
    run_s = time.perf_counter() - start
    left = left_per_episode(np.asarray(metrics.episodes), np.asarray(metrics.episode_length),
                            episodes)
    return cfg, left, compile_s, run_s


def figure(result, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from jaxdqn.io import atomic_savefig

    fig, ax = plt.subplots(figsize=(6.4, 4.4), constrained_layout=True)
    x = range(1, result["episodes"] + 1)
    for name, label, _, color in METHODS:
        ax.plot(x, [100 * v for v in result[name]], color=color, lw=1.4, label=label)
    ax.axhline(100 * result["optimal"], color="k", ls="--", lw=1, label="optimal")
    ax.set(xlabel="Episodes", ylabel="% left actions from A", xlim=(1, result["episodes"]),
           ylim=(0, 100), yticks=[0, 5, 25, 50, 75, 100],
           title=f"Example 6.7 (Figure 6.5): mean over {result['runs']} runs")
    ax.legend(frameon=False)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    atomic_savefig(fig, path, dpi=120)
    plt.close(fig)


def main(argv=None) -> int:
    fast_cpu_compile()
    try:
        args = parse_args(sys.argv[1:] if argv is None else argv)
        os.makedirs(args.out, exist_ok=True)
    except (CliError, OSError) as e:
        print(f"sutton_barto_6_7.py: error: {e}", file=sys.stderr)
        return 2
    from jaxdqn.io import atomic_write_json

    result = {"runs": args.runs, "episodes": args.episodes, "key": args.key,
              "optimal": EPSILON / 2, "alpha": ALPHA, "epsilon": EPSILON, "gamma": 1.0,
              "command": " ".join(["sutton_barto_6_7.py"] + (sys.argv[1:] if argv is None
                                                              else list(argv)))}
    summary = {}
    for name, label, estimator, _ in METHODS:
        cfg, left, compile_s, run_s = run_method(estimator, args.runs, args.episodes, args.key)
        frac = left.mean(axis=0)
        result[name] = frac.tolist()
        peak = int(frac.argmax())
        summary[name] = {
            "at_episode": {str(e): float(frac[e - 1]) for e in REPORT_EPISODES
                           if e <= args.episodes},
            "peak": float(frac[peak]), "peak_episode": peak + 1,
            "mean_last_50": float(frac[-50:].mean()),
            "compile_seconds": compile_s, "run_seconds": run_s, "config": cfg.to_dict()}
        print(f"{label:<18} compile {compile_s:5.1f} s, {args.runs} runs in {run_s:5.1f} s; "
              f"peak {frac[peak]:.1%} at episode {peak + 1}; " + ", ".join(
                  f"ep {e}: {frac[e - 1]:.1%}" for e in REPORT_EPISODES if e <= args.episodes),
              flush=True)
    result["summary"] = summary
    atomic_write_json(os.path.join(args.out, "left_fraction.json"), result)
    figure(result, os.path.join(args.out, "figure_6_5.png"))
    print(f"wrote {args.out}/left_fraction.json and figure_6_5.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
