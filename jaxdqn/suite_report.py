"""A suite's report: each run's score, normalised per game, aggregated across games with
stratified-bootstrap intervals (rliable; Agarwal et al. 2021), as a table and figures.

The score of a run is its mean greedy return over the ``episodes`` episodes played after training
(``summary.json``'s ``evaluation``: gymnax, the env as trained, so with the config's sticky
actions; fresh keys, ``jaxdqn.runs.evaluation_keys``). Scores ``f64[runs, games]`` of each
variant are normalised per game, ``(score - low) / (high - low)``:

    baseline   low 0, high the baseline variant's mean score on the game (1: the baseline's level)
    reference  low and high from a JSON file: {"Breakout-MinAtar": {"random": 0.5,
               "reference": 10.0}, ...} (1: the reference's level, 0: the random policy's)

Aggregates over every run of every game (``aggregate``), each with a 95% stratified-bootstrap
interval (runs resampled within each game): the median of the games' mean scores, the IQM (mean
of the middle 50% of all runs), the mean, the optimality gap (mean shortfall below 1, scores
clipped at 1), the probability of improvement ``P(X > baseline)`` (per game the chance that a run
of X outscores one of the baseline, ties counted half, averaged over games) and the performance
profile (fraction of runs above each normalised score tau). rliable 1.2 draws its resamples from
numpy's global generator (it ignores ``random_state``), so ``interval_estimates`` seeds that
generator and restores it afterwards.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from jaxdqn import run_folder
from jaxdqn.io import atomic_savefig, atomic_write, atomic_write_json
from jaxdqn.suite import Cell, cell_state

METRICS = ("median", "IQM", "mean", "optimality gap")
"""The aggregates of ``aggregate``, in the order of its arrays."""
STUDY_EXTRA = 'pip install "jaxdqn[study]"'


class CellResult(NamedTuple):
    """What a finished cell's run folder says about its runs."""

    game: str
    variant: str
    scores: np.ndarray  # f64[seeds]: each run's mean greedy return after training
    env_steps: np.ndarray  # i64[rows]: env steps at the end of each metric row
    returns: np.ndarray  # f64[seeds, rows]: mean training episode return of each row (NaN: none)
    eval_returns: np.ndarray | None  # f64[seeds, rows]: evaluation during training (NaN: none);
    # None without eval_interval
    episodes: int  # greedy episodes behind each score


class Normalisation(NamedTuple):
    """``(score - low[game]) / (high[game] - low[game])``; ``kind`` is "baseline" or
    "reference"; ``source`` says where the numbers come from."""

    kind: str
    low: dict[str, float]
    high: dict[str, float]
    source: str

    def apply(self, raw: Mapping[str, np.ndarray], games: Sequence[str]) -> dict[str, np.ndarray]:
        """``raw[variant]: f64[runs, games]`` normalised game by game."""
        low = np.array([self.low[g] for g in games])
        high = np.array([self.high[g] for g in games])
        return {v: (np.asarray(s, np.float64) - low) / (high - low) for v, s in raw.items()}


class Aggregates(NamedTuple):
    """Each variant's ``METRICS`` (``point[v]: f64[4]``, ``interval[v]: f64[2, 4]`` low/high), its
    probability of improvement over the baseline (``improvement[v]: f64[]``, ``improvement_ci[v]:
    f64[2]``; the baseline has none) and its performance profile over ``taus``
    (``profile[v]: f64[T]``, ``profile_ci[v]: f64[2, T]``)."""

    point: dict[str, np.ndarray]
    interval: dict[str, np.ndarray]
    improvement: dict[str, float]
    improvement_ci: dict[str, np.ndarray]
    taus: np.ndarray
    profile: dict[str, np.ndarray]
    profile_ci: dict[str, np.ndarray]


def require_rliable():
    """rliable's ``library`` and ``metrics`` modules, or an ``ImportError`` naming the extra that
    installs them."""
    try:
        from rliable import library, metrics
    except ImportError as e:
        raise ImportError(f"the suite report needs rliable: {STUDY_EXTRA} ({e})") from None
    return library, metrics


# ---------------------------------------------------------------------------------------------
# Reading a suite


