"""Measured maximization bias of any set of estimators on CartPole-v1 and MaxBiasMDP, one command.

    python scripts/max_bias.py --seeds 8 --out runs/max_bias
    python scripts/max_bias.py \
        --estimators dqn,double_dqn,double_q,clipped_double,maxmin:4,averaged:4
    python scripts/max_bias.py --estimators dqn,dqn+n_step=3,dqn+prioritized=true
    python scripts/max_bias.py --estimators "dqn,C51=dqn+distributional=c51+v_min=0+v_max=100"

For each env and method (an optional ``LABEL=``, an estimator's ``name``, ``name:N`` for
``ensemble_size``, then any ``+FIELD=VALUE`` config changes; default ``dqn,double_dqn``) it
trains ``--seeds`` agents with jaxdqn's own loop (one ``jit(vmap)`` program per method; the
methods differ only in their fields and share the seed keys, so differences are paired by seed),
and after every segment of training measures ``Q(s, a)`` (the estimator's acting values) against
the realised discounted return ``G`` over the states evaluation episodes visit (``jaxdqn.bias``).
It writes to ``--out``:

- ``bias.json``: per env and estimator the mean bias ``Q - G`` (and mean ``Q``, mean ``G``, late
  and final bias, each estimator minus DQN, paired by seed) with 95% bootstrap intervals over
  seeds; on MaxBiasMDP the fraction of episodes that went left; on CartPole the final greedy
  return (100 episodes per seed), the solve rate (mean > 475) and the IQM over seeds with a 95%
  stratified-bootstrap interval from ``rliable`` (``pip install jaxdqn[study]``); configs, eval
  specs, timings.
- ``max_bias_cartpole.png``, ``max_bias_mdp.png``: estimated value (mean ``Q``) and true value
  (mean ``G``) against training steps, the bias, and a third panel (greedy return; Q of A's and
  B's actions against their exact values), medians with interquartile bands over seeds.
- ``max_bias_mdp_left.png``: % of MaxBiasMDP episodes that went left against episodes
  (Sutton and Barto's Figure 6.5).
- ``noisy_max.json``: the seed's noisy-max exercise, exact against Monte Carlo.

See docs/max_bias.md for the method, the configs and the measured results.
"""

from __future__ import annotations

import math
import os
import sys
import time

from jaxdqn.cli.parser import OneLineParser as _Parser
from jaxdqn.cli.parser import UserError as CliError
from jaxdqn.cli.parser import positive_int
from jaxdqn.runtime import fast_cpu_compile

# The MaxBiasMDP study: a small network and a small replay buffer (about 17 samples per B action,
# like the book's constant step size 0.1), the target network synced every two buffer lengths so
# that online and target networks are fit to largely different samples, and the book's constant
# epsilon = 0.1 and gamma = 1.
MDP_CONFIG = dict(env_id="MaxBiasMDP", buffer_size=200, batch_size=32, gamma=1.0,
                  learning_rate=1e-3, target_update_freq=400, start_epsilon=0.1, end_epsilon=0.1,
                  exploration_fraction=1.0, learning_starts=100, train_frequency=1, num_envs=1,
                  hidden_sizes=(32,))
# CartPole-v1 when jaxdqn has no "cartpole" preset: settings that reach greedy returns of a few
# hundred within 100k steps.
CARTPOLE_FALLBACK = dict(env_id="CartPole-v1", total_timesteps=100_000, num_envs=10,
                         learning_starts=1000, exploration_fraction=0.5, end_epsilon=0.05)
PALETTE = ("tab:red", "tab:blue", "tab:green", "tab:purple", "tab:orange", "tab:brown",
           "tab:pink", "tab:olive", "tab:cyan", "tab:gray")
FINAL_EVAL_EPISODES = 100
COLORS: dict = {}  # label -> color, filled by parse_estimators


