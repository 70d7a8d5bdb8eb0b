"""``--tensorboard`` and ``--wandb`` for ``jaxdqn train``, ``sweep`` and ``suite run``: options,
and the loggers they open (``jaxdqn.loggers``), fed between segments of the run."""

from __future__ import annotations

import argparse
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from jaxdqn.cli.parser import UserError, say
from jaxdqn.run_folder import TENSORBOARD_DIR


def add_logging_options(p: argparse.ArgumentParser, what: str, folder: str = "OUT",
                        view: str = "OUT/tensorboard") -> None:
    """The two flags; ``folder`` is where each run's logs go (``folder/tensorboard/``,
    ``folder/wandb/``), ``view`` what ``tensorboard --logdir`` is given to see them all."""
    p.add_argument("--tensorboard", action="store_true",
                   help=f"write TensorBoard event files to {folder}/tensorboard/, one run per "
                        f'{what} (needs tensorboardX: pip install "jaxdqn[tensorboard]"); view '
                        f"with 'tensorboard --logdir {view}'")
    p.add_argument("--wandb", action="store_true",
                   help=f"log to Weights & Biases, offline ({folder}/wandb/; 'wandb sync' uploads) "
                        'unless WANDB_MODE or WANDB_API_KEY is set (pip install "jaxdqn[wandb]")')


class SegmentLogger:
    """The loggers asked for, and the wall clock between segments for the throughput scalar."""

    def __init__(self, loggers, num_runs_per_row: int, steps_per_row: int):
        self.loggers = loggers
        self.runs_per_row = num_runs_per_row  # training runs behind each logged row
        self.steps_per_row = steps_per_row
        self.t = time.perf_counter()

    def restart_clock(self) -> None:
        self.t = time.perf_counter()

    def log(self, metrics: Any, num_rows: int, runs: Sequence[int] | None = None,
            num_runs: int | None = None) -> None:
        """Logs a segment of ``num_rows`` rows per run; ``num_runs`` training runs ran it."""
        now = time.perf_counter()
        n = self.runs_per_row * (num_runs or 1)
        rate = num_rows * self.steps_per_row * n / max(now - self.t, 1e-9)
        self.loggers.log_segment(metrics, rate, runs)
        self.t = now

    def close(self) -> None:
        self.loggers.close()


def check_logging_extras(args: argparse.Namespace) -> None:
    """Refuses a ``--tensorboard`` or ``--wandb`` whose package is missing, before any work: one
    line naming the package and the extra (exit 2)."""
    from jaxdqn.loggers import MissingPackage, require_extra

    for extra in ("tensorboard", "wandb"):
        if getattr(args, extra, False):
            try:
                require_extra(extra)
            except MissingPackage as e:
                raise UserError(f"{e}, or drop --{extra} to run without it") from None


def open_loggers(tensorboard: bool, wandb: bool, out: Path, run_names: Sequence[str], name: str,
                 config: Mapping[str, Any], runs_per_row: int, steps_per_row: int):
    """A ``SegmentLogger`` for the loggers asked for, or None. Their packages were checked before
    any work (``check_logging_extras``)."""
    from jaxdqn.loggers import make_loggers

    if not (tensorboard or wandb):
        return None
    loggers = make_loggers(out, run_names, name=name, config=config, tensorboard=tensorboard,
                           wandb=wandb)
    if tensorboard:
        say(f"TensorBoard: tensorboard --logdir {out / TENSORBOARD_DIR}")
    return SegmentLogger(loggers, runs_per_row, steps_per_row)
