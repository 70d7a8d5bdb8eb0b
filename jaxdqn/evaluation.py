"""Greedy evaluation: full episodes of the argmax policy on vectorised env copies."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxdqn.config import DQNConfig
from jaxdqn.envs import make_env
from jaxdqn.networks import make_q_fn


def evaluate(config: DQNConfig, params, key: jax.Array, num_episodes: int = 100) -> jax.Array:
    """Returns ``f32[num_episodes]``: the undiscounted return of each greedy episode.

    Runs ``num_episodes`` env copies for the env's time limit, so every episode ends; steps after
    an episode's end (gymnax auto-resets) are masked out. Pure: jit or vmap over params and keys.
    """
    if num_episodes <= 0:
        raise ValueError(f"num_episodes={num_episodes!r} is invalid: must be > 0")
    env, env_params = make_env(config.env_id, config.max_episode_steps)
    q_fn = make_q_fn(config)
    reset_key, step_key = jax.random.split(key)
    obs, state = jax.vmap(env.reset, in_axes=(0, None))(
        jax.random.split(reset_key, num_episodes), env_params
    )

    def step(carry, key):
        obs, state, returns, alive = carry
        action = jnp.argmax(q_fn(params, obs), axis=-1)
        obs, state, reward, terminated, truncated, _ = jax.vmap(
            env.step, in_axes=(0, 0, 0, None)
        )(jax.random.split(key, num_episodes), state, action, env_params)
        returns = returns + jnp.where(alive, reward, 0.0)
        alive = jnp.logical_and(alive, jnp.logical_not(jnp.logical_or(terminated, truncated)))
        return (obs, state, returns, alive), None

    init = (obs, state, jnp.zeros((num_episodes,), jnp.float32), jnp.ones((num_episodes,), bool))
    keys = jax.random.split(step_key, int(env_params.max_steps_in_episode))
    (_, _, returns, _), _ = jax.lax.scan(step, init, keys)
    return returns
