"""Many runs at once: where the seed axis of a batch of runs is split across devices, and in batches.

``train_seeds(config, keys, hparams)`` computes ``jax.jit(jax.vmap(make_train(config)))(keys,
hparams)`` and adds what a user should not have to write:

- with several devices (GPUs, TPU cores, or CPU devices forced with
  ``XLA_FLAGS=--xla_force_host_platform_device_count=N``) the runs are split across them with
  ``jax.shard_map`` over a one-axis ``Mesh``; runs are independent, so the program has no
  communication at all;
- ``seeds_at_once`` bounds how many runs a device holds at once (``lax.map`` over equal batches
  of a ``vmap``), trading parallelism for memory (it was ``seeds_per_chunk``, still accepted);
- the memory the runs need is checked against the devices before compiling (``jaxdqn.memory``).

Every run is computed as it is in a plain ``vmap``: results do not depend on the device count or
on ``seeds_at_once``, bit for bit wherever XLA picks the same kernels for the per-device batch (see
``train_seeds`` and ``tests/test_parallel.py``). ``sharded_vmap`` and
``shard_batch`` are the same machinery for any function batched on a leading axis (a sweep over
``Trainer.run`` segments, an evaluation of many parameter sets).

Multi-host: call ``jaxdqn.runtime.start_distributed()`` (``jax.distributed.initialize()``) in
every process before anything else (``tests/test_distributed.py``); the
default mesh then spans the devices of all processes, every process calls ``train_seeds`` with
the same keys and hparams, and ``to_host`` gathers the results onto every process.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from jaxdqn.config import DQNConfig
from jaxdqn.runtime import compiler_options
from jaxdqn.train import HParams, TrainOutput, make_train

SEED_AXIS = "seeds"


def seed_mesh(devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A one-axis mesh named ``SEED_AXIS`` over ``devices`` (default: all devices of all
    processes)."""
    devices = jax.devices() if devices is None else list(devices)
    if not devices:
        raise ValueError("devices is empty: a seed mesh needs at least one device")
    return Mesh(np.asarray(devices), (SEED_AXIS,))


def devices_for(num_runs: int, devices: Sequence[jax.Device] | None = None) -> list[jax.Device]:
    """The first ``d`` of ``devices`` (default: this process's) for ``num_runs`` runs, ``d`` the
    largest count that divides ``num_runs``: the runs split evenly, with no padded, wasted runs.
    8 runs on 2 devices use both; 3 runs on 2 devices use one."""
    devices = jax.local_devices() if devices is None else list(devices)
    d = max(k for k in range(1, min(len(devices), num_runs) + 1) if num_runs % k == 0)
    return devices[:d]


def split_on_axis(fn: Callable, devices: Sequence[jax.Device], in_dims: Any,
                  out_dims: Any) -> Callable:
    """``fn`` (already batched) run on its runs axis split across ``devices``, one block each.

    ``in_dims``/``out_dims`` are pytree prefixes of ``fn``'s arguments/outputs giving, at each
    node, the position of the runs axis, or ``None`` for values every device holds whole (shared
    inputs; outputs that are equal on every device, such as a buffer's write position). The body
    communicates nothing (``jax.shard_map``); with one device ``fn`` is returned as is.
    """
    if len(devices) == 1:
        return fn
    mesh = seed_mesh(devices)

    def specs(dims):
        return jax.tree.map(
            lambda d: PartitionSpec() if d is None else PartitionSpec(*(None,) * d, SEED_AXIS),
            dims, is_leaf=lambda x: x is None)

    # check_vma=False: the body communicates nothing, and with the check on, a scan whose carry
    # starts from constants (zeros) and becomes per-device data is a type error.
    return jax.shard_map(fn, mesh=mesh, in_specs=specs(in_dims), out_specs=specs(out_dims),
                         check_vma=False)


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Leading axis split across ``mesh``'s devices, every other axis whole."""
    return NamedSharding(mesh, PartitionSpec(SEED_AXIS))


def shard_batch(tree: Any, mesh: Mesh) -> Any:
    """Places every leaf's leading axis across ``mesh``'s devices, one contiguous block each.

    Leading sizes must be multiples of the device count (``pad_batch`` makes them so). With
    several processes every process passes the same values and keeps only its own blocks.
    """
    num_devices = mesh.devices.size
    sharding = batch_sharding(mesh)

    def place(x):
        x = x if isinstance(x, jax.Array) else np.asarray(x)
        if x.ndim == 0 or x.shape[0] % num_devices:
            raise ValueError(f"cannot split a leading axis of shape {x.shape} across {num_devices} "
                             f"devices: its size must be a multiple of {num_devices}")
        if jax.process_count() == 1:
            return jax.device_put(x, sharding)
        host = np.asarray(x)
        return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])

    return jax.tree.map(place, tree)


