"""Learning curves of jaxdqn runs on MinAtar games beside the MinAtar paper's DQN.

    python scripts/minatar_curves.py RUNS [RUNS ...] --out docs/minatar_curves.png
    python scripts/minatar_curves.py runs/B-fast runs/B-paper runs/SI-fast runs/SI-paper \\
        --out docs/minatar_curves.png
    python scripts/minatar_curves.py runs/B-5M-s0,runs/B-5M-s1,runs/B-5M-s2 --out b5m.png

Each RUNS is a `jaxdqn train` folder (its metrics, summary and config), or several joined
by commas whose seeds are pooled into one curve (runs of one config started with other --seed).
Runs of the same game share a panel. A curve is the mean over seeds of each metric row's mean
training return (epsilon-greedy, the run's schedule), with the range over seeds shaded; it is
labelled by how often the run updates (``train_frequency``: 1 is ``preset("minatar")``, 4 is
``preset("minatar-fast")``), the ``VARIANT_FIELDS`` it changes (``n_step=3``, ...) and whether it
trained without sticky actions. The paper's points are read by eye off the DQN curves of
img/learning_curves.gif in github.com/kenjyoung/MinAtar (30 runs, moving average of training
returns over 100 episodes, sticky actions 0.1, full 6-action set, one update per frame, RMSProp):
approximate to about +-1 (Breakout) and +-3 (Space Invaders).

Printed per curve: the mean training return in the windows (0.45M, 0.5M], (0.9M, 1M] of env
steps (with ``--x updates``: the last 10% up to 0.245M, 0.5M and 0.99M updates) and, for longer
runs, the last 10% of the run, per seed and averaged; and the final greedy evaluation.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from jaxdqn import run_folder

# The fields a curve's label names when a run sets them (the MinAtar presets leave them at these).
VARIANT_FIELDS = {"estimator": "dqn", "n_step": 1, "prioritized": False, "dueling": False}
# env_id -> [(million frames, approximate DQN return)] read off the README figure.
PAPER_DQN = {
    "Breakout-MinAtar": [(0.5, 8.5), (1.0, 9.5), (5.0, 10.0)],
    "SpaceInvaders-MinAtar": [(0.5, 30.0), (1.0, 35.0), (5.0, 43.0)],
    "Asterix-MinAtar": [(0.5, 1.0), (1.0, 8.0), (5.0, 17.0)],
    "Freeway-MinAtar": [(0.5, 35.0), (1.0, 48.0), (5.0, 50.0)],
    "Seaquest-MinAtar": [(0.5, 0.7), (1.0, 1.0), (5.0, 20.0)],
}


def load_curve(spec: str) -> dict:
    """One curve from comma-joined run folders: their seeds stacked, their configs equal."""
    folders = [Path(p) for p in spec.split(",")]
    returns, greedy, configs = [], [], []
    for run in folders:
        with np.load(run / run_folder.METRICS_NPZ) as m:
            returns.append(m["episode_return"])
            steps, updates = m["env_steps"][0], m["updates"][0]
        config = json.loads((run / run_folder.CONFIG).read_text())["config"]
        configs.append(config)
        ev = json.loads((run / run_folder.SUMMARY).read_text()).get("evaluation") or {}
        greedy += [row["mean"] for row in ev.get("per_seed", [])]
    if any(c != configs[0] for c in configs[1:]):
        raise SystemExit(f"{spec}: the runs' configs differ; pool only runs of one config")
    config = configs[0]
    every = config["train_frequency"]
    label = (f"jaxdqn, an update every {f'{every} steps' if every > 1 else 'step'}"
             f"{' (minatar-fast)' if every == 4 else ' (minatar)' if every == 1 else ''}")
    variant = [f"{name}={config[name]}" for name, default in VARIANT_FIELDS.items()
               if name in config and config[name] != default]
    if variant:
        label += ", " + ", ".join(variant)
    if config.get("sticky_action_prob", 0.0) == 0.0:
        label += ", no sticky actions"
    return {"spec": spec, "env_id": config["env_id"], "steps": steps, "updates": updates,
            "returns": np.concatenate(returns), "greedy": greedy, "label": label}


def window_mean(curve: dict, end: float, width: float, axis: str = "steps") -> np.ndarray:
    """Per seed, the mean of the metric rows with ``axis`` (env steps or updates) in
    (end - width, end]."""
    x = curve[axis]
    rows = (x > end - width) & (x <= end)
    return np.nanmean(curve["returns"][:, rows], axis=1) if rows.any() else np.full(
        curve["returns"].shape[0], np.nan)


def main() -> None:
    from jaxdqn.cli.parser import DefaultsHelpFormatter

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=DefaultsHelpFormatter)
    p.add_argument("runs", nargs="+", help="run folder(s); comma-join folders to pool their seeds")
    p.add_argument("--out", default="minatar_curves.png", help="the figure's PNG file")
    p.add_argument("--x", choices=("env_steps", "updates"), default="env_steps",
                   help="the figure's x axis: env steps, or gradient steps, which compares runs "
                        "of equal compute (the paper's points are then left out)")
    args = p.parse_args()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    axis = "steps" if args.x == "env_steps" else "updates"
    curves = [load_curve(spec) for spec in args.runs]
    games = list(dict.fromkeys(c["env_id"] for c in curves))
    fig, axes = plt.subplots(1, len(games), figsize=(5.5 * len(games), 3.8), squeeze=False)
    for ax, env_id in zip(axes[0], games):
        longest = 0.0
        for i, c in enumerate(c for c in curves if c["env_id"] == env_id):
            x, r = c[axis] / 1e6, c["returns"]
            longest = max(longest, x[-1])
            ax.plot(x, np.nanmean(r, axis=0), color=f"C{i}",
                    label=f"{c['label']}, {c['steps'][-1] / 1e6:g}M steps, {r.shape[0]} "
                          f"seed{'s' * (r.shape[0] > 1)}")
            ax.fill_between(x, np.nanmin(r, axis=0), np.nanmax(r, axis=0), color=f"C{i}",
                            alpha=0.15)
            total = c[axis][-1]
            report = [f"{c['spec']}: {env_id}, {c['label']}, {r.shape[0]} seed"
                      f"{'s' * (r.shape[0] > 1)}, "
                      f"{c['steps'][-1] / 1e6:g}M env steps, {c['updates'][-1] / 1e6:.3g}M "
                      f"updates; training return by {args.x.replace('_', ' ')}"]
            marks = (0.5e6, 1e6) if axis == "steps" else (0.245e6, 0.5e6, 0.99e6)
            ends = [e for e in marks if e <= total]
            windows = [(e, 0.1 * e) for e in ends] + ([(total, 0.1 * total)] if total > 1e6 else [])
            for end, width in windows:
                per_seed = window_mean(c, end, width, axis)
                report.append(f"  ({(end - width) / 1e6:g}M, {end / 1e6:g}M]: mean "
                              f"{np.nanmean(per_seed):.2f} per seed "
                              f"{[round(float(v), 2) for v in per_seed]}")
            if c["greedy"]:
                report.append(f"  greedy (gymnax, 100 episodes a seed): mean "
                              f"{np.mean(c['greedy']):.2f} per seed {c['greedy']}")
            print("\n".join(report))
        if axis == "steps":
            px, py = zip(*[(m, v) for m, v in PAPER_DQN[env_id] if m <= max(1.0, longest)])
            ax.plot(px, py, "ks--",
                    label="MinAtar paper's DQN, an update every step (read off its figure)")
        ax.set_title(env_id)
        ax.set_xlabel(f"{args.x.replace('_', ' ').replace('updates', 'gradient steps')} (millions)")
        ax.set_ylabel("training return (epsilon-greedy)")
        ax.set_xlim(0, max(1.0, longest))
        ax.legend(fontsize=7, title="runs: mean over seeds, shaded: min-max over seeds",
                  title_fontsize=7)
    fig.tight_layout()
    fig.savefig(args.out, dpi=110)
    print("wrote", args.out)


if __name__ == "__main__":
    main()
