"""Memory of a group of runs: where it is estimated from the config alone, before compiling, and
checked against what the devices have free.

The estimate predicts XLA's own figure, ``compiled.memory_analysis()``'s arguments + outputs +
temporaries - aliased bytes, of the two programs that train runs: the whole run as one program
(``runs.train_seeds``: ``device_bytes``) and a segment of it with its state donated (``jaxdqn
train``/``sweep``, ``runs.Runs.run``: ``segments_bytes``). A run's carried state (replay buffer,
networks, optimizer, env copies, whatever a new option adds) and its outputs are known exactly
from ``jax.eval_shape`` of the trainer's ``init`` and ``train``; only the temporaries XLA adds
(the gradient step's activations and gradients, the sampled minibatch, a distributional head's
``[batch, K, K]`` loss, the env step's temporaries, a member trained at random copied when one
run is alone) are modelled, with coefficients fitted to XLA:CPU's buffer assignment. As one
program the final params are the carried state's buffers: only the metric rows are added.
``tests/test_memory_xla.py`` compares both figures with XLA's over a grid of configs (compile
only) and ``scripts/memory_analysis.py`` prints them for any config.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp

from jaxdqn.buffer import buffer_init
from jaxdqn.config import DQNConfig
from jaxdqn.distributional import HEADS
from jaxdqn.envs import env_spec
from jaxdqn.estimators import ESTIMATORS
from jaxdqn.networks import network_kind
from jaxdqn.train import loop_unrolls, make_trainer

# Only this fraction of a device's free memory is planned for: allocator fragmentation, the
# compiled program and library workspaces (cuBLAS, XLA's scratch) take the rest.
USABLE_FRACTION = 0.9
# Fixed per-device allowance for the program's small buffers (keys, scalars, loop counters).
FIXED_BYTES = 64 << 10
# Temporaries in units of one trained network's parameters, fitted to XLA:CPU's buffer assignment
# (tests/test_memory_xla.py): a gradient step's gradients, Adam's update and new moments.
WORKSPACE_PARAMS = 1.2
# With one run alone on a device, the copies of the member trained at random (estimate_memory), in
# one member's parameters (XLA:CPU's segment program: 8.5-9 more than per run with two runs; the
# fit over the grid, together with WORKSPACE_PARAMS, takes 5).
ONE_RUN_PICK = 5
# Activations of the target network's pass on s (``Estimator.reads_current``: Munchausen's bonus),
# in passes: XLA:CPU reuses buffers of the pass on s' for part of it (0: 1 run -1%, 8 runs -9%,
# batch 256 -6%; 1: +17%, +9%, +13%).
READS_CURRENT_PASS = 0.5
# A distributional head's loss compares K values with K per sample: temporaries of this many
# f32[batch, K, K] arrays, fitted to XLA:CPU (1 to 3 runs, batch 32 and 128, K = 51 and 200):
# C51's projection weights (its target carries no gradient: 0.85x at batch 32, 1.13x at 128),
# QR-DQN's pairwise errors and quantile Huber loss, forward and backward (5.0x).
PAIRWISE_ARRAYS = {"c51": 1.05, "qr": 5.0}
# Noisy nets with several networks: the perturbed weights (means + sigma * noise) XLA:CPU holds per
# run, in one network's mean weights, fitted on a CartPole MLP (1 and 3 runs): 4.5 when one member
# chosen at random trains (double_q 4.0-5.5, maxmin N=3 4.5-5.0), else 1.5 per network beyond the
# first (clipped_double 1.0-1.3, averaged N=2 1.3-2.2, maxmin N=3 updating all 2.5-3.4). One
# network (dqn, double_dqn): within 0.5, not modelled.
NOISY_RANDOM_MEMBER = 4.5
NOISY_PER_NETWORK = 1.5
# ... and with one run alone and a member trained at random, this many more per other member
# (maxmin N=3 alone: 10 in all; double_q: 5.5).
NOISY_ALONE = 3


class MemoryEstimate(NamedTuple):
    """Bytes of a group of runs; the per-run fields are for one run.

    ``device_bytes`` is what the busiest device needs for the whole runs as one program:
    ``concurrent_runs`` runs' state and workspace at once, plus the results of all
    ``runs_per_device`` runs it holds. ``segments_bytes`` is what it needs for the segment program
    (all its runs at once, the state donated: one copy of it; the results are the state's own).
    """

    num_seeds: int
    num_devices: int
    runs_per_device: int  # ceil(num_seeds / num_devices): padded runs included
    concurrent_runs: int  # runs a device holds at once: min(runs_per_device, seeds_at_once)
    transition_bytes: int  # one stored transition (s, a, r, terminated, s')
    buffer_bytes: int  # buffer_size * transition_bytes, exactly
    state_bytes: int  # everything a run carries, buffer included, exactly
    workspace_bytes: int  # temporaries of one gradient step and one env step (a model)
    output_bytes: int  # final params and metrics rows
    metrics_bytes: int  # the metrics rows: all that one program's output adds to the state
    device_bytes: int
    segments_bytes: int

    @property
    def run_bytes(self) -> int:
        """One running run: state plus workspace."""
        return self.state_bytes + self.workspace_bytes


def _nbytes(tree) -> int:
    return sum(math.prod(x.shape) * jnp.dtype(x.dtype).itemsize for x in jax.tree.leaves(tree))


def transition_bytes(config: DQNConfig) -> int:
    """Bytes of one stored transition: obs, action, reward, terminated and next obs, the
    observations in the env's own dtype (1 byte per cell for MinAtar's booleans), and the
    options' leaves: ``truncated`` with ``n_step > 1``, step and behaviour probability with
    ``buffer_age_metrics``."""
    spec = env_spec(config)
    one = jax.eval_shape(lambda: buffer_init(1, spec.obs_shape, spec.obs_dtype,
                                             truncated=config.n_step > 1,
                                             behaviour=config.buffer_age_metrics))
    return _nbytes(one.data)


def _conv_widths(config: DQNConfig, obs_shape: tuple[int, ...]) -> int:
    """Per-sample activations of the CNN's convolutions: each one's patches and outputs."""
    if len(obs_shape) != 3 or network_kind(config) != "cnn":
        return 0
    (h, w, c), k, total = obs_shape, config.conv_kernel_size, 0
    for c_out in config.conv_channels:
        h, w = h - k + 1, w - k + 1
        total += h * w * (k * k * c + c_out)
        c = c_out
    return total


def _noisy_networks(config: DQNConfig) -> float:
    """Perturbed copies of one network's mean weights a noisy gradient step holds beyond a
    single network's (``NOISY_RANDOM_MEMBER``, ``NOISY_PER_NETWORK``)."""
    if config.trained_members == "random":
        return NOISY_RANDOM_MEMBER
    networks = config.ensemble_size if ESTIMATORS[config.estimator].snapshots else (
        config.num_members)
    return NOISY_PER_NETWORK * (networks - 1)


