"""Batches of runs: seeds x hyperparameter combinations, one compiled program per shape group.

A ``RunBatch`` is one config's training loop, jitted and vmapped over seeds (and, for a sweep,
over combinations of the traced ``HParams``), split into ``init``, ``run`` (a given number of
metric rows, so a caller can show progress or stop between segments of rows) and ``evaluate``. ``jaxdqn
train`` is a batch of seeds; a sweep is one batch per shape group::

    grid  --expand_grid-->  combinations  --shape_groups-->  groups
    group: the fields outside HParams are equal, so one compiled program runs all its combinations;
           its HParams are arrays with one entry per combination, vmapped with the seeds inside.

Seeds use the same keys in every combination (common random numbers), which makes the ranking
of combinations less noisy than independent keys would.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from typing import Any, Callable, Iterator, Mapping, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxdqn.config import DQNConfig
from jaxdqn.evaluation import evaluate
from jaxdqn.parallel import devices_for, place_as_output, split_on_axis, to_host
from jaxdqn.runtime import compiler_options
from jaxdqn.train import RUNNER_STATE_AXES, HParams, RunnerState, TrainMetrics, make_trainer

TRACED_FIELDS: tuple[str, ...] = HParams._fields
"""Fields a sweep batches into one compiled program; every other field makes its own group."""

EVAL_STREAM = 1
"""Evaluation keys come from ``fold_in(PRNGKey(seed), EVAL_STREAM)``, apart from training's."""


def seed_keys(seed: int, num_seeds: int) -> jax.Array:
    """``u32[num_seeds, 2]``: one training key per run, ``split(PRNGKey(seed), num_seeds)``."""
    return jax.random.split(jax.random.PRNGKey(seed), num_seeds)


def evaluation_keys(seed: int, num_seeds: int) -> jax.Array:
    """``u32[num_seeds, 2]``: one greedy-evaluation key per run, independent of training's keys."""
    return jax.random.split(jax.random.fold_in(jax.random.PRNGKey(seed), EVAL_STREAM), num_seeds)


class RunBatch(NamedTuple):
    """One config's runs, jitted: state and params carry leading axes ``batch_axes``.

    ``init(keys, hparams) -> RunnerState``; ``run(state, hparams, first_row, num_rows) ->
    (state, TrainMetrics[..., num_rows])`` (``num_rows`` static: each distinct value compiles once);
    ``evaluate(params, keys, num_episodes) -> f32[..., num_episodes]`` greedy returns.
    ``hparams`` is None for a batch of seeds (the config's values, compiled in as constants),
    or an ``HParams`` of arrays ``[num_combinations]`` for a sweep group.
    """

    config: DQNConfig
    init: Callable[..., RunnerState]
    run: Callable[..., tuple[RunnerState, TrainMetrics]]
    evaluate: Callable[..., jax.Array]


def make_run_batch(config: DQNConfig, sweep: bool = False,
                   devices: Sequence[jax.Device] | None = None) -> RunBatch:
    """Jitted init/run/evaluate for ``config``, vmapped over seeds, and over combinations first
    when ``sweep``. Each function compiles once per distinct argument shape.

    With several ``devices`` (default: this process's, e.g. GPUs, or CPU cores exposed with
    ``jaxdqn.runtime.use_all_cpu_cores``) the seed axis is split across as many of them as divide
    the number of seeds (``parallel.devices_for``); each device runs its block of seeds for every
    combination, with no communication, and every run is the one a single device computes.
    """
    trainer = make_trainer(config)
    state_axes = RUNNER_STATE_AXES
    seed_dim = 1 if sweep else 0  # where the seed axis sits in batched states and outputs
    state_dims = jax.tree.map(lambda ax: None if ax is None else seed_dim, state_axes,
                              is_leaf=lambda x: x is None)

    def over_batch(fn, seed_axes, combo_axes, out_axes=0):
        fn = jax.vmap(fn, in_axes=seed_axes, out_axes=out_axes)
        return jax.vmap(fn, in_axes=combo_axes, out_axes=out_axes) if sweep else fn

    def on_devices(fn, num_seeds, in_dims, out_dims):
        return split_on_axis(fn, devices_for(num_seeds, devices), in_dims, out_dims)

    def init_runs(keys, hparams):
        fn = over_batch(trainer.init, (0, None), (None, 0), state_axes)
        return on_devices(fn, keys.shape[0], (0, None), state_dims)(keys, hparams)

    def run_rows(state, hparams, first_row, num_rows):
        def one(s, hp):
            return trainer.run(s, hp, first_row, num_rows)

        fn = over_batch(one, (state_axes, None), (state_axes, 0), (state_axes, 0))
        num_seeds = state.obs.shape[seed_dim]
        return on_devices(fn, num_seeds, (state_dims, None), (state_dims, seed_dim))(state, hparams)

    def evaluate_runs(params, keys, num_episodes):
        def one(p, k):
            return evaluate(config, p, k, num_episodes)

        fn = over_batch(one, (0, 0), (0, None))
        return on_devices(fn, keys.shape[0], (seed_dim, 0), seed_dim)(params, keys)

    return RunBatch(
        config=config,
        init=jax.jit(init_runs),
        run=jax.jit(run_rows, static_argnums=3, compiler_options=compiler_options(config)),
        evaluate=jax.jit(evaluate_runs, static_argnums=2),
    )