def place_as_output(saved: Any, fn: Callable, *args: Any) -> Any:
    """``saved`` (host arrays, e.g. a loaded resume state) placed as the jitted ``fn(*args)``
    places its output, read from the compiled ``fn`` without running it (no second copy of a
    state that may be most of a device's memory). A loop that feeds its output back in, e.g.
    training in segments, then sees one placement and compiles once."""
    return jax.tree.map(jax.device_put, saved, fn.lower(*args).compile().output_shardings)


def pad_batch(tree: Any, multiple: int) -> tuple[Any, int]:
    """``(padded, n)``: every leaf's leading axis padded to a multiple of ``multiple`` by repeating
    its last entry; ``n`` is the original size. The extra entries are real, discarded work."""
    sizes = {x.shape[0] for x in jax.tree.leaves(tree)}
    if len(sizes) != 1:
        raise ValueError(f"batched leaves disagree on the leading axis size: {sorted(sizes)}")
    (n,) = sizes
    extra = -n % multiple
    if extra == 0:
        return tree, n
    return jax.tree.map(lambda x: jnp.concatenate([x, jnp.repeat(x[-1:], extra, axis=0)]), tree), n


def to_host(tree: Any) -> Any:
    """Every leaf as a NumPy array on this host, gathered from all processes where needed."""

    def fetch(x):
        if isinstance(x, jax.Array) and not x.is_fully_addressable:
            return np.asarray(multihost_utils.process_allgather(x, tiled=True))
        return np.asarray(x)

    return jax.tree.map(fetch, tree)


def sharded_vmap(fn: Callable, mesh: Mesh | None = None, in_axes: Any = 0,
                 batch_size: int | None = None) -> Callable:
    """``jax.vmap(fn, in_axes)`` whose mapped axis is split across ``mesh``'s devices.

    ``in_axes`` is a pytree prefix of the arguments with ``0`` (batched on the leading axis) or
    ``None`` (shared) at each node; outputs are batched on their leading axis. Each device runs
    ``vmap(fn)`` on its contiguous block (``jax.shard_map``; no communication), in sequential
    batches of ``batch_size`` entries when given (``lax.map``). With ``mesh=None`` or a one-device
    mesh no sharding is involved. Jit the result; batched sizes must be multiples of the device
    count.
    """
    if batch_size is not None and batch_size < 1:
        raise ValueError(f"batch_size={batch_size!r} is invalid: must be a positive int or None")

    def local(*args):
        axes = _full_axes(in_axes, args)
        if batch_size is None and _leading_size(axes, args) == 1:
            # One run: the unbatched program, which XLA:CPU compiles ~1.5 s faster for a training
            # loop (it equals the vmapped one up to kernel choice; see train_seeds).
            squeezed = jax.tree.map(lambda ax, x: x if ax is None else x[0], axes, args,
                                    is_leaf=lambda x: x is None)
            return jax.tree.map(lambda y: y[None], fn(*squeezed))
        if batch_size is None:
            return jax.vmap(fn, in_axes=axes)(*args)
        # lax.map maps every leaf it is given: split batched leaves from shared ones.
        batched = jax.tree.map(lambda ax, x: x if ax == 0 else None, axes, args,
                               is_leaf=lambda x: x is None)
        shared = jax.tree.map(lambda ax, x: None if ax == 0 else x, axes, args,
                              is_leaf=lambda x: x is None)

        def one(batched_args):
            merged = jax.tree.map(lambda b, s: s if b is None else b, batched_args, shared,
                                  is_leaf=lambda x: x is None)
            return fn(*merged)

        return jax.lax.map(one, batched, batch_size=batch_size)

    if mesh is None or mesh.devices.size == 1:
        return local

    def mapped(*args):
        return split_on_axis(local, list(mesh.devices.flat), _full_axes(in_axes, args), 0)(*args)

    return mapped


def _leading_size(axes: Any, args: tuple) -> int | None:
    sizes = {x.shape[0] for ax, x in zip(jax.tree.leaves(axes, is_leaf=lambda x: x is None),
                                         jax.tree.leaves(args)) if ax == 0}
    return sizes.pop() if len(sizes) == 1 else None


