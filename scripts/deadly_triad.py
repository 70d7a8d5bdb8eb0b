"""The deadly triad, measured: linear Q-learning on TriadMDP diverges with all three legs and
converges with any one removed; a target network with a long period and a replay buffer that
keeps everything only slow the divergence down.

    python scripts/deadly_triad.py                          # ~1 min on one core
    python scripts/deadly_triad.py --seeds 16 --figure docs/deadly_triad.png --json triad.json

Every configuration is jaxdqn's own loop (``make_trainer``) in its linear mode (``hidden_sizes=()``:
``Q(s, a) = W[a] phi(s)``, no bias, W = 0 at the start), plain SGD, one program per
configuration with the seeds vmapped, run one metric row at a time so that the weight norm
``||W||`` is read after each row. The configurations (``jaxdqn.envs.deadly_triad`` derives each
prediction):

- ``triad``: features (phi(A) = 1, phi(B) = 2), off-policy (epsilon = 1: replay holds A eight
  times as often as B), bootstrapping (gamma = 0.99), the target synced every step;
- ``on-policy``: the same with epsilon = 0, so replay holds what the greedy policy does;
- ``tabular``: one-hot observations (TriadMDP-tabular): the linear Q is a table;
- ``monte-carlo``: TriadMDP-mc with gamma = 0: every reward is the return, nothing bootstraps;
- ``target+replay``: the triad with the target synced every 2000 steps and a buffer that holds
  the whole run (the DQN paper's two stabilisers);
- an epsilon sweep of the triad (one program, epsilon traced): the measured divergence threshold
  against the derived one, ``epsilon * (1 - 1/|A|) > 1 - (2 gamma - 1) / 4``.

It prints a table (final ``log10 ||W||``, mean and 95% bootstrap interval over seeds, beside the
prediction; the first non-finite metric row of each run) and draws the figure.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time

import numpy as np

from jaxdqn.runtime import fast_cpu_compile

BASE = dict(env_id="TriadMDP", hidden_sizes=(), optimizer="sgd", learning_rate=0.05, gamma=0.99,
            total_timesteps=20_000, buffer_size=1000, learning_starts=100, batch_size=32,
            train_frequency=1, target_update_freq=1, start_epsilon=1.0, end_epsilon=1.0,
            log_interval=500)
TARGET_PERIOD = 2000
LEGS = {
    "triad": {},
    "on-policy": dict(start_epsilon=0.0, end_epsilon=0.0),
    "tabular": dict(env_id="TriadMDP-tabular"),
    "monte-carlo": dict(env_id="TriadMDP-mc", gamma=0.0),
    "target+replay": dict(target_update_freq=TARGET_PERIOD, buffer_size=BASE["total_timesteps"]),
}
COLORS = {"triad": "tab:red", "on-policy": "tab:blue", "tabular": "tab:green",
          "monte-carlo": "tab:purple", "target+replay": "tab:orange"}
EPSILONS = (0.0, 0.5, 0.8, 0.85, 0.9, 0.95, 1.0)


def predictions(config) -> str:
    """What ``jaxdqn.envs.deadly_triad``'s algebra says ``||W||`` does under ``config``."""
    from jaxdqn.envs.deadly_triad import (
        expected_growth,
        go_probability,
        on_policy_fixed_point,
        optimal_q,
    )

    k, gamma, lr = 8, config.gamma, config.learning_rate
    g = go_probability(config.end_epsilon, k)
    if config.env_id == "TriadMDP-tabular":
        q = optimal_q(gamma, k)
        return f"-> ||Q*|| = {math.sqrt(sum(v * v for v in q['A'] + q['B'])):.3f}"
    if config.env_id == "TriadMDP-mc":
        # least squares of r = 1 on phi in {1, 2}, A and B held in the ratio 1 : g
        w = (1 + 2 * g) / (1 + 4 * g)
        return f"-> {math.sqrt(k) * w:.3f} (every W[a] = {w:.3f})"
    if config.target_update_freq > 1:
        return f"x{2 * gamma / (1 + 4 * g):.2f} per target period"
    rate = lr * expected_growth(gamma, g)
    if rate > 0:
        return f"x e^{rate * 1000:.2f} per 1k updates (log10 +{rate * 1000 / math.log(10):.2f})"
    return f"-> {on_policy_fixed_point(gamma):.3f} (W[0]; the rest stay 0)"


