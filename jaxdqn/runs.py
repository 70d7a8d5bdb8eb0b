"""Runs of one config, many at once: their keys, the one rule that splits them across devices, and
the engine that runs them whole (``train_seeds``) or in segments of metric rows (``Runs``).

Keys. Run ``i`` of base seed ``S`` among ``N`` trains with ``seed_keys(S, N)[i] =
jax.random.split(jax.random.key(S), N)[i]``; everything it evaluates draws from
``fold_in(run key, EVAL_STREAM)``: during training, the evaluation ending row ``r`` folds in
``r``; after training (``evaluation_keys``) it folds in ``AFTER_TRAINING``, an index no row
reaches. Runs given the same keys are the same runs whatever else shares their program.

Devices (``run_devices``). Runs are split across every device (GPUs, TPU cores, or CPU devices
forced with ``XLA_FLAGS=--xla_force_host_platform_device_count=N``), one contiguous block each,
with no communication; in one process, never more devices than runs. The runs are padded to a
multiple of the device count by repeating the last run: real, discarded work that never reaches
an output (``Runs.results``, ``Runs.saved_state``).

``train_seeds(config, keys, hparams)`` is ``jax.jit(jax.vmap(make_train(config)))(keys,
hparams)`` split across devices, with ``seeds_at_once`` bounding how many runs a device holds at
once and the memory checked before compiling (``jaxdqn.memory``). ``make_runs`` is the same
program cut into ``init``, ``run`` (some metric rows) and ``evaluate``, for a caller that shows
progress, saves and resumes between segments (``jaxdqn train``), or that vmaps hyperparameter
combinations outside the seeds (a sweep group, ``jaxdqn.sweep``).

Multi-host: call ``jaxdqn.runtime.start_distributed()`` in every process before anything else
(``tests/test_distributed.py``); the runs then span the devices of all processes, every process
passes the same keys and hparams, and ``to_host`` gathers the results onto every process.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterator, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxdqn.config import DQNConfig
from jaxdqn.evaluation import evaluate
from jaxdqn.memory import check_fits, check_seeds_at_once
from jaxdqn.parallel import pad_runs, seed_mesh, shard_runs, sharded_vmap, split_on_axis, to_host
from jaxdqn.runtime import compiler_options
from jaxdqn.train import (
    EVAL_STREAM,
    RUNNER_STATE_AXES,
    HParams,
    RunnerState,
    TrainMetrics,
    TrainOutput,
    make_train,
    make_trainer,
)

AFTER_TRAINING = 0xFFFFFFFF
"""Folded into a run's evaluation key for the evaluation after training (rows fold in their
index, which never reaches it)."""


def seed_keys(seed: int, num_seeds: int) -> jax.Array:
    """``key<fry>[num_seeds]``: run ``i``'s training key, ``split(key(seed), num_seeds)[i]``."""
    return jax.random.split(jax.random.key(seed), num_seeds)


def evaluation_keys(seed: int, num_seeds: int) -> jax.Array:
    """``key<fry>[num_seeds]``: run ``i``'s key for the greedy evaluation after training,
    ``fold_in(fold_in(seed_keys(seed, num_seeds)[i], EVAL_STREAM), AFTER_TRAINING)``: from the
    run's evaluation stream, apart from its training and from its evaluations during training."""
    return jax.vmap(lambda k: jax.random.fold_in(jax.random.fold_in(k, EVAL_STREAM),
                                                 AFTER_TRAINING))(seed_keys(seed, num_seeds))


def run_devices(num_runs: int, devices: Sequence[jax.Device] | None = None) -> list[jax.Device]:
    """The devices ``num_runs`` runs are split across: all of ``devices`` (default: every device
    of every process), but in one process no more than there are runs. The runs are padded to a
    multiple of their count (``padded_count``). With several processes every device takes part:
    each process's devices hold its share."""
    devices = jax.devices() if devices is None else list(devices)
    if not devices:
        raise ValueError("devices is empty: runs need at least one device")
    if not isinstance(num_runs, int) or num_runs < 1:
        raise ValueError(f"num_runs={num_runs!r} is invalid: must be a positive int")
    return devices if jax.process_count() > 1 else devices[:num_runs]


