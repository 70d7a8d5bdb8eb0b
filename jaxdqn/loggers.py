"""Metric logging to TensorBoard and Weights & Biases, on the host between segments of a run.

The training program never calls out: a segment of metric rows comes back to the host (as the
progress display already does, ``jaxdqn.runs.run_in_segments``), and ``RunLoggers.log_segment``
writes its rows. Each logged run is one row of the metrics' leading axis: a seed of ``jaxdqn
train``, or a grid point of ``jaxdqn sweep`` (the mean over its seeds).

Scalars, against env steps (per run): ``train/episode_return``, ``train/episode_length``,
``train/td_loss``, ``train/q_taken``, ``train/q_max``, ``train/epsilon``, ``eval/return`` and
``eval/truncated_fraction`` (rows that evaluated during training), with ``buffer_age_metrics``
``replay/sample_age``, ``replay/sample_age_p90``, ``replay/off_policy_fraction``,
``replay/importance_ratio`` and ``replay/trace_coefficient``, and ``perf/env_steps_per_second``
(the whole batch's throughput over the segment). A NaN (a row with no finished episode, no update
or no evaluation) is left out rather than written, and so is a column the run does not have
(None).

Optional packages: ``tensorboardX`` (``pip install "jaxdqn[tensorboard]"``), ``wandb``
(``pip install "jaxdqn[wandb]"``); ``MissingPackage`` names the extra when one is absent.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from jaxdqn.run_folder import TENSORBOARD_DIR, WANDB_DIR

SCALARS: dict[str, str] = {
    "episode_return": "train/episode_return",
    "episode_length": "train/episode_length",
    "td_loss": "train/td_loss",
    "q_taken": "train/q_taken",
    "q_max": "train/q_max",
    "epsilon": "train/epsilon",
    "eval_return": "eval/return",
    "eval_truncated": "eval/truncated_fraction",
    "sample_age": "replay/sample_age",
    "sample_age_p90": "replay/sample_age_p90",
    "off_policy_fraction": "replay/off_policy_fraction",
    "importance_ratio": "replay/importance_ratio",
    "trace_coefficient": "replay/trace_coefficient",
}
"""TrainMetrics field -> the tag it is logged under."""
THROUGHPUT_TAG = "perf/env_steps_per_second"


class MissingPackage(ImportError):
    """An optional logging package is not installed; the message names the extra to install."""


def _require(module: str, extra: str):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise MissingPackage(f"--{extra} needs the {module} package: pip install "
                             f'"jaxdqn[{extra}]"') from None


EXTRA_PACKAGES = {"tensorboard": "tensorboardX", "wandb": "wandb"}
"""Each logging extra and the package it needs."""


def require_extra(extra: str) -> None:
    """Raises ``MissingPackage`` (naming ``pip install "jaxdqn[extra]"``) unless the package of
    logging extra ``extra`` ("tensorboard" or "wandb") imports."""
    _require(EXTRA_PACKAGES[extra], extra)


def scalar_rows(metrics: Any) -> Iterator[tuple[int, int, dict[str, float]]]:
    """``(run_index, env_steps, {tag: value})`` for every run and row of ``metrics`` (a
    ``TrainMetrics`` of numpy arrays ``[num_runs, num_rows]``), NaNs left out."""
    steps = np.asarray(metrics.env_steps)
    for run in range(steps.shape[0]):
        for row in range(steps.shape[1]):
            values = {}
            for field, tag in SCALARS.items():
                if getattr(metrics, field, None) is None:
                    continue
                v = float(np.asarray(getattr(metrics, field))[run, row])
                if math.isfinite(v):
                    values[tag] = v
            yield run, int(steps[run, row]), values


def mean_over_seeds(metrics: Any) -> Any:
    """``metrics`` ``[num_combinations, num_seeds, num_rows]`` -> ``[num_combinations, num_rows]``:
    each grid point's mean over its seeds (NaN-skipping; env steps are equal across seeds)."""
    import warnings

    def reduce(name, x):
        if x is None:  # a column this run does not have
            return None
        x = np.asarray(x)
        if name in ("env_steps", "updates"):
            return x[:, 0]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns stay NaN
            return np.nanmean(x.astype(np.float64), axis=1)

    return type(metrics)(*(reduce(n, getattr(metrics, n)) for n in metrics._fields))


class TensorBoardWriter:
    """One tensorboardX ``SummaryWriter`` per run, in ``log_dir/<run name>``."""

    def __init__(self, log_dir: str | os.PathLike, run_names: Sequence[str]):
        tbx = _require("tensorboardX", "tensorboard")
        self.log_dir = Path(log_dir)
        self.writers = [tbx.SummaryWriter(logdir=str(self.log_dir / name)) for name in run_names]

    def log(self, run: int, step: int, values: Mapping[str, float]) -> None:
        for tag, value in values.items():
            self.writers[run].add_scalar(tag, value, global_step=step)

    def flush(self) -> None:
        for w in self.writers:
            w.flush()

    def close(self) -> None:
        for w in self.writers:
            w.close()


