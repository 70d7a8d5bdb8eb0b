"""Figures: a run's learning curves across seeds, and a sweep's ranking of combinations.

Figures are built outside pyplot and rendered by matplotlib's Agg backend straight to PNG, so
plotting works on headless machines, never opens a window and leaves the caller's backend alone.
Curves show the median over seeds with the interquartile range shaded and each seed as a thin
line: the spread between seeds is the first thing to look at in RL results.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence

import numpy as np

from jaxdqn.io import atomic_savefig
from jaxdqn.train import TrainMetrics


def _figure(**kwargs):
    """A figure outside pyplot: rendered by Agg on save, touching no global backend state."""
    from matplotlib.figure import Figure

    return Figure(layout="constrained", **kwargs)


def _quantiles(values: np.ndarray, qs=(25, 50, 75)) -> np.ndarray:
    """Quantiles over axis 0 ignoring NaN (rows with no finished episode or no update)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns give NaN, as wanted
        return np.nanpercentile(values, qs, axis=0)


def _band(ax, x, values, color, label, show_seeds=False, ls="-") -> list[tuple]:
    """Draws the median over seeds, the 25th-75th percentile band and optionally each seed;
    returns their legend entries ``(handle, text)``, the band's entry saying what it spans."""
    values = np.asarray(values, np.float64).reshape(-1, np.shape(values)[-1])
    entries = []
    if show_seeds and values.shape[0] > 1:
        for seed_values in values:
            seed_line, = ax.plot(x, seed_values, color=color, alpha=0.35, lw=0.8)
        entries.append((seed_line, f"{label}: each seed"))
    lo, mid, hi = _quantiles(values)
    median, = ax.plot(x, mid, color=color, lw=2, ls=ls)
    if values.shape[0] > 1:
        band = ax.fill_between(x, lo, hi, color=color, alpha=0.25, lw=0)
        entries.append(((band, median), f"{label}: median over seeds, shaded 25th-75th percentile"))
    else:
        entries.append((median, label))
    return entries


def _legend_below(ax, entries, ncols=1) -> None:
    """The legend under the axes, where it hides no data."""
    from matplotlib.legend_handler import HandlerTuple

    handles, texts = zip(*entries)
    ax.legend(handles, texts, fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.16),
              ncols=ncols, handler_map={tuple: HandlerTuple(ndivide=1)},
              frameon=False)


def _plain_log_axis(ax) -> None:
    """Log y axis labelled with plain numbers ("0.05", "2", not "5x10^-2") on every decade, and
    on enough ticks between decades that a curve spanning less than three decades crosses labels:
    at 2 and 5 when the axis spans up to three decades, at every minor tick within one."""
    from matplotlib.ticker import FuncFormatter, LogLocator

    ax.set_yscale("log")
    ax.yaxis.set_major_locator(LogLocator(base=10))
    ax.yaxis.set_minor_locator(LogLocator(base=10, subs=np.arange(2, 10)))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))

    def minor(v, _):
        lo, hi = ax.get_ylim()
        decades = np.log10(hi / lo)
        mantissa = round(v / 10 ** np.floor(np.log10(v) + 1e-9))
        return f"{v:g}" if decades < 1 or (decades <= 3 and mantissa in (2, 5)) else ""

    ax.yaxis.set_minor_formatter(FuncFormatter(minor))


def _steps_axis(ax):
    from matplotlib.ticker import EngFormatter

    ax.xaxis.set_major_formatter(EngFormatter(sep=""))
    ax.set_xlabel("environment steps")
    ax.grid(alpha=0.3)


def _evaluated_rows(metrics: TrainMetrics) -> np.ndarray:
    """``bool[num_rows]``: rows that end with an evaluation during training (any seed)."""
    values = np.asarray(getattr(metrics, "eval_return", np.full(np.shape(metrics.env_steps),
                                                                 np.nan)), np.float64)
    return np.isfinite(values.reshape(-1, values.shape[-1])).any(axis=0)


# Envs that pay exactly 1 per step until they terminate, and whose time limit does not cut
# bootstrapping: no state is worth more than 1 / (1 - gamma), and a policy that never fails is worth
# exactly that.
_ONE_PER_STEP_ENVS = ("CartPole-v1",)