def measured(config, norms, steps) -> str:
    """What the runs did, in the prediction's terms: the growth rate of ``||W||`` over the second
    half of the run (per 1k updates, or per target period), or where it ended."""
    half = len(steps) // 2
    with np.errstate(divide="ignore", invalid="ignore"):
        logs = np.log(norms)
    rate = np.median((logs[:, -1] - logs[:, half]) / (steps[-1] - steps[half]))
    if config.env_id == "TriadMDP" and config.target_update_freq > 1:
        return f"x{math.exp(rate * config.target_update_freq):.2f} per target period"
    if config.env_id == "TriadMDP" and config.end_epsilon > 0.5:
        return f"x e^{rate * 1000:.2f} per 1k updates"
    final = norms[:, -1]
    return f"{final.mean():.3f} (seeds {final.min():.3f} to {final.max():.3f})"


def weight_norms(params) -> np.ndarray:
    """``||W||`` of each run: ``params`` with a leading run axis, in float64 (no overflow)."""
    import jax

    leaves = [np.asarray(x, np.float64).reshape(np.shape(x)[0], -1)
              for x in jax.tree.leaves(params)]
    with np.errstate(over="ignore", invalid="ignore"):
        return np.sqrt(sum((x * x).sum(axis=1) for x in leaves))


def run_leg(config, keys):
    """``(norms [seeds, rows], nonfinite [seeds, rows], env_steps [rows])``: one program for the
    seeds, called once per metric row."""
    import jax

    from jaxdqn.train import RUNNER_STATE_AXES, make_trainer

    trainer = make_trainer(config)
    init = jax.jit(jax.vmap(trainer.init, out_axes=RUNNER_STATE_AXES))
    run = jax.jit(jax.vmap(trainer.run, in_axes=(RUNNER_STATE_AXES, None, None, None),
                           out_axes=(RUNNER_STATE_AXES, 0)), static_argnums=3)
    state = init(keys)
    norms, flags, steps = [], [], []
    for row in range(config.num_log_rows):
        state, metrics = run(state, None, row, 1)
        norms.append(weight_norms(state.train.params))
        flags.append(np.asarray(metrics.nonfinite)[:, 0])
        steps.append(int(np.asarray(metrics.env_steps)[0, 0]))
    return np.stack(norms, 1), np.stack(flags, 1), np.asarray(steps)


def epsilon_sweep(config, keys):
    """Final ``||W||`` ``[len(EPSILONS), seeds]`` of the triad at each epsilon: one program,
    epsilon traced."""
    import jax
    import jax.numpy as jnp

    from jaxdqn.train import HParams, make_train

    base = HParams.from_config(config)
    eps = jnp.asarray(EPSILONS, jnp.float32)
    hparams = base._replace(start_epsilon=eps, end_epsilon=eps)
    axes = HParams(*(0 if name in ("start_epsilon", "end_epsilon") else None
                     for name in HParams._fields))
    train = make_train(config)
    per_seed = jax.vmap(train, in_axes=(0, None))
    out = jax.jit(jax.vmap(per_seed, in_axes=(None, axes)))(keys, hparams)
    params = jax.tree.map(lambda x: x.reshape(-1, *x.shape[2:]), out.params)
    return weight_norms(params).reshape(len(EPSILONS), -1)


def log_ci(norms) -> tuple[float, float, float]:
    """Mean of ``log10 ||W||`` over seeds with its 95% bootstrap interval (inf: overflowed)."""
    from jaxdqn.bias import bootstrap_ci

    logs = np.log10(norms)
    if not np.all(np.isfinite(logs)):
        return (math.inf,) * 3
    return bootstrap_ci(logs, num_resamples=2000)


