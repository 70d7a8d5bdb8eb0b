"""The layout of a run folder (``jaxdqn train``), a sweep folder (``jaxdqn sweep``) and a suite
folder (``jaxdqn suite``): every file and folder name, which of them make a run or a sweep, and
where a run keeps its checkpoints.

The names are the on-disk format: folders written by earlier versions use the same ones. This
module imports only the standard library, so the CLI can name files before it imports JAX.
"""

from __future__ import annotations

import os
from pathlib import Path

CONFIG = "config.json"
"""The resolved ``DQNConfig``, seeds, base seed and provenance; a sweep's also holds its grid."""
METRICS_NPZ = "metrics.npz"
"""Every ``TrainMetrics`` field as an array ``[num_seeds, num_rows]``, plus ``seed_index``."""
METRICS_CSV = "metrics.csv"
"""The same metric rows in long format, one line per seed and row."""
SUMMARY = "summary.json"
"""Completion, timings and the final evaluation (a sweep's: the ranking of its combinations)."""
LEARNING_CURVE = "learning_curve.png"
"""Episode return, TD loss, Q-values and epsilon against env steps."""
FINAL_CHECKPOINT = "checkpoint.msgpack"
"""The params at the end of training (or at the interruption), every seed."""
BEST_CHECKPOINT = "best_checkpoint.msgpack"
"""Each seed's params at its best evaluation during training, with ``best_eval_return`` and
``best_env_steps`` per seed in its metadata; only with ``eval_interval`` set."""
RESUME_STATE = "resume_state.msgpack"
"""The whole training state of an interrupted run or sweep group, for ``--resume``."""

SWEEP_TABLE = "sweep.csv"
"""One row per grid combination, best first: its final greedy returns over seeds."""
SWEEP_RUNS = "sweep_runs.csv"
"""One row per combination and seed: final greedy return and last training return."""
SWEEP_PLOT = "sweep.png"
"""Learning curves of the best combinations and every combination's final returns."""
SWEEP_METRICS = "sweep_metrics.npz"
"""Per combination ``c{index}/env_steps``, ``c{index}/episode_return``, ``c{index}/td_loss``."""
SWEEP_RESUME = "sweep_resume.npz"
"""An unfinished sweep's finished groups: their metrics and greedy returns."""

SUITE_SPEC = "suite.json"
"""A suite's spec and each cell's config; its cells are run folders ``<game>/<variant>/``."""
SUITE_REPORT = "report.md"
"""``jaxdqn suite report``'s table (Markdown): aggregates across games and each game's scores."""
SUITE_REPORT_JSON = "report.json"
"""The same aggregates with their intervals, the normalisation and every run's score."""
SUITE_AGGREGATES_PLOT = "report_aggregates.png"
"""Median, IQM, mean, optimality gap and probability of improvement of each variant, with CIs."""
SUITE_PROFILES_PLOT = "report_profiles.png"
"""Performance profiles: the fraction of runs above each normalised score, with CIs."""
SUITE_CURVES_PLOT = "report_curves.png"
"""Learning curves, one panel per game, one curve per variant."""

TENSORBOARD_DIR = "tensorboard"
"""TensorBoard event files, one subfolder per logged run."""
WANDB_DIR = "wandb"
"""The W&B run's local files (offline runs: what ``wandb sync`` uploads)."""

CHECKPOINT_FILES = {"final": FINAL_CHECKPOINT, "best": BEST_CHECKPOINT}
"""The checkpoint file of each kind of params a run keeps."""
RUN_FILES = (CONFIG, METRICS_CSV, METRICS_NPZ, SUMMARY, LEARNING_CURVE, FINAL_CHECKPOINT,
             BEST_CHECKPOINT, RESUME_STATE)
"""The files of a train run: a folder holding any of them holds a run."""
SWEEP_FILES = (CONFIG, SWEEP_TABLE, SWEEP_RUNS, SWEEP_PLOT, SWEEP_METRICS, SUMMARY, SWEEP_RESUME,
               RESUME_STATE)
"""The files of a sweep: a folder holding any of them holds a sweep."""
LOGGER_DIRS = (TENSORBOARD_DIR, WANDB_DIR)
"""The loggers' folders: an old run's logs go with it when it is overwritten."""


class CheckpointError(ValueError):
    """A checkpoint that is missing, cannot be read, is not a jaxdqn checkpoint, or does not fit.

    Defined here, beside the checkpoint file names, so that finding a run's checkpoint needs no
    JAX; ``jaxdqn.checkpoint`` raises it for the files' contents."""


def run_checkpoint_path(run: str | os.PathLike, which: str = "final") -> Path:
    """The checkpoint file of run folder ``run`` holding its ``which`` params ("final" or
    "best"); ``run`` may also be a checkpoint file, returned as it is. Raises
    ``CheckpointError`` naming what is missing."""
    if which not in CHECKPOINT_FILES:
        raise CheckpointError(f"which={which!r} is invalid: must be 'final' or 'best'")
    path = Path(run)
    if path.is_file():
        return path
    if not path.is_dir():
        raise CheckpointError(f"{str(path)!r} does not exist")
    found = path / CHECKPOINT_FILES[which]
    if found.is_file():
        return found
    if which == "best" and (path / FINAL_CHECKPOINT).is_file():
        raise CheckpointError(f"run folder {str(path)!r} holds no best params ({BEST_CHECKPOINT}):"
                              " it did not evaluate during training (eval_interval=None)")
    raise CheckpointError(f"{str(path)!r} holds no {FINAL_CHECKPOINT}: not a finished or "
                          "interrupted jaxdqn run folder")


def best_checkpoint_path(run: str | os.PathLike) -> Path | None:
    """The best-params checkpoint of run folder ``run``, or None when ``run`` kept none (it did
    not evaluate during training) or is a checkpoint file rather than a folder."""
    path = Path(run) / BEST_CHECKPOINT
    return path if Path(run).is_dir() and path.is_file() else None