def rows_per_segment(num_rows: int, target_segments: int = 20) -> int:
    """Metric rows per segment: a divisor of ``num_rows`` (so one compiled ``run`` serves every
    segment) whose segment count is closest to ``target_segments`` on a log scale."""
    if num_rows < 1 or target_segments < 1:
        raise ValueError(f"num_rows={num_rows} and target_segments={target_segments} must be >= 1")
    divisors = [d for d in range(1, num_rows + 1) if num_rows % d == 0]
    return min(divisors, key=lambda d: (abs(math.log(num_rows / d / target_segments)), d))


class Segment(NamedTuple):
    """Consecutive metric rows of a batch of runs, as ``run_in_segments`` yields them."""

    state: RunnerState  # after the segment
    metrics: TrainMetrics  # numpy, leading batch axes then [segment_rows]
    rows_done: int  # metric rows done after the segment, counted from the run's start


def run_in_segments(batch: RunBatch, state: RunnerState, hparams: HParams | None, first_row: int,
                  segment_rows: int) -> Iterator[Segment]:
    """Runs rows ``first_row ..`` to the end in segments of ``segment_rows``, yielding after each.

    The next segment is dispatched before the previous one's metrics are read back, so the device
    never waits for the host; stopping the iteration (or Ctrl-C while it waits) loses at most the
    segment in flight, and every yielded state is a consistent place to save or resume from.
    """
    num_rows = batch.config.num_log_rows
    if (num_rows - first_row) % segment_rows:
        raise ValueError(f"segment_rows={segment_rows} must divide the {num_rows - first_row} "
                         "rows left")
    pending = None
    for row in range(first_row, num_rows, segment_rows):
        state, metrics = batch.run(state, hparams, row, segment_rows)
        if pending is not None:
            yield _finish(pending)
        pending = (state, metrics, row + segment_rows)
    if pending is not None:
        yield _finish(pending)


def _finish(pending) -> Segment:
    state, metrics, rows_done = pending
    return Segment(state=state, metrics=TrainMetrics(*to_host(tuple(metrics))),
                 rows_done=rows_done)


def concat_metrics(segments: Sequence[TrainMetrics], num_batch_axes: int) -> TrainMetrics:
    """Joins segments of metric rows along the row axis (after ``num_batch_axes`` batch axes)."""
    return TrainMetrics(*(np.concatenate(parts, axis=num_batch_axes) for parts in zip(*segments)))


# ---------------------------------------------------------------------------------------------
# Grids


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
    def column(name):
        dtype = np.int32 if name == "target_update_freq" else np.float32
        return np.asarray([getattr(c, name) for c in configs], dtype)

    return HParams(*(column(name) for name in HParams._fields))


def _hashable(value):
    return tuple(value) if isinstance(value, list) else value


def check_sweep_fits(groups: Sequence[ShapeGroup], num_seeds: int,
                     devices: Sequence[jax.Device] | None = None) -> None:
    """Raises ``ValueError`` (``jaxdqn.memory.check_fits``'s message, naming the group) before
    anything compiles if a group's runs (combinations x seeds, the seeds split across devices as
    ``make_run_batch`` splits them) will not fit in device memory."""
    from jaxdqn.memory import check_fits  # memory imports train; keep this module light

    run_devices = devices_for(num_seeds, devices)
    for gi, group in enumerate(groups):
        try:
            check_fits(group.config, len(group.combinations) * num_seeds, run_devices,
                       can_limit=False, runs_per_seed=len(group.combinations))
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
    """The ``jax.ShapeDtypeStruct`` tree of a group's batched ``RunnerState`` (no compilation):
    the template to read a saved ``GroupProgress.state`` into."""
    batch = make_run_batch(group.config, sweep=True)
    return jax.eval_shape(batch.init, seed_keys(seed, num_seeds),
                          HParams(*(jnp.asarray(x) for x in group.hparams)))