def read_results(cells: Sequence[tuple[Path, Cell]]) -> tuple[
        dict[tuple[str, str], CellResult], dict[tuple[str, str], str]]:
    """The results of the finished ``(suite folder, cell)``s, by ``(game, variant)``, and the
    status (``jaxdqn.suite.CellState``) of every other cell."""
    results, unfinished = {}, {}
    for folder, cell in cells:
        path = folder / cell.folder
        state = cell_state(path)
        if state.status != "done":
            unfinished[(cell.game, cell.variant)] = state.status
            continue
        evaluation = state.summary["evaluation"]
        with np.load(path / run_folder.METRICS_NPZ) as m:
            returns = np.asarray(m["episode_return"], np.float64)
            env_steps = np.asarray(m["env_steps"][0], np.int64)
            evals = (np.asarray(m["eval_return"], np.float64)
                     if cell.config.eval_interval is not None else None)
        results[(cell.game, cell.variant)] = CellResult(
            game=cell.game, variant=cell.variant,
            scores=np.array([row["mean"] for row in evaluation["per_seed"]], np.float64),
            env_steps=env_steps, returns=returns, eval_returns=evals,
            episodes=int(evaluation["num_episodes"]))
    return results, unfinished


def complete_games(games: Sequence[str], variants: Sequence[str],
                   results: Mapping[tuple[str, str], CellResult]) -> list[str]:
    """The games on which every one of ``variants`` has finished."""
    return [g for g in games if all((g, v) in results for v in variants)]


def score_matrices(results: Mapping[tuple[str, str], CellResult], games: Sequence[str],
                   variants: Sequence[str]) -> dict[str, np.ndarray]:
    """``{variant: f64[runs, games]}``: each run's score, the games' runs side by side."""
    return {v: np.stack([results[(g, v)].scores for g in games], axis=1) for v in variants}


# ---------------------------------------------------------------------------------------------
# Normalisation


def baseline_normalisation(raw: Mapping[str, np.ndarray], games: Sequence[str],
                           baseline: str) -> Normalisation:
    """Per game, scores over the ``baseline`` variant's mean score; ``ValueError`` for a game on
    which that mean is not > 0 (no scale to divide by: use reference scores)."""
    means = np.asarray(raw[baseline], np.float64).mean(axis=0)
    for game, mean in zip(games, means):
        if not mean > 0:
            raise ValueError(f"cannot normalise {game} by {baseline}'s mean score {mean:g}: it "
                             "must be > 0; give reference scores (--reference FILE) instead")
    return Normalisation("baseline", {g: 0.0 for g in games},
                         {g: float(m) for g, m in zip(games, means)},
                         f"{baseline}'s mean score per game")


