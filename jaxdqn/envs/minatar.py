"""gymnax's MinAtar games with boolean observations, their natural dtype.

gymnax builds each MinAtar frame as booleans and returns it as ``f32[10, 10, C]``; here the frame
stays ``bool[10, 10, C]`` (the cast back is exact: every entry is 0 or 1). The running observation
and the replay buffer then hold a byte per cell instead of four, and the Q-network converts only
what it reads (``QNetwork`` casts its input to f32). See docs/minatar.md for how these games differ
from the original MinAtar.
"""

from __future__ import annotations

import gymnax
import jax.numpy as jnp
from gymnax.environments import spaces


class BoolObservations:
    """A gymnax env whose observations (from ``reset``, ``step``, ``info["final_observation"]``,
    ``reset_env`` and ``step_env``) are ``bool``; everything else is the wrapped env's."""

    def __init__(self, env):
        self._env = env

    def __getattr__(self, name):
        return getattr(self._env, name)

    def reset(self, key, params=None):
        obs, state = self._env.reset(key, params)
        return obs.astype(jnp.bool_), state

    def step(self, key, state, action, params=None):
        obs, state, reward, terminated, truncated, info = self._env.step(key, state, action, params)
        info = dict(info, final_observation=info["final_observation"].astype(jnp.bool_))
        return obs.astype(jnp.bool_), state, reward, terminated, truncated, info

    def reset_env(self, key, params):
        obs, state = self._env.reset_env(key, params)
        return obs.astype(jnp.bool_), state

    def step_env(self, key, state, action, params):
        obs, state, reward, done, info = self._env.step_env(key, state, action, params)
        return obs.astype(jnp.bool_), state, reward, done, info

    def observation_space(self, params):
        space = self._env.observation_space(params)
        return spaces.Box(0, 1, space.shape, jnp.bool_)


def make_minatar(env_id: str):
    """``(env, env_params)`` of a gymnax MinAtar id with boolean observations."""
    env, params = gymnax.make(env_id)
    return BoolObservations(env), params