def parse_estimators(text: str) -> list[tuple[str, dict]]:
    """``"dqn,maxmin:4,dqn+n_step=3"`` -> ``[("DQN", {"estimator": "dqn"}), ("Maxmin N=4", ...),
    ("DQN n_step=3", {"estimator": "dqn", "n_step": 3})]``: an optional ``LABEL=`` (the method's
    name in tables and figures; else one is made from the rest), an estimator, ``:N`` for its
    ``ensemble_size``, then any ``+FIELD=VALUE`` config changes (``--set``'s syntax), each method
    validated by ``DQNConfig`` before anything compiles."""
    from jaxdqn import DQNConfig
    from jaxdqn.cli.options import parse_assignment, parse_field_value
    from jaxdqn.estimators import ESTIMATORS

    methods = []
    for item in text.split(","):
        head, *changes = item.strip().split("+")
        given, _, head = head.rpartition("=")
        if _ and not given.strip():
            raise ValueError(f"--estimators item {item!r} is invalid: LABEL= needs a label")
        name, _, n = head.partition(":")
        if name not in ESTIMATORS:
            raise ValueError(f"--estimators item {item!r} is invalid: the estimator must be one "
                             f"of {', '.join(ESTIMATORS)}, optionally ':N', then '+FIELD=VALUE's")
        fields = {"estimator": name}
        if n:
            if not n.isdigit():
                raise ValueError(f"--estimators item {item!r} is invalid: N must be an int")
            fields["ensemble_size"] = int(n)
        suffix = []
        for change in changes:
            field, value = parse_assignment(change, f"--estimators item {item!r}")
            fields[field] = parse_field_value(field, value, f"--estimators item {item!r}")
            suffix.append(f"{field}={value.strip()}")
        cfg = DQNConfig(**fields)  # one clear ValueError for a bad combination
        label = given.strip() or " ".join([ESTIMATORS[name].label(cfg.ensemble_size), *suffix])
        if label in dict(methods):
            raise ValueError(f"--estimators repeats {item!r}")
        methods.append((label, fields))
    for i, (label, _) in enumerate(methods):
        COLORS[label] = PALETTE[i % len(PALETTE)]
    return methods


def baseline_of(methods) -> str:
    """The label differences are taken against: DQN if studied, else the first estimator."""
    labels = [label for label, _ in methods]
    return "DQN" if "DQN" in labels else labels[0]




def parse_args(argv):
    from jaxdqn.cli.parser import DefaultsHelpFormatter

    p = _Parser(prog="max_bias.py", description=__doc__.split("\n")[0],
                formatter_class=DefaultsHelpFormatter)
    p.add_argument("--out", default="runs/max_bias", help="output folder (created)")
    p.add_argument("--env", choices=("both", "cartpole", "mdp"), default="both",
                   help="which study to run")
    p.add_argument("--estimators", default="dqn,double_dqn",
                   help="comma-separated methods, each [LABEL=]name[:N][+FIELD=VALUE...]: an "
                        "estimator, its ensemble_size N, config changes")
    p.add_argument("--seeds", type=positive_int, default=8, help="CartPole seeds per method")
    p.add_argument("--mdp-seeds", type=positive_int, default=64, help="MaxBiasMDP seeds per method")
    p.add_argument("--cartpole-steps", type=positive_int, default=None,
                   help="CartPole env steps (default: the config's total_timesteps)")
    p.add_argument("--cartpole-target-update-freq", type=positive_int, default=None,
                   help="CartPole target sync period in env steps (default: the config's)")
    p.add_argument("--mdp-steps", type=positive_int, default=10_000, help="MaxBiasMDP env steps")
    p.add_argument("--segments", type=positive_int, default=20,
                   help="CartPole measurements per run (must divide the metric rows)")
    p.add_argument("--mdp-segments", type=positive_int, default=50,
                   help="MaxBiasMDP measurements per run")
    p.add_argument("--eval-episodes", type=positive_int, default=16,
                   help="greedy CartPole episodes per measurement")
    p.add_argument("--mdp-eval-episodes", type=positive_int, default=1000,
                   help="MaxBiasMDP episodes per measurement")
    p.add_argument("--key", type=int, default=0, help="PRNG seed of the seed keys")
    p.add_argument("--resamples", type=positive_int, default=10_000, help="bootstrap resamples")
    return p.parse_args(argv)