def _full_axes(in_axes: Any, args: tuple) -> tuple:
    """``in_axes`` broadcast to one entry (0 or None) per leaf of ``args``."""
    prefix = in_axes if isinstance(in_axes, tuple) else (in_axes,) * len(args)
    if len(prefix) != len(args):
        raise ValueError(f"in_axes has {len(prefix)} entries for {len(args)} arguments")
    full = jax.tree.broadcast(prefix, args, is_leaf=lambda x: x is None)
    bad = [ax for ax in jax.tree.leaves(full, is_leaf=lambda x: x is None) if ax not in (0, None)]
    if bad:
        raise ValueError(f"in_axes entries must be 0 or None, got {bad[0]!r}")
    return full


def hparams_axes(hparams: HParams | None) -> HParams | None:
    """0 for each field given per run (leading axis), None for each shared scalar."""
    if hparams is None:
        return None
    return HParams(*(None if jnp.ndim(v) == 0 else 0 for v in hparams))


def make_train_seeds(config: DQNConfig, hp_axes: HParams | None = None, *,
                     mesh: Mesh | None = None, seeds_at_once: int | None = None,
                     **deprecated) -> Callable:
    """The jitted ``fn(key_data, hparams) -> TrainOutput`` behind ``train_seeds``.

    ``key_data`` is ``u32[num_seeds, 2]`` (``jax.random.key_data`` of threefry keys), sharded
    across ``mesh`` with ``shard_batch``; ``hp_axes`` says which ``hparams`` fields are per run
    (see ``hparams_axes``); ``hparams=None`` trains with the config's values. Cached per
    arguments, so repeated calls reuse the compiled program.
    """
    seeds_at_once = _seeds_at_once(deprecated, seeds_at_once, "make_train_seeds")
    return _make_train_seeds(config, hp_axes, mesh, seeds_at_once)


def _seeds_at_once(deprecated: dict, value, where: str):
    """``seeds_at_once``, or the deprecated ``seeds_per_chunk`` keyword."""
    from jaxdqn.deprecation import renamed_kwarg

    value = renamed_kwarg(deprecated, "seeds_per_chunk", "seeds_at_once", value, where)
    if deprecated:
        raise TypeError(f"{where}() got an unexpected keyword argument {next(iter(deprecated))!r}")
    return value


@functools.lru_cache(maxsize=32)
def _make_train_seeds(config, hp_axes, mesh, seeds_at_once):
    train = make_train(config)

    def one(key_data, hparams):
        return train(jax.random.wrap_key_data(key_data), hparams)

    fn = sharded_vmap(one, mesh, in_axes=(0, hp_axes), batch_size=seeds_at_once)
    return jax.jit(fn, compiler_options=compiler_options(config))


