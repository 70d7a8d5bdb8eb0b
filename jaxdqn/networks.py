"""The Q-network: an MLP from an observation vector to one Q-value per action."""

from __future__ import annotations

import math
from typing import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxdqn.config import DQNConfig
from jaxdqn.envs import make_env

QFn = Callable[[dict, jax.Array], jax.Array]


class QNetwork(nn.Module):
    """Linear-ReLU for each hidden size, then a linear head (no ReLU): the seed's ``QNetwork``.

    For CartPole (4 -> 120 -> 84 -> 2) it has 10,934 parameters.
    """

    num_actions: int
    hidden_sizes: Sequence[int] = (120, 84)

    @nn.compact
    def __call__(self, obs: jax.Array) -> jax.Array:
        x = obs.astype(jnp.float32)
        for size in self.hidden_sizes:
            x = nn.relu(nn.Dense(size)(x))
        return nn.Dense(self.num_actions)(x)


def env_spec(config: DQNConfig) -> tuple[tuple[int, ...], int]:
    """``(obs_shape, num_actions)`` of the config's environment."""
    env, env_params = make_env(config.env_id, config.max_episode_steps)
    obs_shape = tuple(env.observation_space(env_params).shape)
    if len(obs_shape) != 1:
        raise ValueError(f"env_id={config.env_id!r} has observation shape {obs_shape}; "
                         "the MLP Q-network expects vector observations")
    return obs_shape, int(env.num_actions)


def make_q_network(config: DQNConfig) -> QNetwork:
    return QNetwork(num_actions=env_spec(config)[1], hidden_sizes=tuple(config.hidden_sizes))


def make_q_fn(config: DQNConfig) -> QFn:
    """A pure ``q_fn(params, obs: f32[..., obs_dim]) -> f32[..., num_actions]``."""
    return make_q_network(config).apply


def init_q_params(config: DQNConfig, key: jax.Array) -> dict:
    """Fresh Q-network parameters drawn from ``key``: ``flax.linen.Dense``'s default distribution.

    Kernels are LeCun-normal (a normal truncated at 2 standard deviations, rescaled to variance
    ``1 / fan_in``) and biases zero, as ``QNetwork.init`` would draw them, but from one draw for
    all layers: each random call is a separate threefry loop that XLA:CPU compiles and runs on its
    own, and ``QNetwork.init`` makes two per layer.
    """
    obs_shape, _ = env_spec(config)
    shapes = jax.eval_shape(make_q_network(config).init, key, jnp.zeros(obs_shape, jnp.float32))
    layers = shapes["params"]
    names = sorted(layers, key=lambda n: int(n.rsplit("_", 1)[1]))  # Dense_0, Dense_1, ...
    total = sum(layers[n]["kernel"].size for n in names)
    z = jax.random.truncated_normal(key, -2.0, 2.0, (total,), jnp.float32)
    params, offset = {}, 0
    for name in names:
        shape = layers[name]["kernel"].shape
        size = math.prod(shape)
        std = 1.0 / math.sqrt(shape[0]) / _TRUNCATED_NORMAL_STD
        params[name] = {"kernel": std * z[offset:offset + size].reshape(shape),
                        "bias": jnp.zeros(layers[name]["bias"].shape, jnp.float32)}
        offset += size
    return {"params": params}


# Standard deviation of a unit normal truncated to [-2, 2] (the constant in flax's variance_scaling).
_TRUNCATED_NORMAL_STD = 0.87962566103423978


def num_params(params) -> int:
    return sum(x.size for x in jax.tree.leaves(params))