def cartpole_config(args):
    import jaxdqn
    from jaxdqn import DQNConfig

    try:
        base, source = jaxdqn.preset("cartpole"), 'preset("cartpole")'
    except ValueError:
        base, source = DQNConfig(**CARTPOLE_FALLBACK), "CARTPOLE_FALLBACK in scripts/max_bias.py"
    changes = {}
    if args.cartpole_steps is not None:
        changes["total_timesteps"] = args.cartpole_steps
    if args.cartpole_target_update_freq is not None:
        changes["target_update_freq"] = args.cartpole_target_update_freq
    cfg = base.replace(**changes) if changes else base
    return with_segments(cfg, args.segments, "--segments"), source


def mdp_config(args):
    from jaxdqn import DQNConfig

    cfg = DQNConfig(total_timesteps=args.mdp_steps, **MDP_CONFIG)
    return with_segments(cfg, args.mdp_segments, "--mdp-segments")


def with_segments(cfg, segments: int, flag: str):
    """``cfg`` logging one metric row per segment, so a segment is any whole number of
    iterations."""
    per_segment, rest = divmod(cfg.num_iterations, segments)
    if per_segment == 0 or rest:
        raise ValueError(f"{flag}={segments} is invalid: must divide the run's "
                         f"{cfg.num_iterations} iterations of {cfg.steps_per_iteration} env steps")
    return cfg.replace(log_interval=per_segment * cfg.steps_per_iteration)


def run_methods(cfg, spec, segments, seeds, key, probe, methods, final_eval=False):
    """Trains every method on the same seed keys; numpy results per method. With
    ``final_eval``, each seed's final params also play ``FINAL_EVAL_EPISODES`` greedy episodes
    (the env's own time limit) on keys shared by all methods."""
    import jax
    import numpy as np

    from jaxdqn.bias import make_value_study
    from jaxdqn.evaluation import evaluate

    keys = jax.random.split(jax.random.key(key), seeds)
    eval_keys = jax.random.split(jax.random.fold_in(jax.random.key(key), 1), seeds)
    results = {}
    for method, fields in methods:
        method_cfg = cfg.replace(**fields)
        study = make_value_study(method_cfg, spec, segments,
                                 None if probe is None else probe(method_cfg))
        start = time.perf_counter()
        out = jax.block_until_ready(jax.jit(jax.vmap(study))(keys))
        seconds = time.perf_counter() - start
        results[method] = {"points": jax.tree.map(np.asarray, out.points),
                           "metrics": jax.tree.map(np.asarray, out.metrics),
                           "seconds": seconds, "config": method_cfg.to_dict()}
        if final_eval:
            returns = jax.jit(jax.vmap(lambda p, k, cfg=method_cfg: evaluate(
                cfg, p, k, FINAL_EVAL_EPISODES)))(
                out.params, eval_keys)
            results[method]["final_returns"] = np.asarray(returns)  # [seeds, episodes]
        print(f"  {cfg.env_id} {method}: {seeds} seeds x {cfg.total_timesteps} steps in "
              f"{seconds:.1f} s (compile included)", flush=True)
    return results


def ci_dict(values, resamples, seed=0):
    from jaxdqn.bias import bootstrap_ci

    mean, low, high = bootstrap_ci(values, num_resamples=resamples, seed=seed)
    return {"mean": mean, "ci95": [low, high]}


def iqm_ci(scores_by_method, resamples, seed=0):
    """Per method ``{"iqm", "ci95"}``: the interquartile mean of per-seed scores with rliable's
    95% stratified-bootstrap interval (one task, so strata are the one task's seeds), the same
    for the same ``seed``."""
    import numpy as np

    from jaxdqn.suite_report import interval_estimates, require_rliable

    try:
        _, metrics = require_rliable()
    except ImportError as e:
        raise ImportError(f"the CartPole IQM needs rliable: pip install 'jaxdqn[study]' ({e})"
                          ) from None
    scores = {m: np.asarray(v, np.float64).reshape(-1, 1) for m, v in scores_by_method.items()}
    point, interval = interval_estimates(
        scores, lambda x: np.array([metrics.aggregate_iqm(x)]), resamples, seed)
    return {m: {"iqm": float(point[m][0]), "ci95": [float(interval[m][0, 0]),
                                                    float(interval[m][1, 0])]} for m in scores}