def load_reference(path: str | Path, games: Sequence[str]) -> Normalisation:
    """Reference normalisation from a JSON file ``{game: {"random": R, "reference": S}, ...}``
    (an optional ``"source"`` string says where the numbers come from); ``ValueError`` naming
    what is missing or wrong."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as e:
        raise ValueError(f"cannot read reference scores {str(path)!r}: {e.strerror or e}"
                         ) from None
    except ValueError as e:
        raise ValueError(f"reference scores {str(path)!r} are not valid JSON: {e}") from None
    if not isinstance(data, dict):
        raise ValueError(f"reference scores {str(path)!r} must be a JSON object of game -> "
                         '{"random": R, "reference": S}')
    low, high = {}, {}
    for game in games:
        entry = data.get(game)
        if not isinstance(entry, dict) or not all(
                isinstance(entry.get(k), (int, float)) and not isinstance(entry.get(k), bool)
                for k in ("random", "reference")):
            raise ValueError(f"reference scores {str(path)!r} give no numbers "
                             f'{{"random": R, "reference": S}} for {game}')
        low[game], high[game] = float(entry["random"]), float(entry["reference"])
        if not high[game] > low[game]:
            raise ValueError(f"reference scores {str(path)!r}: {game}'s reference "
                             f"{high[game]:g} must be above its random score {low[game]:g}")
    source = str(data.get("source", path))
    return Normalisation("reference", low, high, source)


# ---------------------------------------------------------------------------------------------
# Aggregates


def aggregate(scores: Mapping[str, np.ndarray], baseline: str, reps: int = 2000, seed: int = 0,
              taus: np.ndarray | None = None) -> Aggregates:
    """``METRICS``, probability of improvement over ``baseline`` and performance profiles of
    normalised ``scores[variant]: f64[runs, games]``, each with a 95% stratified-bootstrap
    interval of ``reps`` resamples (``rliable.library.get_interval_estimates``), seeded by
    ``seed``. ``taus`` defaults to 101 points from 0 to the largest score (at least 2)."""
    _, metrics = require_rliable()
    scores = {v: np.asarray(s, np.float64) for v, s in scores.items()}
    if taus is None:
        top = max(2.0, max(float(np.max(s)) for s in scores.values()) * 1.02)
        taus = np.linspace(0.0, top, 101)

    def four(s):
        return np.array([metrics.aggregate_median(s), metrics.aggregate_iqm(s),
                         metrics.aggregate_mean(s), metrics.aggregate_optimality_gap(s)])

    def profile(s):  # rliable.library.score_distributions, vectorised over taus
        return (s.reshape(-1, 1) > taus).mean(axis=0)

    pairs = {v: [scores[v], scores[baseline]] for v in scores if v != baseline}
    point, interval = interval_estimates(scores, four, reps, seed)
    improvement, improvement_ci = interval_estimates(
        pairs, metrics.probability_of_improvement, reps, seed) if pairs else ({}, {})
    prof, prof_ci = interval_estimates(scores, profile, reps, seed)
    return Aggregates(point=point, interval=interval,
                      improvement={v: float(p) for v, p in improvement.items()},
                      improvement_ci={v: np.asarray(ci).reshape(2) for v, ci in
                                      improvement_ci.items()},
                      taus=taus, profile=prof, profile_ci=prof_ci)


def interval_estimates(data: Mapping[str, Any], func, reps: int, seed: int):
    """``rliable.library.get_interval_estimates(data, func, reps=reps)``, reproducible: rliable
    1.2 draws its stratified-bootstrap resamples from numpy's global generator whatever
    ``random_state`` says, so that generator is seeded with ``seed`` for the call and restored
    after it."""
    library, _ = require_rliable()
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # arch 7 deprecates random_state
            return library.get_interval_estimates(data, func, reps=reps,
                                                  random_state=np.random.RandomState(seed))
    finally:
        np.random.set_state(state)


# ---------------------------------------------------------------------------------------------
# Table


def _ci(point: float, low: float, high: float) -> str:
    return f"{point:.3f} [{low:.3f}, {high:.3f}]"


def markdown_table(agg: Aggregates, raw: Mapping[str, np.ndarray], games: Sequence[str],
                   baseline: str) -> str:
    """One row per variant: ``METRICS`` and ``P(X > baseline)`` with their intervals, then each
    game's raw mean score with its range over runs."""
    head = ["variant", *METRICS, f"P(X > {baseline})", *games]
    rows = []
    for v in agg.point:
        p, ci = agg.point[v], agg.interval[v]
        cells = [v, *(_ci(p[i], ci[0, i], ci[1, i]) for i in range(len(METRICS)))]
        cells.append("-" if v == baseline else
                     _ci(agg.improvement[v], *agg.improvement_ci[v]))
        s = np.asarray(raw[v], np.float64)
        cells += [f"{s[:, j].mean():.2f} [{s[:, j].min():.2f}, {s[:, j].max():.2f}]"
                  for j in range(len(games))]
        rows.append(cells)
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def _counts(values: Mapping[str, int]) -> str:
    """``"3"`` when every variant has the same count, else ``"3 (dqn), 5 (n3)"``."""
    if len(set(values.values())) == 1:
        return str(next(iter(values.values())))
    return ", ".join(f"{n} ({v})" for v, n in values.items())