class SeedRuns(NamedTuple):
    """A batch of runs placed on its devices, ready to compile and run (``plan_train_seeds``).

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
                check_memory: bool = True, **deprecated) -> TrainOutput:
    """One independent run per key, split across ``devices`` (default: all), as one program.

    ``keys``: ``num_seeds`` keys (``jax.random.split(jax.random.key(s), n)``, or legacy
    ``u32[n, 2]`` ones); ``hparams``: an ``HParams`` whose fields are scalars (shared) or arrays
    with leading axis ``num_seeds`` (one value per run, a sweep), or None for the config's values.
    Returns a ``TrainOutput`` whose leaves have leading axis ``num_seeds``, equal to
    ``jax.jit(jax.vmap(make_train(config)))(keys, hparams)`` (see below). With several devices
    the runs are padded to a multiple of the device count, and with ``seeds_at_once`` to equal
    batches (``even_batch_size``); the extra runs are discarded. Raises ``ValueError`` before compiling
    when the runs will not fit in device memory (``jaxdqn.memory``).

    Equality: each run's program is the same whatever the device count or ``seeds_at_once``, and results
    are bit for bit those of the plain vmap wherever XLA picks the same kernels for the per-device
    batch. It may not for a batch of one (run unbatched) or for tiny layers (kernel choice by
    size); then results differ in the last bits, and the logged Q means (a reduction) can differ
    in the last bit under any partitioning. See ``tests/test_parallel.py``.
    """
    seeds_at_once = _seeds_at_once(deprecated, seeds_at_once, "train_seeds")
    runs = plan_train_seeds(config, keys, hparams, devices=devices,
                            seeds_at_once=seeds_at_once, check_memory=check_memory)
    return runs.finish(runs.fn(*runs.args))


def plan_train_seeds(config: DQNConfig, keys: jax.Array, hparams: HParams | None = None, *,
                     devices: Sequence[jax.Device] | None = None,
                     seeds_at_once: int | None = None, check_memory: bool = True,
                     **deprecated) -> SeedRuns:
    """``train_seeds`` up to the call: arguments checked and placed, memory checked, the jitted
    program chosen. Nothing is compiled."""
    seeds_at_once = _seeds_at_once(deprecated, seeds_at_once, "plan_train_seeds")
    key_data = _key_data(keys)
    num_seeds = key_data.shape[0]
    if seeds_at_once is not None and (not isinstance(seeds_at_once, int)
                                      or isinstance(seeds_at_once, bool)
                                      or seeds_at_once < 1):
        raise ValueError(f"seeds_at_once={seeds_at_once!r} is invalid: "
                         "must be a positive int or None")
    axes = hparams_axes(hparams)
    if hparams is not None:
        sizes = {jnp.shape(v)[0] for v, ax in zip(hparams, axes) if ax == 0}
        if sizes - {num_seeds}:
            raise ValueError(f"hparams fields given per run must have leading size "
                             f"num_seeds={num_seeds}, got sizes {sorted(sizes)}")
    devices = jax.devices() if devices is None else list(devices)
    if jax.process_count() == 1:  # fewer runs than devices: one run per device
        devices = devices[:num_seeds]
    mesh = seed_mesh(devices)
    num_devices = mesh.devices.size
    if check_memory:
        from jaxdqn.memory import check_fits  # memory imports train; keep this module light

        check_fits(config, num_seeds, devices=list(mesh.devices.flat),
                   seeds_at_once=seeds_at_once)
    batched_hp = None if hparams is None else HParams(
        *(jnp.asarray(v) if ax == 0 else None for v, ax in zip(hparams, axes)))
    per_device = -(-num_seeds // num_devices)
    at_once = None if seeds_at_once is None else even_batch_size(per_device, seeds_at_once)
    (key_data, batched_hp), _ = pad_batch((key_data, batched_hp),
                                          num_devices * (at_once or 1))
    shared_hp = None if hparams is None else HParams(
        *(jnp.asarray(v) if ax is None else None for v, ax in zip(hparams, axes)))
    if num_devices > 1:
        key_data, batched_hp = shard_batch((key_data, batched_hp), mesh)
    hp = None if hparams is None else HParams(
        *(b if ax == 0 else s for b, s, ax in zip(batched_hp, shared_hp, axes)))
    fn = make_train_seeds(config, axes, mesh=mesh if num_devices > 1 else None,
                          seeds_at_once=at_once)
    return SeedRuns(fn=fn, args=(key_data, hp), num_seeds=num_seeds, num_devices=num_devices)


def even_batch_size(runs: int, max_size: int) -> int:
    """The batch size that splits ``runs`` into as few batches of at most ``max_size`` as possible,
    all equal after padding: ``100`` runs at most ``16`` at a time run as 7 batches of 15."""
    num_batches = -(-runs // max_size)
    return -(-runs // num_batches)


def even_chunk(runs: int, max_chunk: int) -> int:
    """Deprecated name of ``even_batch_size``."""
    from jaxdqn.deprecation import warn_renamed

    warn_renamed("jaxdqn.parallel.even_chunk", "even_batch_size")
    return even_batch_size(runs, max_chunk)


def _key_data(keys) -> jax.Array:
    """``u32[n, 2]`` threefry key data of ``n >= 1`` keys, typed or legacy."""
    keys = keys if isinstance(keys, jax.Array) else jnp.asarray(keys)
    if jax.dtypes.issubdtype(keys.dtype, jax.dtypes.prng_key):
        if keys.ndim != 1:
            raise ValueError(f"keys must be a 1-D array of keys (one per run), got shape "
                             f"{keys.shape}")
        if str(jax.random.key_impl(keys)) != "threefry2x32":
            raise ValueError(f"keys use the {jax.random.key_impl(keys)} PRNG; train_seeds "
                             "expects threefry2x32 keys (jax.random.key's default)")
        keys = jax.random.key_data(keys)
    elif keys.ndim != 2 or keys.shape[1] != 2 or keys.dtype != jnp.uint32:
        raise ValueError(f"keys must be typed keys of shape (n,) or legacy uint32 keys of shape "
                         f"(n, 2), got {keys.dtype}{list(keys.shape)}")
    if keys.shape[0] == 0:
        raise ValueError("keys is empty: train_seeds needs at least one key")
    return keys