def summarize(results, resamples, left=None, baseline="DQN"):
    """Per method: bias and values with bootstrap CIs over seeds; each method minus ``baseline``,
    paired by seed; on CartPole (``final_returns``) the final return, solve rate and IQM."""
    import numpy as np

    from jaxdqn.envs import solve_threshold

    summary, per_seed = {}, {}
    for method, res in results.items():
        stats = res["points"].value.stats
        bias, q, g = stats.bias, stats.q_mean, stats.g_mean  # [seeds, segments]
        half = bias.shape[1] // 2
        per_seed[method] = bias.mean(1)
        entry = {
            "mean_bias": ci_dict(bias.mean(1), resamples),
            "late_bias": ci_dict(bias[:, half:].mean(1), resamples),
            "final_bias": ci_dict(bias[:, -1], resamples),
            "mean_q": ci_dict(q.mean(1), resamples),
            "mean_g": ci_dict(g.mean(1), resamples),
            "final_eval_return": ci_dict(res["points"].value.eval_return[:, -1], resamples),
            "per_seed_mean_bias": bias.mean(1).tolist(),
            "per_seed_final_bias": bias[:, -1].tolist(),
            "measured_states_per_point": float(stats.num_states.mean()),
            "mean_cut_fraction": float(stats.cut_fraction.mean()),
            "max_cut_fraction": float(stats.cut_fraction.max()),
            "curves": curves(res, left=None if left is None else left[method]),
            "seconds": res["seconds"],
        }
        if left is not None:
            frac = left[method]
            probe = res["points"].probe
            entry["left_fraction"] = ci_dict(np.nanmean(frac, 1), resamples)
            entry["late_left_fraction"] = ci_dict(np.nanmean(frac[:, half:], 1), resamples)
            entry["left_probability"] = ci_dict(probe.left_prob.mean(1), resamples)
            entry["final_q_a_left"] = ci_dict(probe.q_a_left[:, -1], resamples)
            entry["final_q_b_max"] = ci_dict(probe.q_b_max[:, -1], resamples)
        summary[method] = entry
    finals = {m: r["final_returns"].mean(1) for m, r in results.items() if "final_returns" in r}
    if finals:
        iqm = iqm_ci(finals, resamples)
        for method, final in finals.items():
            summary[method]["final_return"] = ci_dict(final, resamples)
            summary[method]["per_seed_final_return"] = final.tolist()
            summary[method]["solve_rate"] = float(np.mean(final > solve_threshold("CartPole-v1")))
            summary[method]["final_return_iqm"] = iqm[method]
    for method in results:
        if method == baseline:
            continue
        diff = {"mean_bias": ci_dict(per_seed[method] - per_seed[baseline], resamples)}
        if left is not None:
            diff["left_fraction"] = ci_dict(
                np.nanmean(left[method], 1) - np.nanmean(left[baseline], 1), resamples)
        summary[f"{method} minus {baseline}"] = diff
    return summary


def curves(res, left=None):
    """Per measurement point, medians over seeds (means for the left fractions): for re-plotting."""
    import numpy as np

    p = res["points"]
    out = {"env_steps": np.median(p.env_steps, 0).tolist(),
           "episodes": np.median(p.episodes, 0).tolist(),
           "median_q": np.median(p.value.stats.q_mean, 0).tolist(),
           "median_g": np.median(p.value.stats.g_mean, 0).tolist(),
           "median_bias": np.median(p.value.stats.bias, 0).tolist(),
           "median_eval_return": np.median(p.value.eval_return, 0).tolist()}
    if left is not None:
        out["mean_left_fraction"] = np.nanmean(left, 0).tolist()
        out["mean_left_probability"] = p.probe.left_prob.mean(0).tolist()
        out["median_q_a_left"] = np.median(p.probe.q_a_left, 0).tolist()
        out["median_q_b_max"] = np.median(p.probe.q_b_max, 0).tolist()
    return out


