"""Runs of a command, in segments: the progress display, the loggers and the Ctrl-C safe points
between segments, for ``jaxdqn train`` (one group of runs) and ``jaxdqn sweep`` (a group per
compiled program, run by ``jaxdqn.sweep.iter_sweep``).

A command opens a ``SegmentLoop``, ``start``s it for each group of runs, feeds it every segment
(``run_segments``, or ``iter_sweep``'s ``on_segment``) inside ``until_stopped``, and then saves:
after a stop signal, what ``--resume`` needs from the loop's ``latest`` segment and ``metrics``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from jaxdqn.cli import interrupts
from jaxdqn.cli.progress import Progress
from jaxdqn.cli.reports import latest_returns


class SegmentLoop:
    """What happens between the segments of a group of runs: the progress display, the loggers,
    then a safe point (``interrupts.check``).

    For the group in progress: ``group`` (the caller's label, None between groups), ``latest``
    (its last segment in this session, None before the first: what a stop saves), ``rows_done``
    and ``metrics`` (its metric rows so far, earlier sessions' first).
    """

    def __init__(self, segment_log, show_progress: bool):
        self.segment_log = segment_log  # a cli.loggers.SegmentLogger, or None
        self.show_progress = show_progress
        self.progress: Progress | None = None
        self.end()

    def start(self, desc: str, config, num_runs: int, rows_done: int = 0,
              metrics: Sequence[Any] = (), group: Any = None,
              logged: Callable[[Any], Any] = lambda metrics: metrics,
              log_runs: Sequence[int] | None = None) -> None:
        """A group of ``num_runs`` runs of ``config`` that has done ``rows_done`` metric rows
        (``metrics``). The loggers get ``logged(segment metrics)`` for the logged runs
        ``log_runs`` (default: one logged run per run)."""
        self.end()
        self.group, self.rows_done, self.metrics = group, rows_done, list(metrics)
        self.steps_per_row = config.log_interval
        self.logged, self.log_runs = logged, log_runs
        self.progress = Progress(desc, config.total_timesteps, num_runs,
                                 rows_done * self.steps_per_row, enabled=self.show_progress)
        if self.segment_log is not None:
            self.segment_log.steps_per_row = self.steps_per_row
            self.segment_log.restart_clock()

    def add(self, segment) -> None:
        """Records a segment (``jaxdqn.runs.Segment``), shows and logs it, then is a safe point:
        the state after it is what a stop saves."""
        self.latest, self.rows_done = segment, segment.rows_done
        self.metrics.append(segment.metrics)
        self.progress.update(segment.rows_done * self.steps_per_row,
                             latest_returns(segment.metrics))
        if self.segment_log is not None:  # on the host, while the next segment runs
            num_rows = segment.metrics.env_steps.shape[-1]
            self.segment_log.log(self.logged(segment.metrics), num_rows, self.log_runs,
                                 None if self.log_runs is None else len(self.log_runs))
        interrupts.check()

    def end(self) -> None:
        """Ends the group in progress (its progress display closes)."""
        if self.progress is not None:
            self.progress.close()
        self.progress, self.group, self.latest = None, None, None
        self.rows_done, self.metrics = 0, []

    def close(self) -> None:
        """Closes the progress display and the loggers."""
        if self.progress is not None:
            self.progress.close()
            self.progress = None
        if self.segment_log is not None:
            self.segment_log.close()


def run_segments(loop: SegmentLoop, runs, state, hparams, first_row: int,
                 segment_rows: int) -> None:
    """Runs rows ``first_row ..`` of ``runs`` to the end (``jaxdqn.runs.run_in_segments``),
    feeding each segment to ``loop``."""
    from jaxdqn.runs import run_in_segments

    if first_row < runs.config.num_log_rows:
        for segment in run_in_segments(runs, state, hparams, first_row, segment_rows):
            loop.add(segment)


def ready_state(runs, keys, hparams, saved, first_row: int, segment_rows: int,
                report: Callable[[str], None]):
    """The state to start from (``runs.init``'s, or ``saved``, a resume file's state, placed as
    init's output is: a host state would compile ``run`` twice) with ``run`` compiled for the
    segments (announced through ``report``); returns it and the seconds this took (the compile
    time, apart from training's)."""
    from jaxdqn.parallel import place_as_output

    t = time.perf_counter()
    if saved is not None:
        state = place_as_output(runs.restored_state(saved), runs.init, keys, hparams)
    else:
        state = runs.init(keys, hparams)
    if first_row < runs.config.num_log_rows:
        report("compiling the training program ...")
        runs.run.lower(state, hparams, first_row, segment_rows).compile()
    return state, time.perf_counter() - t


def until_stopped(loop: SegmentLoop, work: Callable[[], Any]) -> bool:
    """Runs ``work`` (which feeds ``loop``): True when a stop signal ended it at a safe point,
    False when it finished. The progress display and the loggers are closed either way, before
    the caller saves."""
    try:
        work()
    except KeyboardInterrupt:
        return True
    finally:
        loop.close()
    return False