def report_text(title: str, table: str, norm: Normalisation, games: Sequence[str],
                results: Mapping[tuple[str, str], CellResult], variants: Sequence[str],
                reps: int, seed: int, baseline: str, left_out: Sequence[str]) -> str:
    """The report: what was measured and how, the table, and what was left out."""
    runs = _counts({v: results[(games[0], v)].scores.size for v in variants})
    episodes = _counts({v: results[(games[0], v)].episodes for v in variants})
    how = ("(score - random) / (reference - random), from " + norm.source
           if norm.kind == "reference" else f"score / {norm.source} (1: {baseline}'s level)")
    lines = [
        f"# {title}", "",
        f"{len(games)} game{'s' * (len(games) != 1)} ({', '.join(games)}) x {runs} runs per "
        f"variant. The score of a run: its mean greedy return over {episodes} episodes after "
        "training (gymnax, the env as trained: with sticky actions where the config has them).",
        f"Normalised per game: {how}.",
        f"Aggregates over every run of every game, each with a 95% stratified-bootstrap interval "
        f"[low, high] (rliable, {reps} resamples, seed {seed}): median of the games' mean "
        "scores, IQM (mean of the middle 50% of runs), mean, optimality gap (mean shortfall "
        f"below 1, scores clipped at 1; lower is better), P(X > {baseline}) (per game the "
        f"chance that a run of X outscores a run of {baseline}, averaged over games). Game "
        "columns: the raw mean score [min, max] over runs.", "", table]
    if left_out:
        lines += ["", "Left out (not finished on every game): " + "; ".join(left_out) + "."]
    return "\n".join(lines) + "\n"


def report_json(agg: Aggregates, raw: Mapping[str, np.ndarray], norm: Normalisation,
                games: Sequence[str], baseline: str, reps: int, seed: int) -> dict[str, Any]:
    """Every number of the report, with the normalisation and each run's raw score."""
    return {
        "games": list(games), "baseline": baseline, "reps": reps, "seed": seed,
        "confidence": 0.95,
        "normalisation": {"kind": norm.kind, "source": norm.source, "low": norm.low,
                          "high": norm.high},
        "variants": {v: {
            **{m: {"point": float(agg.point[v][i]),
                   "ci95": [float(agg.interval[v][0, i]), float(agg.interval[v][1, i])]}
               for i, m in enumerate(METRICS)},
            "probability_of_improvement": None if v == baseline else {
                "point": agg.improvement[v], "ci95": agg.improvement_ci[v].tolist()},
            "raw_scores": {g: np.asarray(raw[v])[:, j].tolist() for j, g in enumerate(games)},
        } for v in agg.point},
        "performance_profile": {"taus": agg.taus.tolist(),
                                **{v: {"fraction": agg.profile[v].tolist(),
                                       "ci95": np.asarray(agg.profile_ci[v]).tolist()}
                                   for v in agg.profile}},
    }


def write_report(folder: Path, text: str, data: dict) -> None:
    """``SUITE_REPORT`` and ``SUITE_REPORT_JSON`` in suite folder ``folder``."""
    atomic_write(folder / run_folder.SUITE_REPORT, text)
    atomic_write_json(folder / run_folder.SUITE_REPORT_JSON, data)


# ---------------------------------------------------------------------------------------------
# Figures


def _figure(**kwargs):
    from matplotlib.figure import Figure

    return Figure(layout="constrained", **kwargs)


def plot_aggregates(agg: Aggregates, baseline: str, norm: Normalisation,
                    path: str | Path, title: str) -> None:
    """One panel per aggregate and one for ``P(X > baseline)``: each variant's point estimate
    and its 95% interval."""
    variants = list(agg.point)
    panels = [*METRICS, f"P(X > {baseline})"]
    fig = _figure(figsize=(3.0 * len(panels), 0.8 + 0.45 * len(variants)))
    axes = fig.subplots(1, len(panels), sharey=True)
    y = np.arange(len(variants))[::-1]
    for k, (ax, name) in enumerate(zip(axes, panels)):
        for i, v in enumerate(variants):
            if k < len(METRICS):
                point, low, high = agg.point[v][k], *agg.interval[v][:, k]
            elif v in agg.improvement:
                point, (low, high) = agg.improvement[v], agg.improvement_ci[v]
            else:
                continue
            ax.plot([low, high], [y[i], y[i]], color=f"C{i}", lw=6, alpha=0.6,
                    solid_capstyle="butt")
            ax.plot([point], [y[i]], "|", color="k", ms=14, mew=2)
        ax.axvline(1.0 if k < len(METRICS) - 1 else 0.0 if k == len(METRICS) - 1 else 0.5,
                   color="0.6", ls="--", lw=1)
        ax.set_title(name)
        ax.grid(axis="x", alpha=0.3)
    axes[0].set_yticks(y, variants)
    axes[0].set_ylim(-0.7, len(variants) - 0.3)
    fig.supxlabel(("score normalised by " + norm.source) if norm.kind == "baseline"
                  else "reference-normalised score (P: probability)", fontsize=9)
    fig.suptitle(title + " (point, 95% stratified-bootstrap interval)", fontsize=10)
    atomic_savefig(fig, path, dpi=110)


