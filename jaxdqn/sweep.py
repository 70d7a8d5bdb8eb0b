"""Grids of hyperparameters: seeds x combinations, one compiled program per shape group.

Each shape group runs as ``jaxdqn.runs.make_runs(config, num_seeds, sweep=True)``: one config's
training loop vmapped over seeds and over combinations of the traced ``HParams``::

    grid  --expand_grid-->  combinations  --shape_groups-->  groups
    group: the fields outside HParams are equal, so one compiled program runs all its combinations;
           its HParams are arrays with one entry per combination, vmapped with the seeds inside.

Seeds use the same keys in every combination (common random numbers), which makes the ranking
of combinations less noisy than independent keys would.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

import jaxdqn.runs
from jaxdqn.config import TRACED_FIELDS, DQNConfig
from jaxdqn.memory import check_fits
from jaxdqn.parallel import place_as_output
from jaxdqn.runs import (
    Segment,
    concat_metrics,
    evaluation_keys,
    host_key_data,
    padded_count,
    rows_per_segment,
    run_devices,
    seed_keys,
)
from jaxdqn.train import HParams, RunnerState, TrainMetrics


class Combination(NamedTuple):
    index: int  # position in the grid's row-major order
    values: dict[str, Any]  # the grid's fields -> this combination's values
    config: DQNConfig  # the base config with ``values`` applied


class ShapeGroup(NamedTuple):
    """Combinations that differ only in traced fields: one compiled program runs them all."""

    config: DQNConfig  # the first combination's config: its untraced fields are the group's
    combinations: tuple[Combination, ...]
    hparams: HParams  # arrays [num_combinations]

    def static_values(self, grid_fields: Sequence[str]) -> dict[str, Any]:
        """The group's values of the untraced grid fields, e.g. ``{"buffer_size": 5000}``."""
        return {f: getattr(self.config, f) for f in grid_fields if f not in TRACED_FIELDS}


def expand_grid(base: DQNConfig, grid: Mapping[str, Sequence[Any]]) -> list[Combination]:
    """Every combination of ``grid``'s values applied to ``base``, validated (``ValueError`` names
    the field, the combination and the problem) before anything compiles."""
    names = [f.name for f in dataclasses.fields(DQNConfig)]
    for field, values in grid.items():
        if field not in names:
            raise ValueError(f"grid field {field!r} is not a DQNConfig field")
        if len(values) == 0:
            raise ValueError(f"grid field {field!r} has no values")
        if len(set(map(_hashable, values))) != len(values):
            raise ValueError(f"grid field {field!r} repeats a value: {list(values)}")
    combos = []
    for index, picked in enumerate(itertools.product(*grid.values())):
        values = dict(zip(grid, picked))
        try:
            config = base.replace(**values)
        except ValueError as e:
            where = ", ".join(f"{k}={v!r}" for k, v in values.items())
            raise ValueError(f"grid combination {where}: {e}") from None
        combos.append(Combination(index=index, values=values, config=config))
    return combos


def shape_groups(combinations: Sequence[Combination]) -> list[ShapeGroup]:
    """Groups combinations by their untraced fields, in order of first appearance."""
    groups: dict[tuple, list[Combination]] = {}
    for combo in combinations:
        key = tuple((f.name, _hashable(getattr(combo.config, f.name)))
                    for f in dataclasses.fields(DQNConfig) if f.name not in TRACED_FIELDS)
        groups.setdefault(key, []).append(combo)
    return [ShapeGroup(config=members[0].config, combinations=tuple(members),
                       hparams=_stack_hparams([c.config for c in members]))
            for members in groups.values()]


def _stack_hparams(configs: Sequence[DQNConfig]) -> HParams:
    rows = [HParams.from_config(c) for c in configs]

    def column(name):
        dtype = np.int32 if name in ("target_update_freq", "exploration_steps") else np.float32
        return np.asarray([getattr(r, name) for r in rows], dtype)

    return HParams(*(column(name) for name in HParams._fields))


def _hashable(value):
    return tuple(value) if isinstance(value, list) else value


