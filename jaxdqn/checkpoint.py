"""Checkpoints: Q-network params of a batch of runs, with the config that made them.

A checkpoint is one msgpack file (``flax.serialization``) holding::

    format, format_version      what the file is, so a stray file is refused clearly
    jaxdqn_version              the library that wrote it
    config                      the run's full ``DQNConfig`` (a dict)
    network                     obs_shape, num_actions, hidden_sizes (and a CNN's kind,
                                conv_channels, conv_kernel_size; dueling and noisy when on; a
                                distributional head's kind and values per action): the params'
                                shapes in words
    num_seeds                   params carry a leading axis of this size, one entry per run
    params                      the online Q-network params
    metadata                    free-form: base seed, env steps done, ...

Loading checks the params against the network the config builds, and against the caller's config
when one is given, so a shape mismatch is reported by layer instead of failing inside ``apply``.
A run folder keeps its final and best params in the files ``jaxdqn.run_folder`` names.

A resume state (``save_resume_state``) is the same envelope around a whole batched
``RunnerState``: replay buffer, optimizer, env states and keys, so an interrupted run continues
exactly where it stopped. Its leading axis counts runs (``num_runs``): a train's seeds, or a sweep
group's grid points times seeds.
"""

from __future__ import annotations

import os
from typing import Any, NamedTuple

import jax
import numpy as np
from flax import serialization

from jaxdqn.config import DQNConfig
from jaxdqn.distributional import HEADS
from jaxdqn.envs import env_spec
from jaxdqn.io import atomic_write
from jaxdqn.networks import init_q_params, network_kind
from jaxdqn.run_folder import CheckpointError

FORMAT = "jaxdqn-checkpoint"
RESUME_FORMAT = "jaxdqn-resume-state"
FORMAT_VERSION = 1

class Checkpoint(NamedTuple):
    params: dict  # Q-network params, every leaf with a leading axis of num_seeds
    config: DQNConfig
    num_seeds: int
    jaxdqn_version: str
    metadata: dict


def network_shape(config: DQNConfig) -> dict[str, Any]:
    """What fixes the params' shapes: observation shape, action count, hidden sizes and, for a
    CNN, ``kind="cnn"`` with its ``conv_channels`` and ``conv_kernel_size``; ``dueling=True`` for
    a dueling head, ``noisy=True`` for noisy dense layers; ``distributional`` and ``num_atoms``
    (its values per action) for a distributional head. An MLP's record has just the first three,
    as every record had before the convolutions were recorded."""
    spec = env_spec(config)
    shape = {"obs_shape": list(spec.obs_shape), "num_actions": spec.num_actions,
             "hidden_sizes": list(config.hidden_sizes)}
    if network_kind(config) == "cnn":
        shape.update(kind="cnn", conv_channels=list(config.conv_channels),
                     conv_kernel_size=config.conv_kernel_size)
    if config.dueling:
        shape["dueling"] = True
    if config.noisy:
        shape["noisy"] = True
    if config.distributional != "none":
        shape.update(distributional=config.distributional,
                     num_atoms=HEADS[config.distributional].size(config))
    return shape


def describe_network(shape: dict[str, Any]) -> str:
    """``"4 -> 120 -> 84 -> 2"`` (input size, hidden sizes, number of actions); a CNN reads
    ``"10x10x4 -> conv16k3 -> 128 -> 3"`` (16 channels of 3x3 kernels), a dueling head
    ``"... -> 128 -> V+A3"``, noisy dense layers ``"... -> 3 (noisy)"``, a distributional one
    ``"... -> 128 -> 3x51 c51"``."""
    convs = [f"conv{c}k{shape['conv_kernel_size']}" for c in shape.get("conv_channels", ())]
    head = f"V+A{shape['num_actions']}" if shape.get("dueling") else shape["num_actions"]
    if shape.get("distributional"):
        head = f"{head}x{shape['num_atoms']} {shape['distributional']}"
    sizes = ["x".join(str(n) for n in shape["obs_shape"]), *convs, *shape["hidden_sizes"], head]
    return " -> ".join(str(s) for s in sizes) + (" (noisy)" if shape.get("noisy") else "")


