"""What the commands print and summarise: evaluation rows and tables, latest returns."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def method_name(config) -> str:
    """The method's name for titles and messages: the estimator's label, e.g. "Double DQN",
    "Maxmin N=3", then the components that are on, e.g. "Double DQN with n-step 3, prioritized
    replay, C51, dueling, noisy nets" (Rainbow's six)."""
    from jaxdqn.estimators import ESTIMATORS

    name = ESTIMATORS[config.estimator].label(config.ensemble_size)
    parts = [f"n-step {config.n_step}" if config.n_step > 1 else "",
             "prioritized replay" if config.prioritized else "",
             {"c51": "C51", "qr": "QR-DQN"}.get(config.distributional, ""),
             "dueling" if config.dueling else "", "noisy nets" if config.noisy else ""]
    parts = [p for p in parts if p]
    return f"{name} with {', '.join(parts)}" if parts else name


def eval_rows(returns, threshold: float | None) -> list[dict[str, Any]]:
    """Per-seed statistics of ``returns: [num_seeds, num_episodes]``."""
    import numpy as np

    rows = []
    for i, r in enumerate(np.asarray(returns, np.float64)):
        rows.append({"seed_index": i, "mean": float(r.mean()), "std": float(r.std()),
                     "min": float(r.min()), "max": float(r.max()),
                     "solved": None if threshold is None else bool(r.mean() > threshold)})
    return rows


def eval_summary(rows: list[dict[str, Any]], threshold, num_episodes: int, seed: int) -> dict:
    import numpy as np

    solved = [r["solved"] for r in rows]
    return {
        "num_episodes": num_episodes,
        "seed": seed,
        "keys": f"jaxdqn.runs.evaluation_keys({seed}, num_seeds)",
        "solve_threshold": threshold,
        "mean_over_seeds": float(np.mean([r["mean"] for r in rows])),
        "solved_seeds": None if threshold is None else int(sum(solved)),
        "per_seed": rows,
    }


def format_eval_table(rows, threshold, extra: dict[str, list[float]] | None = None,
                      mean_label: str = "mean return", policy: str = "greedy",
                      diverged: list[bool] | None = None) -> str:
    """The per-seed evaluation table; a ``diverged`` column when any seed diverged."""
    extra = extra or {}
    flag = diverged is not None and any(diverged)
    head = ["seed", mean_label, "std", "min", "max", *extra, "solved", *(["diverged"] * flag)]
    lines = []
    for i, r in enumerate(rows):
        solved = "-" if r["solved"] is None else ("yes" if r["solved"] else "no")
        lines.append([str(r["seed_index"]), f"{r['mean']:.2f}", f"{r['std']:.2f}",
                      f"{r['min']:.1f}", f"{r['max']:.1f}",
                      *(f"{v[i]:.2f}" for v in extra.values()), solved,
                      *((["yes" if diverged[i] else "no"]) if flag else [])])
    means = [r["mean"] for r in rows]
    solved = [r["solved"] for r in rows]
    total = "-" if threshold is None else f"{sum(solved)}/{len(rows)}"
    lines.append(["all", f"{sum(means) / len(means):.2f}", "", "", "",
                  *(f"{sum(v) / len(v):.2f}" for v in extra.values()), total,
                  *([f"{sum(diverged)}/{len(rows)}"] if flag else [])])
    solved = "" if threshold is None else f" (solved: mean > {threshold:g})"
    title = f"{policy} evaluation{solved}"
    return title + "\n" + table(head, lines)