BAND_NOTE = "lines: median over seeds, shaded: 25th-75th percentile of seeds"


def band(ax, x, y, color, style="-"):
    """Median over seeds (axis 0) with the interquartile range shaded (``BAND_NOTE``)."""
    import numpy as np

    low, mid, high = np.nanpercentile(y, [25, 50, 75], axis=0)
    ax.plot(x, mid, style, color=color, lw=1.8)
    ax.fill_between(x, low, high, color=color, alpha=0.15, lw=0)


def line_key(style: str, label: str, color: str = "0.35"):
    """A legend entry for a line style (the methods' colours have a legend of their own)."""
    from matplotlib.lines import Line2D

    return Line2D([], [], color=color, ls=style, lw=1.5, label=label)


def wrapped(text: str, width: int) -> str:
    import textwrap

    return "\n".join(textwrap.wrap(text, width)) or text


def method_legend(fig, methods, **kwargs):
    """One legend under the figure naming each method's colour: a method's options can make
    a long label, and one legend per panel would squeeze the panels to make room for it."""
    handles = [line_key("-", wrapped(m, 60), COLORS[m]) for m in methods]
    fig.legend(handles=handles, loc="outside lower center", ncol=min(len(handles), 3),
               fontsize=8, frameon=False, title_fontsize=8, **kwargs)


def value_figure(results, title, third_panel, ceiling=None):
    import matplotlib.pyplot as plt
    import numpy as np

    fig, axes = plt.subplots(1, 3, figsize=(16, 6), layout="constrained")
    for method, res in results.items():
        p = res["points"]
        x = np.median(p.env_steps, axis=0)
        c = COLORS[method]
        band(axes[0], x, p.value.stats.q_mean, c)
        band(axes[0], x, p.value.stats.g_mean, c, "--")
        band(axes[1], x, p.value.stats.bias, c)
        third_panel(axes[2], method, res, x, c)
    keys = [line_key("-", "estimate (mean Q)"), line_key("--", "true value (mean G)")]
    if ceiling is not None:
        axes[0].axhline(ceiling, color="k", ls=":", lw=1)
        keys.append(line_key(":", f"largest possible value, 1 / (1 - gamma) = {ceiling:g}", "k"))
    axes[0].set(title="Value estimates against true values", xlabel="training env steps",
                ylabel="mean over measured states")
    axes[0].legend(handles=keys, fontsize=8, loc="lower right")
    axes[1].axhline(0.0, color="k", lw=0.8)
    axes[1].set(title="Bias: mean (Q - G)", xlabel="training env steps", ylabel="Q - G")
    for ax in axes:
        ax.grid(alpha=0.3)
    method_legend(fig, results, title=BAND_NOTE)
    fig.suptitle(wrapped(title, 150))
    return fig


def left_figure(results, left, epsilon, f_left):
    import matplotlib.pyplot as plt
    import numpy as np

    fig, ax = plt.subplots(figsize=(9, 6.5), layout="constrained")
    for method, res in results.items():
        x = np.median(res["points"].episodes, axis=0)
        frac = left[method]
        mean = 100 * np.nanmean(frac, axis=0)
        se = 100 * np.nanstd(frac, axis=0, ddof=1) / math.sqrt(frac.shape[0])
        ax.plot(x, mean, color=COLORS[method], lw=1.8)
        ax.fill_between(x, mean - 1.96 * se, mean + 1.96 * se, color=COLORS[method], alpha=0.15,
                        lw=0)
        ax.plot(x, 100 * res["points"].probe.left_prob.mean(0), ":", color=COLORS[method],
                lw=1.2)
    ax.axhline(100 * epsilon * f_left, color="k", ls="--", lw=1)
    n = next(iter(left.values())).shape[0]
    ax.set(xlabel="training episodes", ylabel="% left actions from A", ylim=(0, 100),
           title=f"MaxBiasMDP: episodes that went left (mean over {n} seeds)")
    ax.grid(alpha=0.3)
    ax.legend(handles=[
        line_key("-", "realised, mean over seeds (shaded: +- 1.96 standard errors)"),
        line_key(":", "P(left) of the policy after the segment"),
        line_key("--", f"optimal: epsilon x {f_left:g} = {100 * epsilon * f_left:g}%", "k")],
        fontsize=8, loc="upper right")
    method_legend(fig, results)
    return fig


