"""Device mechanics for runs batched on an axis: a one-axis mesh, a function split across it
with no communication, placing, padding and gathering arrays.

With several devices (GPUs, TPU cores, or CPU devices forced with
``XLA_FLAGS=--xla_force_host_platform_device_count=N``) a function already vmapped over runs is
split across them with ``jax.shard_map`` over a one-axis ``Mesh``; runs are independent, so the
program has no communication at all. ``jaxdqn.runs`` decides which devices and how many runs;
this module only carries that out.

Multi-host: the default mesh spans the devices of all processes; every process passes the same
values and ``to_host`` gathers the results onto every process.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec

SEED_AXIS = "seeds"


def seed_mesh(devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A one-axis mesh named ``SEED_AXIS`` over ``devices`` (default: all devices of all
    processes)."""
    devices = jax.devices() if devices is None else list(devices)
    if not devices:
        raise ValueError("devices is empty: a seed mesh needs at least one device")
    return Mesh(np.asarray(devices), (SEED_AXIS,))


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


def runs_sharding(mesh: Mesh) -> NamedSharding:
    """Leading axis split across ``mesh``'s devices, every other axis whole."""
    return NamedSharding(mesh, PartitionSpec(SEED_AXIS))


def shard_runs(tree: Any, mesh: Mesh) -> Any:
    """Places every leaf's leading axis across ``mesh``'s devices, one contiguous block each.

    Leading sizes must be multiples of the device count (``pad_runs`` makes them so). With
    several processes every process passes the same values and keeps only its own blocks.
    """
    num_devices = mesh.devices.size
    sharding = runs_sharding(mesh)

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


def pad_runs(tree: Any, multiple: int, axis: int = 0) -> tuple[Any, int]:
    """``(padded, n)``: every leaf's runs axis ``axis`` padded to a multiple of ``multiple`` by
    repeating its last run; ``n`` is the original count. The extra runs are real, discarded
    work."""
    sizes = {x.shape[axis] for x in jax.tree.leaves(tree)}
    if len(sizes) != 1:
        raise ValueError(f"leaves disagree on the size of runs axis {axis}: {sorted(sizes)}")
    (n,) = sizes
    extra = -n % multiple
    if extra == 0:
        return tree, n

    def pad(x):
        last = jax.lax.slice_in_dim(x, n - 1, n, axis=axis)
        return jnp.concatenate([x, jnp.repeat(last, extra, axis=axis)], axis=axis)

    return jax.tree.map(pad, tree), n


def to_host(tree: Any) -> Any:
    """Every leaf as a NumPy array on this host, gathered from all processes where needed."""

    def fetch(x):
        if isinstance(x, jax.Array) and not x.is_fully_addressable:
            return np.asarray(multihost_utils.process_allgather(x, tiled=True))
        return np.asarray(x)

    return jax.tree.map(fetch, tree)


def sharded_vmap(fn: Callable, mesh: Mesh | None = None, in_axes: Any = 0,
                 at_once: int | None = None) -> Callable:
    """``jax.vmap(fn, in_axes)`` whose mapped axis is split across ``mesh``'s devices.

    ``in_axes`` is a pytree prefix of the arguments with ``0`` (batched on the leading axis) or
    ``None`` (shared) at each node; outputs are batched on their leading axis. Each device runs
    ``vmap(fn)`` on its contiguous block (``jax.shard_map``; no communication), ``at_once``
    entries at a time in sequential rounds when given (``lax.map``). With ``mesh=None`` or a
    one-device mesh no sharding is involved. Jit the result; batched sizes must be multiples of
    the device count.
    """
    if at_once is not None and at_once < 1:
        raise ValueError(f"at_once={at_once!r} is invalid: must be a positive int or None")

    def local(*args):
        axes = _full_axes(in_axes, args)
        if at_once is None and _leading_size(axes, args) == 1:
            # One run: the unbatched program, which XLA:CPU compiles ~1.5 s faster for a training
            # loop (it equals the vmapped one up to kernel choice; see runs.train_seeds).
            squeezed = jax.tree.map(lambda ax, x: x if ax is None else x[0], axes, args,
                                    is_leaf=lambda x: x is None)
            return jax.tree.map(lambda y: y[None], fn(*squeezed))
        if at_once is None:
            return jax.vmap(fn, in_axes=axes)(*args)
        # lax.map maps every leaf it is given: split per-run leaves from shared ones.
        batched = jax.tree.map(lambda ax, x: x if ax == 0 else None, axes, args,
                               is_leaf=lambda x: x is None)
        shared = jax.tree.map(lambda ax, x: None if ax == 0 else x, axes, args,
                              is_leaf=lambda x: x is None)

        def one(batched_args):
            merged = jax.tree.map(lambda b, s: s if b is None else b, batched_args, shared,
                                  is_leaf=lambda x: x is None)
            return fn(*merged)

        return jax.lax.map(one, batched, batch_size=at_once)

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