def check_sweep_fits(groups: Sequence[ShapeGroup], num_seeds: int,
                     devices: Sequence[jax.Device] | None = None) -> None:
    """Raises ``ValueError`` (``jaxdqn.memory.check_fits``'s message, naming the group) before
    anything compiles if a group's runs (combinations x seeds, the seeds split across devices and
    padded as ``jaxdqn.runs.make_runs`` splits them) will not fit in device memory."""
    on = run_devices(num_seeds, devices)
    padded = padded_count(num_seeds, len(on))
    for gi, group in enumerate(groups):
        try:
            check_fits(group.config, len(group.combinations) * padded, on,
                       can_limit=False, runs_per_seed=len(group.combinations), in_segments=True)
        except ValueError as e:
            where = f"group {gi + 1}/{len(groups)}: " if len(groups) > 1 else ""
            raise ValueError(f"{where}{e}") from None


class GroupResult(NamedTuple):
    group_index: int
    group: ShapeGroup
    metrics: TrainMetrics  # numpy [num_combinations, num_seeds, num_log_rows]
    params: Any  # final online Q-network params, leaves [num_combinations, num_seeds, ...]
    eval_returns: np.ndarray  # f32[num_combinations, num_seeds, num_episodes] greedy returns


class GroupProgress(NamedTuple):
    """A group stopped part-way, to continue with ``iter_sweep(..., resume=...)``: its state after
    ``rows_done`` metric rows (any ``Segment.state`` of the group) and those rows' metrics."""

    group_index: int
    state: RunnerState  # leading axes [num_combinations, num_seeds]
    rows_done: int
    metrics: TrainMetrics | None  # numpy [num_combinations, num_seeds, rows_done]; None if 0 rows


def group_state_shape(group: ShapeGroup, num_seeds: int, seed: int = 0):
    """The ``jax.ShapeDtypeStruct`` tree of a group's saved ``RunnerState`` (no compilation, no
    padded runs): the template to read a saved ``GroupProgress.state`` into."""
    runs = jaxdqn.runs.make_runs(group.config, num_seeds, sweep=True)
    return runs.state_shape(seed_keys(seed, num_seeds),
                            HParams(*(jnp.asarray(x) for x in group.hparams)))