def save_figure(fig, path):
    import matplotlib.pyplot as plt

    from jaxdqn.io import atomic_savefig

    atomic_savefig(fig, path, dpi=110)
    plt.close(fig)


def fmt_ci(entry, digits=3):
    lo, hi = entry["ci95"]
    return f"{entry['mean']:+.{digits}f} [{lo:+.{digits}f}, {hi:+.{digits}f}]"


def print_table(report):
    print(f"\n{'env':<12} {'method':<24} {'mean bias Q-G [95% CI]':<30} {'mean Q':>9} "
          f"{'mean G':>9} {'left fraction':>30} {'solved':>7} {'IQM final return [95% CI]':>28}")
    for env_id, env_report in report["envs"].items():
        for method, s in env_report["summary"].items():
            if " minus " in method:
                left = fmt_ci(s["left_fraction"]) if "left_fraction" in s else ""
                print(f"{env_id:<12} {method.replace(' minus ', ' - '):<24} "
                      f"{fmt_ci(s['mean_bias']):<30} {'':>9} {'':>9} {left:>30}")
                continue
            left = fmt_ci(s["left_fraction"]) if "left_fraction" in s else ""
            solved = f"{s['solve_rate']:.0%}" if "solve_rate" in s else ""
            iqm = ""
            if "final_return_iqm" in s:
                e = s["final_return_iqm"]
                iqm = f"{e['iqm']:.1f} [{e['ci95'][0]:.1f}, {e['ci95'][1]:.1f}]"
            print(f"{env_id:<12} {method:<24} {fmt_ci(s['mean_bias']):<30} "
                  f"{s['mean_q']['mean']:>9.3f} {s['mean_g']['mean']:>9.3f} {left:>30} "
                  f"{solved:>7} {iqm:>28}")


def noisy_max_report():
    from jaxdqn.noisy_max import compounding_table, noisy_max_table

    return {"expected_max": noisy_max_table(), "compounding": compounding_table()}