class WandbWriter:
    """One W&B run for the whole command; each logged run's scalars under ``<run name>/<tag>``,
    keyed by env steps. Offline (files under ``dir``, ``wandb sync`` uploads them) unless the user
    configured W&B: ``WANDB_MODE`` set, or an API key in ``WANDB_API_KEY``."""

    def __init__(self, directory: str | os.PathLike, run_names: Sequence[str], name: str,
                 config: Mapping[str, Any]):
        wandb = _require("wandb", "wandb")
        configured = "WANDB_MODE" in os.environ or "WANDB_API_KEY" in os.environ
        self.mode = None if configured else "offline"
        self.run_names = list(run_names)
        Path(directory).mkdir(parents=True, exist_ok=True)
        self.run = wandb.init(project=os.environ.get("WANDB_PROJECT", "jaxdqn"), name=name,
                              dir=str(directory), config=dict(config),
                              **({"mode": self.mode} if self.mode else {}))
        self.run.define_metric("env_steps")
        self.run.define_metric("*", step_metric="env_steps")

    def log(self, run: int, step: int, values: Mapping[str, float]) -> None:
        if values:
            prefix = self.run_names[run]
            self.run.log({"env_steps": step, **{f"{prefix}/{k}": v for k, v in values.items()}})

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self.run.finish()


class RunLoggers:
    """The loggers a command asked for, fed one segment of metric rows at a time."""

    def __init__(self, writers: Sequence[Any]):
        self.writers = list(writers)

    def log_segment(self, metrics: Any, env_steps_per_second: float | None = None,
                    runs: Sequence[int] | None = None) -> None:
        """Writes every row of ``metrics`` (numpy ``[n, num_rows]``) to runs ``runs`` (default
        ``0..n-1``: metrics row ``i`` is logged run ``runs[i]``), and the segment's throughput at
        its last row."""
        if not self.writers:
            return
        runs = list(range(np.shape(metrics.env_steps)[0])) if runs is None else list(runs)
        last = int(np.asarray(metrics.env_steps)[0, -1])
        for i, step, values in scalar_rows(metrics):
            for w in self.writers:
                w.log(runs[i], step, values)
        if env_steps_per_second is not None and math.isfinite(env_steps_per_second):
            for run in runs:
                for w in self.writers:
                    w.log(run, last, {THROUGHPUT_TAG: float(env_steps_per_second)})
        for w in self.writers:
            w.flush()

    def close(self) -> None:
        for w in self.writers:
            w.close()


def make_loggers(out: str | os.PathLike, run_names: Sequence[str], *, tensorboard: bool = False,
                 wandb: bool = False, name: str = "jaxdqn",
                 config: Mapping[str, Any] | None = None) -> RunLoggers:
    """``RunLoggers`` writing TensorBoard files under ``out/TENSORBOARD_DIR/<run name>`` and/or a
    W&B run under ``out/WANDB_DIR`` (``jaxdqn.run_folder``). Raises ``MissingPackage`` before
    anything is written when a package is absent."""
    for extra, wanted in (("tensorboard", tensorboard), ("wandb", wandb)):
        if wanted:
            require_extra(extra)
    writers = []
    if tensorboard:
        writers.append(TensorBoardWriter(Path(out) / TENSORBOARD_DIR, run_names))
    if wandb:
        writers.append(WandbWriter(Path(out) / WANDB_DIR, run_names, name, config or {}))
    return RunLoggers(writers)


def read_scalars(path: str | os.PathLike) -> dict[str, list[tuple[int, float]]]:
    """``{tag: [(step, value), ...]}`` from the TensorBoard event files under ``path`` (a run's
    folder or one file), read with tensorboardX's protobuf definitions: a check that needs no
    TensorBoard install."""
    import struct

    from tensorboardX.proto import event_pb2

    path = Path(path)
    files = [path] if path.is_file() else sorted(path.glob("events.out.tfevents.*"))
    scalars: dict[str, list[tuple[int, float]]] = {}
    for file in files:
        data = file.read_bytes()
        pos = 0
        while pos + 12 <= len(data):  # TFRecord: u64 length, u32 crc, data, u32 crc
            (length,) = struct.unpack("<Q", data[pos:pos + 8])
            record = data[pos + 12:pos + 12 + length]
            pos += 12 + length + 4
            event = event_pb2.Event.FromString(record)
            for value in event.summary.value:
                scalars.setdefault(value.tag, []).append((int(event.step),
                                                          float(value.simple_value)))
    return scalars