def iter_sweep(groups: Sequence[ShapeGroup], num_seeds: int, seed: int = 0,
               num_episodes: int = 100, target_segments: int = 10,
               on_compile: Callable[[int, ShapeGroup], None] | None = None,
               on_group_start: Callable[[int, ShapeGroup], None] | None = None,
               on_segment: Callable[[int, Segment], None] | None = None,
               devices: Sequence[jax.Device] | None = None, first_group: int = 0,
               resume: GroupProgress | None = None) -> Iterator[GroupResult]:
    """Trains and evaluates each group in turn (one compiled program each), yielding its results.

    For progress displays: ``on_compile(group_index, group)`` is called before a group compiles,
    ``on_group_start(group_index, group)`` once it is compiled and about to run, and
    ``on_segment(group_index, segment)`` after each segment of metric rows.
    Every group uses the same ``seed_keys(seed, num_seeds)`` and ``evaluation_keys``. The seeds
    are split across devices as ``jaxdqn.runs.make_runs`` splits them (``run_devices``). First,
    before anything compiles, every group's memory is checked (``check_sweep_fits``).
    An interrupted sweep continues from ``first_group`` (the groups before it are done), or from
    ``resume``, a group stopped part-way (its state saved without padded runs,
    ``Runs.saved_state``); either way each group's results equal those of an uninterrupted sweep
    (a run does not depend on where its rows were split into segments).

    With several processes (``jax.distributed``) every process calls this alike: the seeds split
    across the devices of all processes, and every process gets the gathered results.
    """
    if resume is not None:
        first_group = resume.group_index
    if not 0 <= first_group <= len(groups):
        raise ValueError(f"first_group={first_group} is outside the {len(groups)} groups")
    multi = jax.process_count() > 1
    if multi:  # this process's share on its devices; inputs as host arrays, equal everywhere
        check_sweep_fits(groups, max(num_seeds // jax.process_count(), 1), jax.local_devices())
        keys = host_key_data(seed_keys(seed, num_seeds))
        eval_keys = host_key_data(evaluation_keys(seed, num_seeds))
        place = np.asarray
    else:
        check_sweep_fits(groups, num_seeds, devices)
        keys, eval_keys = seed_keys(seed, num_seeds), evaluation_keys(seed, num_seeds)
        place = jnp.asarray
    for gi in range(first_group, len(groups)):
        group = groups[gi]
        if on_compile is not None:
            on_compile(gi, group)
        runs = jaxdqn.runs.make_runs(group.config, num_seeds, sweep=True, devices=devices)
        hparams = HParams(*(place(x) for x in group.hparams))
        if resume is not None and gi == resume.group_index:
            # Placed as init's output is: a numpy state would compile ``run`` a second time
            # for the next segment, whose input is the device output of the first.
            state = place_as_output(runs.restored_state(resume.state), runs.init, keys, hparams)
            first_row = resume.rows_done
            done = [] if resume.metrics is None or not first_row else [resume.metrics]
        else:
            state = runs.init(keys, hparams)
            first_row, done = 0, []
        left = group.config.num_log_rows - first_row
        segment_rows = rows_per_segment(left, target_segments) if left else 0
        if left:
            runs.run.lower(state, hparams, first_row, segment_rows).compile()  # cached below
        if on_group_start is not None:
            on_group_start(gi, group)
        segments = (jaxdqn.runs.run_in_segments(runs, state, hparams, first_row, segment_rows)
                    if left else ())
        for segment in segments:
            done.append(segment.metrics)
            state = segment.state
            if on_segment is not None:
                on_segment(gi, segment)
        returns = runs.evaluate(state.train.params, eval_keys, num_episodes)
        yield GroupResult(group_index=gi, group=group, metrics=concat_metrics(done, 2),
                          params=runs.results(state.train.params),
                          eval_returns=runs.results(returns))


class RankedCombination(NamedTuple):
    rank: int
    combination: Combination
    group_index: int
    final_returns: np.ndarray  # f32[num_seeds]: each seed's mean greedy return
    mean: float
    std: float
    median: float
    min: float
    max: float


def rank_combinations(results: Sequence[GroupResult]) -> list[RankedCombination]:
    """Combinations ordered by mean final greedy return over seeds (best first; ties: lower std)."""
    rows = []
    for res in results:
        finals = res.eval_returns.astype(np.float64).mean(axis=-1)  # [combinations, seeds]
        for ci, combo in enumerate(res.group.combinations):
            r = finals[ci]
            rows.append((combo, res.group_index, r))
    rows.sort(key=lambda t: (-float(np.mean(t[2])), float(np.std(t[2])), t[0].index))
    return [RankedCombination(rank=i + 1, combination=combo, group_index=gi, final_returns=r,
                              mean=float(np.mean(r)), std=float(np.std(r)),
                              median=float(np.median(r)), min=float(np.min(r)),
                              max=float(np.max(r)))
            for i, (combo, gi, r) in enumerate(rows)]


def run_sweep(base: DQNConfig, grid: Mapping[str, Sequence[Any]], num_seeds: int, seed: int = 0,
              num_episodes: int = 100,
              **kwargs) -> tuple[list[GroupResult], list[RankedCombination]]:
    """Every combination of ``grid`` times ``num_seeds`` seeds; returns per-group results and the
    ranking. Keyword arguments go to ``iter_sweep``."""
    if num_seeds < 1:
        raise ValueError(f"num_seeds={num_seeds!r} is invalid: must be >= 1")
    groups = shape_groups(expand_grid(base, grid))
    results = list(iter_sweep(groups, num_seeds, seed, num_episodes, **kwargs))
    return results, rank_combinations(results)


__all__ = [
    "TRACED_FIELDS",
    "Combination",
    "GroupProgress",
    "GroupResult",
    "RankedCombination",
    "ShapeGroup",
    "check_sweep_fits",
    "expand_grid",
    "group_state_shape",
    "iter_sweep",
    "rank_combinations",
    "run_sweep",
    "shape_groups",
]