def value_ceiling(env_id: str, gamma: float) -> float | None:
    """``1 / (1 - gamma)`` for an env that pays 1 per step (the most any state is worth, and what a
    never-failing policy is worth); None for other envs or ``gamma == 1``."""
    if env_id not in _ONE_PER_STEP_ENVS or gamma >= 1.0:
        return None
    return 1.0 / (1.0 - gamma)


def _exact_q_label(env_id: str, gamma: float) -> tuple[list[float], str] | None:
    """A probe's exact Q-values (``expected_q``): the distinct values over its states and legal
    actions, and a legend text listing them per state; None for an env that is not a probe."""
    from jaxdqn.envs import PROBES, expected_q

    if env_id not in PROBES:
        return None
    table = expected_q(env_id, gamma)
    values = sorted({q for qs in table.values() for q in qs if np.isfinite(q)})

    def show(qs):
        cells = ["illegal" if np.isnan(q) else f"{q:g}" for q in qs]
        return cells[0] if len(cells) == 1 else "(" + ", ".join(cells) + ")"

    states = ", ".join(f"Q([{obs[0]:g}]) = {show(qs)}" for obs, qs in table.items())
    note = " (a batch mixes these states)" if len(table) > 1 else ""
    return values, f"exact: {states}{note}"


def plot_learning_curves(metrics: TrainMetrics, path: str | os.PathLike, title: str,
                         solve_threshold: float | None = None, env_id: str | None = None,
                         gamma: float | None = None) -> None:
    """Writes a 2x2 PNG: episode return (and greedy evaluation return, on the rows that evaluated
    during training), TD loss, Q-values and epsilon against env steps.

    ``metrics`` holds numpy arrays ``[num_seeds, num_rows]``. With ``env_id`` and ``gamma`` the Q
    panel marks the values Q should reach: ``value_ceiling`` (Q-values above it are
    over-estimates) and, on a probe, its exact Q-values.
    """
    x = np.asarray(metrics.env_steps)[0]
    num_seeds = np.shape(metrics.env_steps)[0]
    fig = _figure(figsize=(12, 10))
    axes = fig.subplots(2, 2)
    ax = axes[0, 0]
    entries = _band(ax, x, metrics.episode_return, "C0", "training return", show_seeds=True)
    evaluated = _evaluated_rows(metrics)
    if evaluated.any():
        entries += _band(ax, x[evaluated], np.asarray(metrics.eval_return)[..., evaluated], "C5",
                         "greedy eval return")
        ax.plot(x[evaluated], np.nanmedian(np.asarray(metrics.eval_return, np.float64)
                                           .reshape(-1, x.size)[:, evaluated], axis=0),
                ls="none", marker="o", ms=4, color="C5")
    if solve_threshold is not None:
        entries.append((ax.axhline(solve_threshold, color="k", ls="--", lw=1),
                        f"solved threshold ({solve_threshold:g})"))
    ax.set_title("Episode return: training (epsilon-greedy)"
                 + (" and greedy evaluation" if evaluated.any() else ""))
    ax.set_ylabel("return per episode")
    _legend_below(ax, entries)

    ax = axes[0, 1]
    entries = _band(ax, x, metrics.td_loss, "C3", "TD loss")
    loss = np.asarray(metrics.td_loss)
    if np.isfinite(loss).any() and np.nanmin(loss) > 0:
        _plain_log_axis(ax)
    ax.set_title("TD loss (mean over the gradient steps of each interval)")
    ax.set_ylabel("loss")
    _legend_below(ax, entries)

    ax = axes[1, 0]
    q_max, q_taken = np.asarray(metrics.q_max), np.asarray(metrics.q_taken)
    if np.array_equal(q_max, q_taken, equal_nan=True):  # one action, or one the policy takes
        entries = _band(ax, x, q_max, "C2", "max_a Q(s, a) = Q(s, a) of the stored action")
    else:  # dashed over solid: both stay visible where they meet
        entries = (_band(ax, x, q_max, "C2", "max_a Q(s, a)")
                   + _band(ax, x, q_taken, "C1", "Q(s, a) of the stored action", ls="--"))
    value_line = None if env_id is None else value_ceiling(env_id, gamma)
    if value_line is not None:
        entries.append((ax.axhline(value_line, color="k", ls="--", lw=1),
                        f"1/(1-gamma) = {value_line:g}: value of never failing"))
    exact = None if env_id is None else _exact_q_label(env_id, gamma)
    if exact is not None:
        values, text = exact
        for value in values:
            line = ax.axhline(value, color="k", ls=":", lw=1.2)
        entries.append((line, text))
    ax.set_title("Q-value, mean over each replayed batch")
    ax.set_ylabel("Q-value")
    _legend_below(ax, entries)

    ax = axes[1, 1]
    ax.plot(x, np.asarray(metrics.epsilon)[0], color="C4", lw=2)
    ax.set_ylim(-0.02, 1.02)
    ax.set_title("Exploration rate (epsilon of epsilon-greedy)")
    ax.set_ylabel("epsilon")

    for ax in axes.flat:
        _steps_axis(ax)
    fig.suptitle(f"{title}  ({num_seeds} seed{'s' if num_seeds != 1 else ''})", fontsize=13)
    atomic_savefig(fig, path, dpi=110)