def _mean_weight_bytes(params) -> int:
    """Bytes of ``params`` but a noisy layer's ``sigma_*`` leaves (all members)."""
    leaves = jax.tree_util.tree_flatten_with_path(params)[0]
    return sum(math.prod(x.shape) * jnp.dtype(x.dtype).itemsize for path, x in leaves
               if not str(getattr(path[-1], "key", "")).startswith("sigma"))


def _passes(config: DQNConfig) -> tuple[int, int, int]:
    """``(on s' by the targets, on s by the targets, the online networks' on s' and s)``: the
    forward passes over one minibatch in a gradient step (``network_passes``)."""
    estimator, m = ESTIMATORS[config.estimator], config.num_members
    target = config.ensemble_size if estimator.snapshots else m
    current = target if estimator.reads_current else 0
    online_next = {"none": 0, "first": 1, "every": m}[estimator.online_next]
    trained = 1 if config.trained_members == "random" else m
    return target, current, online_next + trained


def network_passes(config: DQNConfig) -> int:
    """Forward passes over one minibatch in a gradient step (see ``update.make_td_update``): the
    target networks on s' (one per member, or per snapshot), and on s where the target reads them
    there (``Estimator.reads_current``), the online networks on s' that the estimator's target
    reads (``Estimator.online_next``), and the online networks trained on s."""
    return sum(_passes(config))


def check_seeds_at_once(seeds_at_once) -> None:
    """Raises ``ValueError`` unless ``seeds_at_once`` is a positive int or None."""
    if seeds_at_once is not None and (not isinstance(seeds_at_once, int)
                                      or isinstance(seeds_at_once, bool)
                                      or seeds_at_once < 1):
        raise ValueError(f"seeds_at_once={seeds_at_once!r} is invalid: "
                         "must be a positive int or None")


