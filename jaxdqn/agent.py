"""A trained agent from a run folder: Q-values and actions for observations, numpy or JAX in,
numpy out.

    agent = jaxdqn.load("runs/cartpole", seed_index=0, which="best")
    action = agent.act(obs)              # one observation -> a numpy int
    actions = agent.act(obs_batch)       # [B, *obs_shape] -> i32[B]

Acting goes through ``policy.make_acting_q_fn``, the function training and evaluation act with.
"""

from __future__ import annotations

import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxdqn.checkpoint import load_checkpoint
from jaxdqn.config import DQNConfig
from jaxdqn.envs import env_spec
from jaxdqn.policy import epsilon_greedy, greedy_action, make_acting_q_fn
from jaxdqn.run_folder import run_checkpoint_path


class Agent:
    """One seed's Q-network params with the config that trained them.

    ``config``: the run's ``DQNConfig``; ``params``: the params (numpy leaves, no seed axis);
    ``which``: "final" or "best"; ``seed_index``; ``metadata``: the checkpoint's metadata, with
    this seed's ``best_eval_return``/``best_env_steps`` as plain numbers for "best".
    """

    def __init__(self, config: DQNConfig, params: Any, which: str = "final", seed_index: int = 0,
                 metadata: dict | None = None):
        self.config = config
        self.params = params
        self.which = which
        self.seed_index = seed_index
        self.metadata = dict(metadata or {})
        spec = env_spec(config)
        self.obs_shape: tuple[int, ...] = spec.obs_shape
        self.num_actions: int = spec.num_actions
        q = make_acting_q_fn(config)
        legal = (lambda obs: None) if spec.legal_fn is None else spec.legal_fn
        self._q_values = jax.jit(q)
        self._greedy = jax.jit(lambda p, obs: greedy_action(q(p, obs), legal(obs)))
        self._explore = jax.jit(lambda p, obs, key, eps: epsilon_greedy(
            key, q(p, obs), eps, legal(obs), config.random_tie_break))

    def _obs(self, obs) -> tuple[jax.Array, bool]:
        """``obs`` as a JAX array, and whether it is one observation (else a batch)."""
        obs = obs if isinstance(obs, jax.Array) else jnp.asarray(np.asarray(obs))
        shape = tuple(obs.shape)
        if shape == self.obs_shape:
            return obs, True
        if len(shape) == len(self.obs_shape) + 1 and shape[1:] == self.obs_shape:
            return obs, False
        batch = ", ".join(map(str, ("batch", *self.obs_shape)))
        raise ValueError(f"obs has shape {shape}; {self.config.env_id} observations have shape "
                         f"{self.obs_shape} (one) or ({batch})")

    def q_values(self, obs) -> np.ndarray:
        """``f32[num_actions]`` for one observation, ``f32[B, num_actions]`` for a batch."""
        obs, _ = self._obs(obs)
        return np.asarray(self._q_values(self.params, obs))

    def act(self, obs, epsilon: float = 0.0, key: jax.Array | None = None):
        """The greedy action (the legal action of largest Q, lowest index among ties), or
        epsilon-greedy as in training with ``epsilon > 0``, which needs a JAX ``key``. One
        observation gives a numpy int32 scalar; a batch ``i32[B]``."""
        obs, single = self._obs(obs)
        if not 0.0 <= float(epsilon) <= 1.0:
            raise ValueError(f"epsilon={epsilon!r} is invalid: must be in [0, 1]")
        if float(epsilon) > 0.0:
            if key is None:
                raise ValueError(f"epsilon={epsilon!r} > 0 needs a key: act(obs, epsilon, "
                                 "key=jax.random.key(...)) (split a fresh key for every call)")
            action = self._explore(self.params, obs, key, jnp.float32(epsilon))
        else:
            action = self._greedy(self.params, obs)
        action = np.asarray(action)
        return action[()] if single else action

    def __repr__(self) -> str:
        return (f"Agent({self.config.env_id}, which={self.which!r}, seed_index={self.seed_index}, "
                f"obs_shape={self.obs_shape}, num_actions={self.num_actions})")


def load(run_dir: str | os.PathLike, seed_index: int = 0, which: str = "final") -> Agent:
    """The agent of seed ``seed_index`` in run folder ``run_dir`` (or a checkpoint file).

    ``which="final"``: the params at the end of training; ``"best"``: the params of the seed's
    best evaluation during training (runs with ``eval_interval`` set). The best evaluation's score
    was chosen as a maximum, so it overstates them: score both on fresh keys
    (``jaxdqn evaluate RUN``) before preferring one. Raises ``CheckpointError`` (a
    ``ValueError``) for a missing or unreadable checkpoint and ``ValueError`` for a bad index.
    """
    path = run_checkpoint_path(run_dir, which)
    ckpt = load_checkpoint(path)
    if (isinstance(seed_index, bool) or not isinstance(seed_index, (int, np.integer))
            or not 0 <= seed_index < ckpt.num_seeds):
        raise ValueError(f"seed_index={seed_index!r} is invalid: {str(path)!r} holds "
                         f"{ckpt.num_seeds} seed(s), index 0..{ckpt.num_seeds - 1}")
    params = jax.tree.map(lambda x: np.asarray(x)[seed_index], ckpt.params)
    metadata = dict(ckpt.metadata)
    for name in ("best_eval_return", "best_env_steps"):
        if isinstance(metadata.get(name), (list, tuple, np.ndarray)):
            metadata[name] = np.asarray(metadata[name])[seed_index].item()
    return Agent(ckpt.config, params, which=metadata.get("which", which),
                 seed_index=int(seed_index), metadata=metadata)