def padded_count(num_runs: int, num_devices: int) -> int:
    """``num_runs`` rounded up to a multiple of ``num_devices``: the runs actually computed."""
    return -(-num_runs // num_devices) * num_devices


def even_round_size(num_runs: int, max_at_once: int) -> int:
    """Runs per round when ``num_runs`` run in as few sequential rounds of at most
    ``max_at_once`` as possible, all equal after padding: ``100`` runs at most ``16`` at a time
    run as 7 rounds of 15."""
    num_rounds = -(-num_runs // max_at_once)
    return -(-num_runs // num_rounds)


# ---------------------------------------------------------------------------------------------
# Whole runs in one program


def hparams_axes(hparams: HParams | None) -> HParams | None:
    """0 for each field given per run (leading axis), None for each shared scalar."""
    if hparams is None:
        return None
    return HParams(*(None if jnp.ndim(v) == 0 else 0 for v in hparams))


def make_train_seeds(config: DQNConfig, hp_axes: HParams | None = None, *,
                     mesh=None, seeds_at_once: int | None = None) -> Callable:
    """The jitted ``fn(key_data, hparams) -> TrainOutput`` behind ``train_seeds``.

    ``key_data`` is ``u32[num_seeds, 2]`` (``jax.random.key_data`` of threefry keys), sharded
    across ``mesh`` with ``shard_runs``; ``hp_axes`` says which ``hparams`` fields are per run
    (see ``hparams_axes``); ``hparams=None`` trains with the config's values. Cached per
    arguments, so repeated calls reuse the compiled program.
    """
    return _make_train_seeds(config, hp_axes, mesh, seeds_at_once)


@functools.lru_cache(maxsize=32)
def _make_train_seeds(config, hp_axes, mesh, seeds_at_once):
    train = make_train(config)

    def one(key_data, hparams):
        return train(jax.random.wrap_key_data(key_data), hparams)

    fn = sharded_vmap(one, mesh, in_axes=(0, hp_axes), at_once=seeds_at_once)
    return jax.jit(fn, compiler_options=compiler_options(config))


class SeedRuns(NamedTuple):
    """Runs placed on their devices, ready to compile and run (``plan_train_seeds``).

    ``fn(*args)`` trains them (``fn.lower(*args).compile()`` compiles without running, to time the
    two apart); ``finish`` drops the padded runs from its output.
    """

    fn: Callable
    args: tuple
    num_seeds: int
    num_devices: int

    def finish(self, out: TrainOutput) -> TrainOutput:
        if out.metrics.env_steps.shape[0] != self.num_seeds:
            out = jax.tree.map(lambda x: x[:self.num_seeds], out)
        return out


def train_seeds(config: DQNConfig, keys: jax.Array, hparams: HParams | None = None, *,
                devices: Sequence[jax.Device] | None = None, seeds_at_once: int | None = None,
                check_memory: bool = True) -> TrainOutput:
    """One independent run per key, split across ``devices`` (``run_devices``), as one program.

    ``keys``: ``num_seeds`` keys (``seed_keys(seed, n)``, or legacy ``u32[n, 2]`` ones);
    ``hparams``: an ``HParams`` whose fields are scalars (shared) or arrays with leading axis
    ``num_seeds`` (one value per run, a sweep), or None for the config's values. Returns a
    ``TrainOutput`` whose leaves have leading axis ``num_seeds``, equal to
    ``jax.jit(jax.vmap(make_train(config)))(keys, hparams)`` (see below). The runs are padded to a
    multiple of the device count, and with ``seeds_at_once`` to equal rounds
    (``even_round_size``); the extra runs are discarded. Raises ``ValueError`` before compiling
    when the runs will not fit in device memory (``jaxdqn.memory``).

    Equality: each run's program is the same whatever the device count or ``seeds_at_once``, and
    results are bit for bit those of the plain vmap wherever XLA picks the same kernels for the
    per-device share. It may not for a share of one (run unbatched) or for tiny layers (kernel
    choice by size); then results differ in the last bits, and the logged Q means (a reduction)
    can differ in the last bit under any partitioning. See ``tests/test_parallel.py``.
    """
    runs = plan_train_seeds(config, keys, hparams, devices=devices,
                            seeds_at_once=seeds_at_once, check_memory=check_memory)
    return runs.finish(runs.fn(*runs.args))


def plan_train_seeds(config: DQNConfig, keys: jax.Array, hparams: HParams | None = None, *,
                     devices: Sequence[jax.Device] | None = None,
                     seeds_at_once: int | None = None, check_memory: bool = True) -> SeedRuns:
    """``train_seeds`` up to the call: arguments checked and placed, memory checked, the jitted
    program chosen. Nothing is compiled."""
    key_data = _key_data(keys)
    num_seeds = key_data.shape[0]
    check_seeds_at_once(seeds_at_once)
    axes = hparams_axes(hparams)
    if hparams is not None:
        sizes = {jnp.shape(v)[0] for v, ax in zip(hparams, axes) if ax == 0}
        if sizes - {num_seeds}:
            raise ValueError(f"hparams fields given per run must have leading size "
                             f"num_seeds={num_seeds}, got sizes {sorted(sizes)}")
    devices = run_devices(num_seeds, devices)
    num_devices = len(devices)
    mesh = seed_mesh(devices)
    if check_memory:
        check_fits(config, num_seeds, devices=devices, seeds_at_once=seeds_at_once)
    per_run_hp = None if hparams is None else HParams(
        *(jnp.asarray(v) if ax == 0 else None for v, ax in zip(hparams, axes)))
    per_device = -(-num_seeds // num_devices)
    at_once = None if seeds_at_once is None else even_round_size(per_device, seeds_at_once)
    (key_data, per_run_hp), _ = pad_runs((key_data, per_run_hp),
                                          num_devices * (at_once or 1))
    shared_hp = None if hparams is None else HParams(
        *(jnp.asarray(v) if ax is None else None for v, ax in zip(hparams, axes)))
    if num_devices > 1:
        key_data, per_run_hp = shard_runs((key_data, per_run_hp), mesh)
    hp = None if hparams is None else HParams(
        *(b if ax == 0 else s for b, s, ax in zip(per_run_hp, shared_hp, axes)))
    fn = make_train_seeds(config, axes, mesh=mesh if num_devices > 1 else None,
                          seeds_at_once=at_once)
    return SeedRuns(fn=fn, args=(key_data, hp), num_seeds=num_seeds, num_devices=num_devices)


def _key_data(keys) -> jax.Array:
    """``u32[n, 2]`` threefry key data of ``n >= 1`` keys, typed or legacy."""
    keys = keys if isinstance(keys, jax.Array) else jnp.asarray(keys)
    if jax.dtypes.issubdtype(keys.dtype, jax.dtypes.prng_key):
        if keys.ndim != 1:
            raise ValueError(f"keys must be a 1-D array of keys (one per run), got shape "
                             f"{keys.shape}")
        if str(jax.random.key_impl(keys)) != "threefry2x32":
            raise ValueError(f"keys use the {jax.random.key_impl(keys)} PRNG; runs expect "
                             "threefry2x32 keys (jax.random.key's default)")
        keys = jax.random.key_data(keys)
    elif keys.ndim != 2 or keys.shape[1] != 2 or keys.dtype != jnp.uint32:
        raise ValueError(f"keys must be typed keys of shape (n,) or legacy uint32 keys of shape "
                         f"(n, 2), got {keys.dtype}{list(keys.shape)}")
    if keys.shape[0] == 0:
        raise ValueError("keys is empty: runs need at least one key")
    return keys


def host_key_data(keys: jax.Array) -> np.ndarray:
    """``u32[n, 2]`` host key data of ``keys``: how every process of a multi-process run passes
    the same keys."""
    return np.asarray(_key_data(keys))


# ---------------------------------------------------------------------------------------------
# Runs in segments


class Runs(NamedTuple):
    """``num_seeds`` runs of one config, jitted in pieces and split across ``devices``.

    ``init(keys, hparams) -> RunnerState``; ``run(state, hparams, first_row, num_rows) ->
    (state, TrainMetrics[..., num_rows])`` (``num_rows`` static: each distinct value compiles
    once); ``evaluate(params, keys, num_episodes) -> f32[..., num_episodes]`` greedy returns.
    ``run`` consumes its state (donated: the new state is written into its buffers, so a device
    holds one copy of the runs' replay buffers, not two); read or save what you need of a state
    before passing it to ``run`` (``jax.device_get``, ``saved_state``).
    ``keys`` are ``num_seeds`` keys, typed or legacy (``seed_keys``, ``evaluation_keys``);
    ``hparams`` is None (the config's values, compiled in as constants), or an ``HParams`` of
    arrays ``[num_combinations]`` for a sweep group, whose states and outputs then carry the
    combinations axis before the seeds axis (``seed_axis`` 1).

    States and outputs of these functions hold the padded runs too (``padded_count``): read
    outputs with ``results``, save states with ``saved_state`` and load them with
    ``restored_state``, which see only the ``num_seeds`` real runs.
    """

    config: DQNConfig
    num_seeds: int
    devices: tuple[jax.Device, ...]
    seed_axis: int
    init: Callable[..., RunnerState]
    run: Callable[..., tuple[RunnerState, TrainMetrics]]
    evaluate: Callable[..., jax.Array]

    @property
    def num_padded(self) -> int:
        return padded_count(self.num_seeds, len(self.devices))

    def results(self, tree: Any) -> Any:
        """``tree`` (params, metrics, returns, ``BestParams``: the seed axis at ``seed_axis``) on
        the host without the padded runs."""
        return jax.tree.map(lambda x: _take_runs(x, self.seed_axis, self.num_seeds),
                            to_host(tree))

    def saved_state(self, state: RunnerState) -> RunnerState:
        """``state`` on the host without the padded runs: what a resume file holds."""
        return jax.tree.map(lambda d, x: _map_runs(x, d, self.num_seeds), self._state_dims,
                            to_host(state), is_leaf=lambda x: x is None)

    def restored_state(self, saved: RunnerState) -> RunnerState:
        """A ``saved_state`` padded again as ``init`` pads, still on the host (place it with
        ``parallel.place_as_output``)."""
        return jax.tree.map(lambda d, x: _map_runs(x, d, self.num_padded), self._state_dims,
                            saved, is_leaf=lambda x: x is None)

    def state_shape(self, keys: jax.Array, hparams: HParams | None) -> RunnerState:
        """The ``jax.ShapeDtypeStruct`` tree of a ``saved_state`` (no compilation): the template
        to read a resume file into."""
        padded = jax.eval_shape(self.init, keys, hparams)

        def real(d, x):
            def one(s):
                if d is None:
                    return s
                shape = (*s.shape[:d], self.num_seeds, *s.shape[d + 1:])
                return jax.ShapeDtypeStruct(shape, s.dtype)

            return jax.tree.map(one, x)

        return jax.tree.map(real, self._state_dims, padded, is_leaf=lambda x: x is None)

    @property
    def _state_dims(self) -> RunnerState:
        return _state_dims(self.seed_axis)


def _state_dims(seed_axis: int) -> RunnerState:
    """Where the seed axis sits in each part of a state (None: shared by all runs)."""
    return jax.tree.map(lambda ax: None if ax is None else seed_axis, RUNNER_STATE_AXES,
                        is_leaf=lambda x: x is None)


def _take_runs(x, axis: int, n: int):
    return x if x.shape[axis] == n else np.take(x, np.arange(n), axis=axis)


def _map_runs(tree, axis: int | None, n: int):
    """Every leaf of ``tree`` with ``n`` runs on ``axis``: cut, or padded by repeating the last."""
    if axis is None:
        return tree

    def resize(x):
        x = np.asarray(x)
        have = x.shape[axis]
        if have >= n:
            return _take_runs(x, axis, n)
        last = np.take(x, [have - 1], axis=axis)
        return np.concatenate([x, np.repeat(last, n - have, axis=axis)], axis=axis)

    return jax.tree.map(resize, tree)


def make_runs(config: DQNConfig, num_seeds: int, sweep: bool = False,
              devices: Sequence[jax.Device] | None = None) -> Runs:
    """Jitted init/run/evaluate of ``num_seeds`` runs of ``config``, vmapped over seeds, and over
    combinations first when ``sweep``. Each function compiles once per distinct argument shape.

    The runs are split across ``run_devices(num_seeds, devices)`` (default: every device, e.g.
    GPUs, or CPU cores exposed with ``jaxdqn.runtime.use_all_cpu_cores``), padded to a multiple
    of their count; each device runs its block of seeds for every combination, with no
    communication, and every run is the one a single device computes.
    """
    run_on = tuple(run_devices(num_seeds, devices))
    multiple = len(run_on)
    trainer = make_trainer(config)
    state_axes = RUNNER_STATE_AXES
    seed_axis = 1 if sweep else 0
    state_dims = _state_dims(seed_axis)

    def over_runs(fn, seed_axes, combo_axes, out_axes=0):
        fn = jax.vmap(fn, in_axes=seed_axes, out_axes=out_axes)
        return jax.vmap(fn, in_axes=combo_axes, out_axes=out_axes) if sweep else fn

    def on_devices(fn, in_dims, out_dims):
        return split_on_axis(fn, run_on, in_dims, out_dims)

    def init_runs(keys, hparams):
        key_data, _ = pad_runs(_key_data(keys), multiple)
        fn = over_runs(trainer.init, (0, None), (None, 0), state_axes)
        return on_devices(fn, (0, None), state_dims)(key_data, hparams)

    def run_rows(state, hparams, first_row, num_rows):
        def one(s, hp):
            return trainer.run(s, hp, first_row, num_rows)

        fn = over_runs(one, (state_axes, None), (state_axes, 0), (state_axes, 0))
        return on_devices(fn, (state_dims, None), (state_dims, seed_axis))(state, hparams)

    def evaluate_runs(params, keys, num_episodes):
        def one(p, k):
            return evaluate(config, p, k, num_episodes)

        params, _ = pad_runs(params, multiple, axis=seed_axis)
        key_data, _ = pad_runs(_key_data(keys), multiple)
        fn = over_runs(one, (0, 0), (0, None))
        return on_devices(fn, (seed_axis, 0), seed_axis)(params, key_data)

    return Runs(
        config=config, num_seeds=num_seeds, devices=run_on, seed_axis=seed_axis,
        init=jax.jit(init_runs),
        run=jax.jit(run_rows, static_argnums=3, donate_argnums=0,
                    compiler_options=compiler_options(config)),
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
    """Consecutive metric rows of some runs, as ``run_in_segments`` yields them."""

    state: RunnerState  # after the segment, padded runs included; consumed by the next segment
    metrics: TrainMetrics  # numpy, the real runs: leading run axes then [segment_rows]
    rows_done: int  # metric rows done after the segment, counted from the run's start
    runs: Runs  # the runs it belongs to

    def saved_state(self) -> RunnerState:
        """``state`` as a resume file holds it (``Runs.saved_state``)."""
        return self.runs.saved_state(self.state)


def run_in_segments(runs: Runs, state: RunnerState, hparams: HParams | None, first_row: int,
                    segment_rows: int) -> Iterator[Segment]:
    """Runs rows ``first_row ..`` to the end in segments of ``segment_rows``, yielding after each.

    ``state`` and each yielded segment's state are consumed by the next segment (``Runs.run``
    donates its state), so a device never holds two copies of the runs: read, save or copy a
    segment's state before the iteration continues. That is why segment k+1 is dispatched only
    when the caller asks for it, after it has handled segment k (its metrics shown, logged, a
    stop saved): every yielded state is a consistent place to save or resume from, and stopping
    the iteration loses nothing. The device waits for the host in between (metrics read back,
    the caller's work): about 0.5 ms a segment with ``jaxdqn train``'s progress display.
    """
    num_rows = runs.config.num_log_rows
    if (num_rows - first_row) % segment_rows:
        raise ValueError(f"segment_rows={segment_rows} must divide the {num_rows - first_row} "
                         "rows left")
    for row in range(first_row, num_rows, segment_rows):
        state, metrics = runs.run(state, hparams, row, segment_rows)
        yield Segment(state=state, metrics=TrainMetrics(*runs.results(tuple(metrics))),
                      rows_done=row + segment_rows, runs=runs)


def concat_metrics(segments: Sequence[TrainMetrics], num_run_axes: int) -> TrainMetrics:
    """Joins segments of metric rows along the row axis (after ``num_run_axes`` run axes)."""
    return TrainMetrics(*(None if parts[0] is None else np.concatenate(parts, axis=num_run_axes)
                          for parts in zip(*segments)))


__all__ = [
    "AFTER_TRAINING",
    "EVAL_STREAM",
    "Runs",
    "SeedRuns",
    "Segment",
    "concat_metrics",
    "evaluation_keys",
    "even_round_size",
    "host_key_data",
    "hparams_axes",
    "make_runs",
    "make_train_seeds",
    "padded_count",
    "plan_train_seeds",
    "rows_per_segment",
    "run_devices",
    "run_in_segments",
    "seed_keys",
    "train_seeds",
]