def _records_network(stored, built: dict[str, Any]) -> bool:
    """Whether a checkpoint's ``network`` record agrees with ``built`` on every key it has: a
    record written before the convolutions were recorded lacks a CNN's conv keys."""
    return (isinstance(stored, dict) and {"obs_shape", "num_actions", "hidden_sizes"} <= set(stored)
            and all(key in built and built[key] == value for key, value in stored.items()))


def save_checkpoint(path: str | os.PathLike, params, config: DQNConfig,
                    metadata: dict | None = None) -> None:
    """Writes ``params`` (leading axis: seeds) and ``config`` to ``path`` atomically."""
    params = jax.device_get(params)
    num_seeds = _check_params(params, config, batch_shape=None, what="params to save")
    _write(path, FORMAT, config, {"num_seeds": num_seeds}, {"params": params}, metadata)


def load_checkpoint(path: str | os.PathLike, config: DQNConfig | None = None) -> Checkpoint:
    """Reads a checkpoint; with ``config``, also checks that its network has that config's shape."""
    payload = _read(path, FORMAT)
    ckpt_config = _config_from(payload, path)
    stored = payload.get("network")
    built = network_shape(ckpt_config)
    if not _records_network(stored, built):
        raise CheckpointError(
            f"checkpoint {str(path)!r} records network {_describe_any(stored)} but its config "
            f"builds {describe_network(built)}"
        )
    if config is not None:
        wanted = network_shape(config)
        if wanted != built:
            raise CheckpointError(
                f"checkpoint {str(path)!r} holds a {describe_network(built)} network "
                f"({ckpt_config.env_id}, hidden_sizes={list(ckpt_config.hidden_sizes)}) but the "
                f"config asks for {describe_network(wanted)} "
                f"({config.env_id}, hidden_sizes={list(config.hidden_sizes)})"
            )
    num_seeds = payload.get("num_seeds")
    params = payload.get("params")
    try:
        found = _check_params(params, ckpt_config, batch_shape=(num_seeds,), what="params")
    except CheckpointError as e:
        raise CheckpointError(f"checkpoint {str(path)!r}: {e}") from None
    return Checkpoint(params=params, config=ckpt_config, num_seeds=found,
                      jaxdqn_version=str(payload.get("jaxdqn_version")),
                      metadata=dict(payload.get("metadata") or {}))


def save_resume_state(path: str | os.PathLike, state, config: DQNConfig,
                      metadata: dict | None = None) -> None:
    """Writes a batched ``RunnerState`` (leading axis: runs) so the run can continue later."""
    state = jax.device_get(state)
    num_runs = int(jax.tree.leaves(state)[0].shape[0])
    _write(path, RESUME_FORMAT, config, {"num_runs": num_runs},
           {"state": serialization.to_state_dict(state)}, metadata)


def load_resume_state(path: str | os.PathLike, template, config: DQNConfig):
    """Reads a resume state into the structure of ``template`` (e.g. ``jax.eval_shape`` of init).

    Returns ``(state, metadata)``. The stored config must equal ``config``: continuing a run under
    other settings would not be the same run.
    """
    payload = _read(path, RESUME_FORMAT)
    stored = _config_from(payload, path)
    if stored != config:
        diff = [f"{k}: {v!r} (stored) vs {config.to_dict()[k]!r}"
                for k, v in stored.to_dict().items() if config.to_dict()[k] != v]
        raise CheckpointError(f"resume state {str(path)!r} was written for another config: "
                              + "; ".join(diff))
    state_dict = payload.get("state")
    if (isinstance(state_dict, dict) and "eval" not in state_dict
            and getattr(template, "eval", 0) is None):
        state_dict = {**state_dict, "eval": None}  # written before evaluation during training
    try:
        state = serialization.from_state_dict(template, state_dict)
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise CheckpointError(f"resume state {str(path)!r} does not fit this run: {e}") from None
    for (where, got), want in zip(jax.tree_util.tree_leaves_with_path(state),
                                  jax.tree.leaves(template)):
        if np.shape(got) != tuple(want.shape) or np.asarray(got).dtype != want.dtype:
            raise CheckpointError(
                f"resume state {str(path)!r}: {jax.tree_util.keystr(where)} has shape "
                f"{np.shape(got)} {np.asarray(got).dtype}, expected {tuple(want.shape)} "
                f"{want.dtype}"
            )
    return state, dict(payload.get("metadata") or {})