def plot_profiles(agg: Aggregates, norm: Normalisation, path: str | Path, title: str) -> None:
    """Performance profiles: the fraction of runs whose normalised score exceeds tau, with
    their 95% intervals."""
    fig = _figure(figsize=(6.5, 4.2))
    ax = fig.subplots()
    for i, v in enumerate(agg.profile):
        ax.plot(agg.taus, agg.profile[v], color=f"C{i}", lw=2, label=v)
        ci = np.asarray(agg.profile_ci[v])
        ax.fill_between(agg.taus, ci[0], ci[1], color=f"C{i}", alpha=0.2, lw=0)
    ax.axvline(1.0, color="0.6", ls="--", lw=1)
    ax.set_xlabel(r"normalised score $\tau$" + (f" (1: {norm.source})"
                                                 if norm.kind == "baseline" else ""))
    ax.set_ylabel(r"fraction of runs with score $> \tau$")
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(title + " (shaded: 95% interval)", fontsize=10)
    atomic_savefig(fig, path, dpi=110)


def plot_curves(results: Mapping[tuple[str, str], CellResult], games: Sequence[str],
                variants: Sequence[str], path: str | Path, title: str) -> None:
    """One panel per game: each variant's training return per metric row, mean over runs with
    the range over runs shaded; the evaluations during training dashed where the runs made
    them."""
    fig = _figure(figsize=(5.0 * len(games), 3.8))
    axes = np.atleast_1d(fig.subplots(1, len(games)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # rows where no run finished an episode
        for ax, game in zip(axes, games):
            for i, v in enumerate(variants):
                res = results.get((game, v))
                if res is None:
                    continue
                x = res.env_steps
                ax.plot(x, np.nanmean(res.returns, axis=0), color=f"C{i}", lw=1.6,
                        label=f"{v} ({res.returns.shape[0]} runs)")
                ax.fill_between(x, np.nanmin(res.returns, axis=0),
                                np.nanmax(res.returns, axis=0), color=f"C{i}", alpha=0.15, lw=0)
                if res.eval_returns is not None:
                    done = np.isfinite(res.eval_returns).any(axis=0)
                    ax.plot(x[done], np.nanmean(res.eval_returns[:, done], axis=0), ls="--",
                            color=f"C{i}", lw=1.2)
            ax.set_title(game)
            ax.set_xlabel("env steps")
            ax.set_ylabel("training return (mean over runs)")
            ax.grid(alpha=0.3)
            evaluated = any(results[(game, v)].eval_returns is not None
                            for v in variants if (game, v) in results)
            ax.legend(fontsize=7, title="shaded: min-max over runs" + (
                "; dashed: greedy evaluation during training" if evaluated else ""),
                title_fontsize=6)
    fig.suptitle(title, fontsize=10)
    atomic_savefig(fig, path, dpi=110)


__all__ = [
    "METRICS",
    "Aggregates",
    "CellResult",
    "Normalisation",
    "aggregate",
    "baseline_normalisation",
    "complete_games",
    "load_reference",
    "markdown_table",
    "plot_aggregates",
    "plot_curves",
    "plot_profiles",
    "read_results",
    "report_json",
    "report_text",
    "require_rliable",
    "score_matrices",
    "write_report",
]