def study(args):
    import numpy as np

    from jaxdqn.bias import make_max_bias_probe, realised_left_fraction, tail_bound, value_eval_spec
    from jaxdqn.envs.max_bias import left_action_fraction, true_q_values
    from jaxdqn.io import atomic_write_json

    # Everything that can be wrong with the arguments is found before the first compilation.
    methods = parse_estimators(args.estimators)
    baseline = baseline_of(methods)
    names = ", ".join(label for label, _ in methods)
    plan = []
    if args.env in ("both", "mdp"):
        cfg = mdp_config(args)
        # Every policy has the same Q in MaxBiasMDP, so G is unbiased for Q* under any evaluation
        # policy: evaluate with the behaviour epsilon so that both states are always visited.
        spec = value_eval_spec(cfg, num_episodes=args.mdp_eval_episodes, epsilon=cfg.end_epsilon)
        plan.append(("MaxBiasMDP", cfg, spec, args.mdp_segments, args.mdp_seeds, "this script"))
    if args.env in ("both", "cartpole"):
        cfg, source = cartpole_config(args)
        spec = value_eval_spec(cfg, num_episodes=args.eval_episodes, epsilon=0.0)
        iqm_ci({"check": [0.0]}, 10)  # rliable is there (else one line naming the extra)
        plan.append(("CartPole-v1", cfg, spec, args.segments, args.seeds, source))
    os.makedirs(args.out, exist_ok=True)

    report = {"command": " ".join([os.path.basename(sys.argv[0]), *sys.argv[1:]]), "envs": {}}
    for env_id, cfg, spec, segments, seeds, source in plan:
        print(f"{env_id}: training {names}, {seeds} seeds each ...", flush=True)
        probe = make_max_bias_probe if env_id == "MaxBiasMDP" else None
        results = run_methods(cfg, spec, segments, seeds, args.key, probe, methods,
                              final_eval=env_id != "MaxBiasMDP")
        env_report = {
            "config": cfg.to_dict(), "config_source": source, "seeds": seeds,
            "eval_spec": spec._asdict(), "measurements_per_run": segments,
            # Largest error of G of a measured state whose episode was cut at the horizon (None:
            # unbounded, gamma = 1); max_cut_fraction in the summary says whether any was.
            "tail_bound_per_cut_state": tail_bound(cfg.gamma, spec),
        }
        if env_id == "MaxBiasMDP":
            left = {m: np.asarray(realised_left_fraction(r["metrics"], segments))
                    for m, r in results.items()}
            env_report["summary"] = summarize(results, args.resamples, left, baseline)
            env_report["true_q"] = true_q_values(cfg.gamma)
            truth = env_report["true_q"]

            def q_panel(ax, method, res, x, c, truth=truth):
                band(ax, x, res["points"].probe.q_a_left, c)
                band(ax, x, res["points"].probe.q_b_max, c, "--")
                if method != methods[-1][0]:
                    return
                keys = [line_key("-", "max Q(A, left)"), line_key("--", "max_b Q(B, b)")]
                if math.isclose(truth["A_left"], truth["B"]):
                    ax.axhline(truth["A_left"], color="k", ls=":", lw=1.2)
                    keys.append(line_key(":", "true Q(A, left) = true Q(B, b) = "
                                              f"{truth['B']:g}", "k"))
                else:
                    ax.axhline(truth["A_left"], color="k", ls=":", lw=1.2)
                    ax.axhline(truth["B"], color="k", ls="-.", lw=1.2)
                    keys += [line_key(":", f"true Q(A, left) = {truth['A_left']:g}", "k"),
                             line_key("-.", f"true Q(B, b) = {truth['B']:g}", "k")]
                ax.legend(handles=keys, fontsize=8, loc="upper right")
                ax.set(title="Q of A's left actions and B's best action\n"
                             "against their exact values (black)", xlabel="training env steps")

            save_figure(value_figure(results, f"MaxBiasMDP: {names}, {seeds} seeds",
                                     q_panel), os.path.join(args.out, "max_bias_mdp.png"))
            f_left = left_action_fraction(_mdp_actions())
            save_figure(left_figure(results, left, cfg.end_epsilon, f_left),
                        os.path.join(args.out, "max_bias_mdp_left.png"))
        else:
            env_report["summary"] = summarize(results, args.resamples, baseline=baseline)

            def return_panel(ax, method, res, x, c, spec=spec):
                band(ax, x, res["points"].value.eval_return, c)
                ax.set(title=f"Greedy return of the measured episodes (limit {spec.horizon})",
                       xlabel="training env steps", ylabel="return")

            title = f"CartPole-v1: {names}, {seeds} seeds"
            ceiling = 1.0 / (1.0 - cfg.gamma) if cfg.gamma < 1 else None  # rewards are 1 a step
            save_figure(value_figure(results, title, return_panel, ceiling),
                        os.path.join(args.out, "max_bias_cartpole.png"))
        report["envs"][env_id] = env_report
    report["noisy_max"] = noisy_max_report()
    atomic_write_json(os.path.join(args.out, "bias.json"), report)
    atomic_write_json(os.path.join(args.out, "noisy_max.json"), report["noisy_max"])
    print_table(report)
    print(f"\nwrote {args.out}/bias.json, noisy_max.json and the figures")


def _mdp_actions() -> int:
    from jaxdqn.envs import env_spec_of

    return env_spec_of("MaxBiasMDP").num_actions


def main(argv=None) -> int:
    fast_cpu_compile()
    try:
        args = parse_args(sys.argv[1:] if argv is None else argv)
        study(args)
    except (CliError, ValueError, OSError, ImportError) as e:
        print(f"max_bias.py: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