def estimate_memory(config: DQNConfig, num_seeds: int, num_devices: int = 1,
                    seeds_at_once: int | None = None) -> MemoryEstimate:
    """The memory ``num_seeds`` runs of ``config`` need, split over ``num_devices`` devices (each
    holding ``ceil(num_seeds / num_devices)``, padded runs included) and run ``seeds_at_once`` at
    a time per device (None: all at once). No compilation."""
    for name, value in (("num_seeds", num_seeds), ("num_devices", num_devices)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name}={value!r} is invalid: must be a positive int")
    check_seeds_at_once(seeds_at_once)
    spec = env_spec(config)
    obs_shape, num_actions = spec.obs_shape, spec.num_actions
    trainer = make_trainer(config)
    key = jax.ShapeDtypeStruct((2,), jnp.uint32)
    state = jax.eval_shape(trainer.init, key)
    output = jax.eval_shape(trainer.train, key)
    step_bytes = transition_bytes(config)
    buffer = _nbytes(state.buffer.data)
    params = _nbytes(state.train.params)
    obs_dim = math.prod(obs_shape)
    atoms = HEADS[config.distributional].size(config)  # values per action (0: one Q-value)
    widths = (obs_dim + _conv_widths(config, obs_shape) + sum(config.hidden_sizes)
              + num_actions * max(atoms, 1))
    # A gradient step: the sampled minibatch, per network pass (_passes; the targets' on s count
    # READS_CURRENT_PASS each) one set of activations, and WORKSPACE_PARAMS copies of the trained
    # networks' parameters (gradients, Adam's update and moments). The env step's temporaries are
    # about one copy of the env-facing state. The segment program, its state donated, holds the
    # same temporaries.
    target, current, online = _passes(config)
    passes = target + READS_CURRENT_PASS * current + online
    member_params = params // config.num_members
    trained_params = member_params * (1 if config.trained_members == "random"
                                      else config.num_members)
    update = (config.batch_size * step_bytes
              + int(passes * config.batch_size * widths * 4)
              + int(WORKSPACE_PARAMS * trained_params))
    if atoms:
        update += int(PAIRWISE_ARRAYS[config.distributional] * config.batch_size * atoms**2 * 4)
    if config.noisy:
        update += int(_noisy_networks(config) * _mean_weight_bytes(state.train.params)
                      // config.num_members)
    acting = 2 * config.num_envs * widths * 4 + 2 * _nbytes(
        (state.env_state, state.obs, state.episode_return, state.episode_length))
    workspace = update + acting
    # Iterations unrolled into one loop trip (scan_unroll): XLA no longer stores every
    # iteration's transitions in place; it holds about 1 - 1/k of a copy of the replay buffer
    # (XLA:CPU, k = 2 and 4, CartPole MLP and MinAtar CNN).
    iterations = loop_unrolls(config)[0]
    if iterations > 1:
        workspace += int((1 - 1 / iterations) * _nbytes(state.buffer))
    runs_per_device = -(-num_seeds // num_devices)
    concurrent = runs_per_device if seeds_at_once is None else min(seeds_at_once,
                                                                   runs_per_device)
    out_bytes = _nbytes(output)
    # As one program the final params and best params are the carried state's own buffers, and
    # only the metric rows are new; in batches every batch's results are held and copied once
    # more where the batches are concatenated.
    metrics = _nbytes(output.metrics)
    results = (runs_per_device * metrics if seeds_at_once is None
               else 2 * runs_per_device * out_bytes)
    # One run alone on a device: XLA:CPU's program for it holds copies of the member trained at
    # random (its params, optimizer state, gradients, picked from and put back into the [M, ...]
    # trees) that it does not hold per run with two or more runs.
    alone = ONE_RUN_PICK * member_params if config.trained_members == "random" else 0
    if config.noisy and config.trained_members == "random":  # and of the other members' draws
        alone += int(NOISY_ALONE * (config.num_members - 1)
                     * _mean_weight_bytes(state.train.params) // config.num_members)
    device = (concurrent * (_nbytes(state) + workspace) + results + FIXED_BYTES
              + alone * (concurrent == 1))
    segments = (runs_per_device * (_nbytes(state) + workspace) + FIXED_BYTES
                + alone * (runs_per_device == 1))
    return MemoryEstimate(
        num_seeds=num_seeds, num_devices=num_devices, runs_per_device=runs_per_device,
        concurrent_runs=concurrent, transition_bytes=step_bytes, buffer_bytes=buffer,
        state_bytes=_nbytes(state), workspace_bytes=workspace, output_bytes=out_bytes,
        metrics_bytes=metrics,
        device_bytes=device, segments_bytes=segments,
    )


def free_bytes(devices: Sequence[jax.Device]) -> tuple[int | None, str]:
    """``(bytes, where)``: the memory the runs may use on each of ``devices`` and what it is.

    Accelerators report their allocator's limit and use (``device.memory_stats()``); the least
    free of ``devices`` counts. CPU devices share the host's available memory, split evenly.
    ``(None, reason)`` when neither is known. In a multi-process run only this process's devices
    can be asked; the others are assumed alike.
    """
    local = [d for d in devices if d.process_index == jax.process_index()] or list(devices)
    devices = local
    stats = [d.memory_stats() for d in devices]
    if all(s and "bytes_limit" in s for s in stats):
        free = min(s["bytes_limit"] - s.get("bytes_in_use", 0) for s in stats)
        return free, f"{devices[0].platform} device memory"
    if all(d.platform == "cpu" for d in devices):
        available = _host_available_bytes()
        if available is not None:
            return available // len(devices), "available host memory"
    return None, "unknown: the backend reports no memory limit"


def _host_available_bytes() -> int | None:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def max_seeds_at_once(estimate: MemoryEstimate, free: int) -> int:
    """The largest ``seeds_at_once`` that fits in ``free`` bytes: runs a device holds at once while
    the rest of its runs wait their turn (the results of all of them are held too; 0 if not even
    one run fits)."""
    results = estimate.runs_per_device * estimate.output_bytes * 2
    usable = int(free * USABLE_FRACTION) - FIXED_BYTES - results
    return max(usable // estimate.run_bytes, 0)


def max_resident_runs(estimate: MemoryEstimate, free: int, in_segments: bool = False) -> int:
    """How many runs a device can hold in ``free`` bytes when all of them are resident at once
    (no ``seeds_at_once``): each needs its state and workspace, and as one program its metric rows
    too (0 if not even one fits)."""
    per_run = estimate.run_bytes + (0 if in_segments else estimate.metrics_bytes)
    return max((int(free * USABLE_FRACTION) - FIXED_BYTES) // per_run, 0)


def check_fits(config: DQNConfig, num_seeds: int, devices: Sequence[jax.Device] | None = None,
               seeds_at_once: int | None = None, can_limit: bool = True,
               runs_per_seed: int = 1, in_segments: bool = False) -> MemoryEstimate:
    """The estimate of ``num_seeds`` runs over ``devices`` (default: all); raises ``ValueError``
    (one line, figures per device) with what fits instead when it exceeds ``USABLE_FRACTION`` of
    the free memory. ``in_segments``: the runs train in segments (``runs.Runs.run``, as ``jaxdqn
    train``/``sweep`` do; ``segments_bytes``), else as one program (``device_bytes``).
    ``can_limit=False`` leaves ``seeds_at_once`` out of the advice (callers without it, segments
    among them) and names the most seeds that fit, ``runs_per_seed`` runs each (a sweep's
    combinations). Pass the devices the runs are split across (``jaxdqn.runs.run_devices``):
    each holds ``ceil(num_seeds / len(devices))`` of them, as the padded split does."""
    devices = jax.devices() if devices is None else list(devices)
    est = estimate_memory(config, num_seeds, len(devices), seeds_at_once)
    need = est.segments_bytes if in_segments else est.device_bytes
    free, where = free_bytes(devices)
    if free is None or need <= free * USABLE_FRACTION:
        return est
    fit = (max_seeds_at_once(est, free) if can_limit and not in_segments
           else max_resident_runs(est, free, in_segments))
    if fit >= 1 and can_limit and not in_segments:
        advice = (f"run at most {fit} seeds at once per device (seeds_at_once={fit}), use "
                  f"fewer seeds, or a smaller buffer_size")
    elif fit >= 1:
        seeds = fit * len(devices) // runs_per_seed
        advice = (f"at most {fit * len(devices)} runs fit at once ({fit} per device): "
                  + (f"use at most {seeds} seeds" if seeds >= 1 else "use fewer combinations")
                  + (" per combination" if runs_per_seed > 1 and seeds >= 1 else "")
                  + " or a smaller buffer_size")
    else:
        advice = "not even one run fits: reduce buffer_size, batch_size or hidden_sizes"
    per_run = est.run_bytes
    at_once = est.runs_per_device if in_segments else est.concurrent_runs
    raise ValueError(
        f"{num_seeds} runs need about {_fmt(need)} per device ({at_once}"
        f" at once x {_fmt(per_run)}, replay buffer {_fmt(est.buffer_bytes)} each) on "
        f"{len(devices)} {devices[0].platform} device{'s' * (len(devices) != 1)}, but only "
        f"{_fmt(free)} of {where} is free per device ({USABLE_FRACTION:.0%} usable); {advice}")


def _fmt(n: int | float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")