def _write(path, fmt: str, config: DQNConfig, counts: dict, body: dict, metadata) -> None:
    from jaxdqn import __version__

    payload = {
        "format": fmt,
        "format_version": FORMAT_VERSION,
        "jaxdqn_version": __version__,
        "config": config.to_dict(),
        "network": network_shape(config),
        **counts,
        "metadata": dict(metadata or {}),
        **body,
    }
    atomic_write(path, serialization.msgpack_serialize(payload))


def _read(path, fmt: str) -> dict:
    what = "checkpoint" if fmt == FORMAT else "resume state"
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise CheckpointError(f"cannot read {what} {str(path)!r}: {e.strerror or e}") from None
    try:
        payload = serialization.msgpack_restore(raw)
    except Exception:  # noqa: BLE001 - msgpack raises several unrelated types for bad bytes
        payload = None
    if not isinstance(payload, dict) or payload.get("format") != fmt:
        raise CheckpointError(f"{str(path)!r} is not a jaxdqn {what} (unreadable or truncated)")
    version = payload.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise CheckpointError(
            f"{what} {str(path)!r} has format version {version!r}, written by jaxdqn "
            f"{payload.get('jaxdqn_version')}; this jaxdqn reads versions <= {FORMAT_VERSION}"
        )
    return payload


def _config_from(payload: dict, path) -> DQNConfig:
    fields = payload.get("config")
    if not isinstance(fields, dict):
        raise CheckpointError(f"checkpoint {str(path)!r} holds no config")
    try:
        return DQNConfig.from_dict(fields)
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"checkpoint {str(path)!r} holds an invalid config: {e}") from None


def _check_params(params, config: DQNConfig, batch_shape, what: str) -> int:
    """Checks ``params`` against the config's network, with one leading batch axis; returns the
    batch size."""
    expected = jax.eval_shape(lambda: init_q_params(config, jax.random.PRNGKey(0)))
    exp_paths = {jax.tree_util.keystr(p): tuple(x.shape)
                 for p, x in jax.tree_util.tree_leaves_with_path(expected)}
    try:
        got_paths = {jax.tree_util.keystr(p): tuple(np.shape(x))
                     for p, x in jax.tree_util.tree_leaves_with_path(params)}
    except Exception:  # noqa: BLE001 - anything that is not a pytree of arrays
        got_paths = {}
    if set(got_paths) != set(exp_paths):
        missing = sorted(set(exp_paths) - set(got_paths))
        extra = sorted(set(got_paths) - set(exp_paths))
        raise CheckpointError(
            f"{what} do not have the layers of a {describe_network(network_shape(config))} "
            f"network (missing {missing or 'none'}, unexpected {extra or 'none'})"
        )
    batch = {shape[:1] for shape in got_paths.values()}
    if batch_shape is not None and batch != {tuple(batch_shape)}:
        raise CheckpointError(f"{what} have leading axes {sorted(batch)}, expected {batch_shape}")
    if len(batch) != 1 or not next(iter(batch)):
        raise CheckpointError(f"{what} need one leading seed axis of the same size on every leaf")
    for name, want in exp_paths.items():
        if got_paths[name][1:] != want:
            raise CheckpointError(
                f"{what}: layer {name} has shape {got_paths[name][1:]}, but a "
                f"{describe_network(network_shape(config))} network needs {want}"
            )
    return int(next(iter(batch))[0])


def _describe_any(shape) -> str:
    try:
        return describe_network(shape)
    except (KeyError, TypeError):
        return repr(shape)