def threshold_epsilon(gamma: float, k: int = 8) -> float:
    """The epsilon above which the triad diverges: ``g = eps / k + 1 - eps < (2 gamma - 1) / 4``."""
    return (1 - (2 * gamma - 1) / 4) / (1 - 1 / k)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, default=8, help="runs per configuration (vmapped)")
    p.add_argument("--seed", type=int, default=0, help="base seed of the runs' keys")
    p.add_argument("--figure", default="docs/deadly_triad.png", help="where to draw the figure")
    p.add_argument("--json", default=None, help="also write the measurements here")
    args = p.parse_args(argv)
    fast_cpu_compile()
    import jax

    from jaxdqn.config import DQNConfig
    from jaxdqn.train import NONFINITE_LOSS, NONFINITE_PARAMS

    keys = jax.random.split(jax.random.key(args.seed), args.seeds)
    t0 = time.perf_counter()
    results = {}
    for name, changes in LEGS.items():
        config = DQNConfig(**{**BASE, **changes})
        norms, flags, steps = run_leg(config, keys)
        results[name] = dict(config=config, norms=norms, flags=flags, steps=steps)
    triad = DQNConfig(**BASE)
    sweep = epsilon_sweep(triad, keys)
    seconds = time.perf_counter() - t0

    def first_flag(flags_of_run):
        rows = np.flatnonzero(flags_of_run)
        return None if rows.size == 0 else int(rows[0])

    print(f"TriadMDP, {args.seeds} seeds, {BASE['total_timesteps']} env steps, SGD lr "
          f"{BASE['learning_rate']}, batch {BASE['batch_size']}; {seconds:.0f} s")
    head = ("configuration", "log10 ||W|| at the end [95% CI]", "derived", "measured",
            "runs non-finite (first row)")
    lines = []
    summary = {}
    for name, r in results.items():
        mean, lo, hi = log_ci(r["norms"][:, -1])
        firsts = [first_flag(f) for f in r["flags"]]
        bits = int(np.bitwise_or.reduce(r["flags"].reshape(-1)))
        what = "/".join(n for b, n in ((NONFINITE_PARAMS, "weights"), (NONFINITE_LOSS, "loss"))
                        if bits & b)
        flagged = [f for f in firsts if f is not None]
        nonfinite = (f"{len(flagged)}/{len(firsts)} ({what}, rows {min(flagged)}-{max(flagged)})"
                     if flagged else f"0/{len(firsts)}")
        got = measured(r["config"], r["norms"], r["steps"])
        lines.append((name, f"{mean:7.2f} [{lo:.2f}, {hi:.2f}]", predictions(r["config"]), got,
                      nonfinite))
        summary[name] = dict(log10_norm_final=[mean, lo, hi], first_nonfinite_row=firsts,
                             prediction=predictions(r["config"]), measured=got,
                             log10_norm_median=np.median(np.log10(r["norms"]), 0).tolist(),
                             env_steps=r["steps"].tolist())
    widths = [max(len(str(c)) for c in col) for col in zip(head, *lines)]
    for row in (head, tuple("-" * w for w in widths), *lines):
        print("  ".join(str(c).ljust(w) for c, w in zip(row, widths)))

    threshold = threshold_epsilon(BASE["gamma"])
    print(f"\nepsilon sweep of the triad (derived threshold: epsilon > {threshold:.3f})")
    summary["epsilon_sweep"] = {"threshold": threshold, "epsilons": list(EPSILONS),
                                "log10_norm_final": []}
    for eps, norms in zip(EPSILONS, sweep):
        mean, lo, hi = log_ci(norms)
        summary["epsilon_sweep"]["log10_norm_final"].append([mean, lo, hi])
        side = "diverges" if eps > threshold else "converges"
        print(f"  epsilon {eps:4.2f}: log10 ||W|| = {mean:7.2f} [{lo:.2f}, {hi:.2f}]  "
              f"(derived: {side})")
    draw(results, sweep, threshold, args.figure)
    print(f"figure: {args.figure}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"seeds": args.seeds, "seed": args.seed, "base": BASE, "legs": LEGS,
                       "seconds": seconds, **summary}, f, indent=1, default=list)
    return 0


def draw(results, sweep, threshold, path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(12, 4.5), gridspec_kw={"width_ratios": [3, 2]})
    for name, r in results.items():
        with np.errstate(divide="ignore"):
            logs = np.log10(r["norms"])
        logs = np.where(np.isfinite(logs), logs, np.nan)
        med = np.nanmedian(logs, 0)
        ax.plot(r["steps"], med, color=COLORS[name], label=name)
        ax.fill_between(r["steps"], np.nanmin(logs, 0), np.nanmax(logs, 0), color=COLORS[name],
                        alpha=0.2, linewidth=0)
    for s in range(TARGET_PERIOD, BASE["total_timesteps"] + 1, TARGET_PERIOD):
        ax.axvline(s, color=COLORS["target+replay"], alpha=0.15, linewidth=0.8)
    ax.set_xlabel("env steps (one SGD step each)")
    ax.set_ylabel("log10 ||W||")
    ax.set_title("linear Q-learning on TriadMDP (\"w, 2w\"): median and range over seeds")
    ax.legend(loc="upper left")
    logs = np.log10(sweep)
    ax2.errorbar(EPSILONS, logs.mean(1), yerr=[logs.mean(1) - logs.min(1),
                                              logs.max(1) - logs.mean(1)],
                 fmt="o-", color="tab:red", capsize=3)
    ax2.axvline(threshold, color="k", linestyle="--", label=f"derived threshold {threshold:.3f}")
    ax2.set_xlabel("epsilon (behaviour; the target policy is greedy)")
    ax2.set_ylabel("log10 ||W|| after 20k steps")
    ax2.set_title("the triad against epsilon: mean, range over seeds")
    ax2.legend(loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    sys.exit(main())