def iter_sweep(groups: Sequence[ShapeGroup], num_seeds: int, seed: int = 0,
               num_episodes: int = 100, target_segments: int = 10,
               on_compile: Callable[[int, ShapeGroup], None] | None = None,
               on_group_start: Callable[[int, ShapeGroup], None] | None = None,
               on_segment: Callable[[int, Segment], None] | None = None,
               devices: Sequence[jax.Device] | None = None, first_group: int = 0,
               resume: GroupProgress | None = None, **deprecated) -> Iterator[GroupResult]:
    """Trains and evaluates each group in turn (one compiled program each), yielding its results.

    For progress displays: ``on_compile(group_index, group)`` is called before a group compiles,
    ``on_group_start(group_index, group)`` once it is compiled and about to run, and
    ``on_segment(group_index, segment)`` after each segment of metric rows.
    Every group uses the same ``seed_keys(seed, num_seeds)`` and evaluation keys. The seeds are
    split across ``devices`` as ``make_run_batch`` does (default: all of this process's). First,
    before anything compiles, every group's memory is checked (``check_sweep_fits``).
    An interrupted sweep continues from ``first_group`` (the groups before it are done), or from
    ``resume``, a group stopped part-way; either way each group's results equal those of an
    uninterrupted sweep (a run does not depend on where its rows were split into segments).
    (``target_chunks`` and ``on_chunk`` are the deprecated names of ``target_segments`` and
    ``on_segment``.)

    With several processes (``jax.distributed``) every process calls this alike: the seeds split
    across the devices of all processes, and every process gets the gathered results.
    """
    from jaxdqn.deprecation import renamed_kwarg

    on_segment = renamed_kwarg(deprecated, "on_chunk", "on_segment", on_segment, "iter_sweep")
    if "target_chunks" in deprecated:
        target_segments = renamed_kwarg(deprecated, "target_chunks", "target_segments", None,
                                        "iter_sweep")
    if deprecated:
        raise TypeError(f"iter_sweep() got an unexpected keyword argument "
                        f"{next(iter(deprecated))!r}")
    return _iter_sweep(groups, num_seeds, seed, num_episodes, target_segments, on_compile,
                       on_group_start, on_segment, devices, first_group, resume)


def _iter_sweep(groups, num_seeds, seed, num_episodes, target_segments, on_compile,
                on_group_start, on_segment, devices, first_group, resume):
    if resume is not None:
        first_group = resume.group_index
    if not 0 <= first_group <= len(groups):
        raise ValueError(f"first_group={first_group} is outside the {len(groups)} groups")
    multi = jax.process_count() > 1
    if multi:  # this process's share on its devices; inputs as host arrays, equal everywhere
        check_sweep_fits(groups, max(num_seeds // jax.process_count(), 1))
        devices = jax.devices() if devices is None else devices
        place = np.asarray
    else:
        check_sweep_fits(groups, num_seeds, devices)
        place = jnp.asarray
    keys = place(seed_keys(seed, num_seeds))
    eval_keys = place(evaluation_keys(seed, num_seeds))
    for gi in range(first_group, len(groups)):
        group = groups[gi]
        if on_compile is not None:
            on_compile(gi, group)
        batch = make_run_batch(group.config, sweep=True, devices=devices)
        hparams = HParams(*(place(x) for x in group.hparams))
        if resume is not None and gi == resume.group_index:
            # Placed as init's output is: a numpy state would compile ``run`` a second time
            # for the next segment, whose input is the device output of the first.
            state = place_as_output(resume.state, batch.init, keys, hparams)
            first_row = resume.rows_done
            done = [] if resume.metrics is None or not first_row else [resume.metrics]
        else:
            state = batch.init(keys, hparams)
            first_row, done = 0, []
        left = group.config.num_log_rows - first_row
        segment_rows = rows_per_segment(left, target_segments) if left else 0
        if left:
            batch.run.lower(state, hparams, first_row, segment_rows).compile()  # cached below
        if on_group_start is not None:
            on_group_start(gi, group)
        segments = run_in_segments(batch, state, hparams, first_row, segment_rows) if left else ()
        for segment in segments:
            done.append(segment.metrics)
            state = segment.state
            if on_segment is not None:
                on_segment(gi, segment)
        returns = batch.evaluate(state.train.params, eval_keys, num_episodes)
        yield GroupResult(group_index=gi, group=group, metrics=concat_metrics(done, 2),
                          params=to_host(state.train.params),
                          eval_returns=np.asarray(to_host(returns)))


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


_RENAMED = {"Chunk": "Segment", "chunk_rows_for": "rows_per_segment",
            "run_in_chunks": "run_in_segments"}


def __getattr__(name: str):
    """The deprecated names of ``Segment``, ``rows_per_segment`` and ``run_in_segments``."""
    if name in _RENAMED:
        from jaxdqn.deprecation import warn_renamed

        warn_renamed(f"jaxdqn.sweep.{name}", f"jaxdqn.sweep.{_RENAMED[name]}")
        return globals()[_RENAMED[name]]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "Combination", "GroupProgress", "GroupResult", "RankedCombination", "RunBatch", "Segment",
    "ShapeGroup",
    "TRACED_FIELDS", "check_sweep_fits", "rows_per_segment", "concat_metrics", "evaluation_keys",
    "expand_grid", "group_state_shape",
    "iter_sweep", "make_run_batch", "rank_combinations", "run_in_segments", "run_sweep",
    "seed_keys", "shape_groups",
]