def format_final_vs_best(final_rows, best_rows, best_info: dict, threshold,
                         num_episodes: int) -> str:
    """Final and best-kept params of each seed on the same fresh episodes, beside the score that
    selected the best params during training (biased upwards: a maximum over evaluations)."""
    def solved(r):
        return "-" if r["solved"] is None else ("yes" if r["solved"] else "no")

    head = ["seed", "final mean", "solved", "best mean", "solved", "best at step",
            "best's score in training"]
    lines = []
    for f, b, score, step in zip(final_rows, best_rows, best_info["eval_return"],
                                 best_info["env_steps"]):
        lines.append([str(f["seed_index"]), f"{f['mean']:.2f}", solved(f), f"{b['mean']:.2f}",
                      solved(b), str(step), f"{score:.2f}"])
    n = len(final_rows)

    def count(rows):
        return "-" if threshold is None else f"{sum(r['solved'] for r in rows)}/{n}"

    def mean(values):
        return f"{sum(values) / n:.2f}"

    lines.append(["all", mean([r["mean"] for r in final_rows]), count(final_rows),
                  mean([r["mean"] for r in best_rows]), count(best_rows), "",
                  mean(best_info["eval_return"])])
    title = (f"final vs best params (best: kept at the best of the evaluations during training), "
             f"both on the same {num_episodes} fresh greedy episodes per seed; the score that "
             f"picked the best params overstates them")
    return title + "\n" + table(head, lines)


def first_nonfinite_rows(metrics) -> list[tuple[int, int] | None]:
    """Per run, ``(row, bits)`` of the first metric row whose ``nonfinite`` bits are set
    (``jaxdqn.train.NONFINITE_LOSS``/``NONFINITE_PARAMS``), None for a run that stayed finite;
    ``metrics.nonfinite: [num_runs, num_rows]`` (NaN, in runs stored before the column, reads 0)."""
    import numpy as np

    bits = np.nan_to_num(np.asarray(metrics.nonfinite, np.float64), nan=0.0).astype(np.int64)
    out = []
    for run in bits.reshape(-1, bits.shape[-1]):
        rows = np.flatnonzero(run)
        out.append(None if rows.size == 0 else (int(rows[0]), int(run[rows[0]])))
    return out


def nonfinite_line(run: int, row: int, bits: int, env_steps: int) -> str:
    """``"run 3 diverged: non-finite weights at row 12 (env step 48000)"``: what ``bits`` says
    became non-finite first, and where."""
    from jaxdqn.train import NONFINITE_LOSS, NONFINITE_PARAMS

    what = " and ".join(name for bit, name in ((NONFINITE_PARAMS, "weights"),
                                               (NONFINITE_LOSS, "TD loss")) if bits & bit)
    return f"run {run} diverged: non-finite {what} at row {row} (env step {env_steps})"


def table(head: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Right-aligned columns under a rule; the last row (a total) gets a rule above it too."""
    widths = [max(len(str(c)) for c in col) for col in zip(head, *rows)]
    fmt = lambda row: "  ".join(str(c).rjust(w) for c, w in zip(row, widths))  # noqa: E731
    rule = "  ".join("-" * w for w in widths)
    return "\n".join([fmt(head), rule, *(fmt(r) for r in rows[:-1]), rule, fmt(rows[-1])]) \
        if len(rows) > 1 else "\n".join([fmt(head), rule, *(fmt(r) for r in rows)])


def plain_table(head: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Left-aligned columns under a rule (for text columns: names, descriptions)."""
    widths = [max(len(str(c)) for c in col) for col in zip(head, *rows)]
    fmt = lambda row: "  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip()  # noqa: E731
    return "\n".join([fmt(head), fmt(["-" * w for w in widths]), *(fmt(r) for r in rows)])


def latest_returns(metrics) -> Any:
    """Each run's return in the last metric row (of ``metrics``) that finished an episode."""
    import numpy as np

    r = np.asarray(metrics.episode_return, np.float64)
    r = r.reshape(-1, r.shape[-1])
    out = np.full(r.shape[0], np.nan)
    for i, row in enumerate(r):
        finite = np.flatnonzero(np.isfinite(row))
        if finite.size:
            out[i] = row[finite[-1]]
    return out


def show(v) -> str:
    """A grid value for labels: tuples as lists, floats in ``%g``."""
    if isinstance(v, tuple):
        return str(list(v))
    return f"{v:g}" if isinstance(v, float) else str(v)


def csv_value(v):
    return str(list(v)) if isinstance(v, tuple) else v