def plot_sweep(curves: Sequence[tuple[str, np.ndarray, np.ndarray]],
               finals: Sequence[tuple[str, np.ndarray]], path: str | os.PathLike, title: str,
               label_title: str, solve_threshold: float | None = None,
               max_curves: int = 8) -> None:
    """Writes a PNG of a sweep: learning curves of the best combinations, and every combination's
    final greedy return per seed.

    ``curves``: ``(label, env_steps[num_rows], episode_return[num_seeds, num_rows])`` and
    ``finals``: ``(label, final_return[num_seeds])``, both in rank order (best first); labels
    hold a combination's values, ``label_title`` names the fields (``"learning_rate, gamma"``).
    """
    n = len(finals)
    fig = _figure(figsize=(14, max(5.5, 1.5 + 0.3 * n)))
    left, right = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1.3, 1.0]})
    window = 1
    for i, (label, x, returns) in enumerate(curves[:max_curves]):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            median = np.nanmedian(np.asarray(returns, np.float64), axis=0)
        window = max(1, len(median) // 20)
        left.plot(x, _moving_average(median, window), color=f"C{i % 10}", lw=1.8,
                  label=f"#{i + 1}  {label}")
    if solve_threshold is not None:
        left.axhline(solve_threshold, color="k", ls="--", lw=1,
                     label=f"solved threshold ({solve_threshold:g})")
    shown = min(len(curves), max_curves)
    smooth = f", moving average of {window} rows" if window > 1 else ""
    left.set_title(f"Training episode return: median over seeds{smooth}\n"
                   f"(best {shown} of {n} combinations)")
    left.set_ylabel("return per episode")
    _steps_axis(left)
    left.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.12), ncols=2,
                frameon=False, title=label_title, title_fontsize=8)

    ys = np.arange(n)[::-1]  # rank 1 at the top
    for y, (_, values) in zip(ys, finals):
        values = np.asarray(values, np.float64)
        jitter = np.linspace(-0.15, 0.15, len(values)) if len(values) > 1 else np.zeros(1)
        dots = right.scatter(values, y + jitter, s=14, color="C0", alpha=0.6, lw=0)
        mean = right.errorbar(values.mean(), y, xerr=values.std(), fmt="D", color="k", ms=5,
                              capsize=3)
    entries = [(dots, "each seed (spread up and down within its row, so that none hides "
                      "another)"),
               (mean, "mean over seeds, bar +- standard deviation")]
    right.set_yticks(ys, [f"#{i + 1}  {label}" for i, (label, _) in enumerate(finals)],
                     fontsize=8)
    right.set_ylabel(label_title)
    right.set_ylim(-0.7, n - 0.3)
    if solve_threshold is not None:
        entries.append((right.axvline(solve_threshold, color="k", ls="--", lw=1),
                        f"solved threshold ({solve_threshold:g})"))
    right.set_title("Final greedy return per combination")
    right.set_xlabel("mean return over the evaluation episodes")
    right.legend(*zip(*entries), fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.12),
                 frameon=False)
    right.grid(alpha=0.3, axis="x")
    fig.suptitle(title, fontsize=13)
    atomic_savefig(fig, path, dpi=110)


def _moving_average(values: np.ndarray, window: int) -> np.ndarray:
    """Trailing mean over ``window`` rows, ignoring NaN (rows without a finished episode)."""
    if window <= 1:
        return values
    ok = np.isfinite(values)
    sums = np.convolve(np.where(ok, values, 0.0), np.ones(window))[: len(values)]
    counts = np.convolve(ok.astype(float), np.ones(window))[: len(values)]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, sums / counts, np.nan)
