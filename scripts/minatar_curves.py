"""Learning curves of jaxdqn runs on MinAtar games beside the MinAtar paper's DQN.

    python scripts/minatar_curves.py RUN_DIR [RUN_DIR ...] --out docs/minatar_curves.png

Each RUN_DIR is a `jaxdqn train` folder (metrics.npz, summary.json). The curve is the mean over
seeds of each metric row's mean training return (epsilon-greedy, the run's schedule), with the
range over seeds shaded. The paper's points are read by eye off the DQN curves of
img/learning_curves.gif in github.com/kenjyoung/MinAtar (30 runs, moving average of training
returns over 100 episodes, sticky actions 0.1, full 6-action set, one update per frame, RMSProp):
approximate to about +-1 (Breakout) and +-3 (Space Invaders).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

# env_id -> [(million frames, approximate DQN return)] read off the README figure.
PAPER_DQN = {
    "Breakout-MinAtar": [(0.5, 8.5), (1.0, 9.5), (5.0, 10.0)],
    "SpaceInvaders-MinAtar": [(0.5, 30.0), (1.0, 35.0), (5.0, 43.0)],
    "Asterix-MinAtar": [(0.5, 1.0), (1.0, 8.0), (5.0, 17.0)],
    "Freeway-MinAtar": [(0.5, 35.0), (1.0, 48.0), (5.0, 50.0)],
    "Seaquest-MinAtar": [(0.5, 0.7), (1.0, 1.0), (5.0, 20.0)],
}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+")
    p.add_argument("--out", default="minatar_curves.png")
    args = p.parse_args()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(args.runs), figsize=(5 * len(args.runs), 3.6), squeeze=False)
    for ax, run in zip(axes[0], args.runs):
        run = Path(run)
        m = np.load(run / "metrics.npz")
        summary = json.loads((run / "summary.json").read_text())
        env_id = summary["env_id"]
        x = m["env_steps"][0] / 1e6
        r = m["episode_return"]
        ax.plot(x, np.nanmean(r, axis=0), label=f"jaxdqn minatar-fast ({r.shape[0]} seeds)")
        ax.fill_between(x, np.nanmin(r, axis=0), np.nanmax(r, axis=0), alpha=0.2)
        px, py = zip(*PAPER_DQN[env_id])
        ax.plot(px, py, "ks--", label="MinAtar paper DQN (read off its figure)")
        ev = summary.get("evaluation", {})
        if ev:
            ax.axhline(ev["mean_over_seeds"], color="C2", ls=":",
                       label=f"jaxdqn greedy, {ev['num_episodes']} episodes x seeds")
        ax.set_title(env_id)
        ax.set_xlabel("env steps (millions)")
        ax.set_ylabel("training return")
        ax.set_xlim(0, max(1.0, x[-1]))
        ax.legend(fontsize=7)
        last = np.nanmean(r[:, -10:], axis=1)
        print(f"{env_id}: mean training return over the last 10% of rows per seed "
              f"{np.round(last, 2).tolist()}, mean {last.mean():.2f}; at 0.5M "
              f"{np.nanmean(r[:, len(x) // 2 - 1]):.2f}; greedy "
              f"{ev.get('mean_over_seeds')}")
    fig.tight_layout()
    fig.savefig(args.out, dpi=110)
    print("wrote", args.out)


if __name__ == "__main__":
    main()
