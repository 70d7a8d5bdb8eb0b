"""Sticky actions (Machado et al. 2018): with probability ``p`` the env executes the action it
executed last instead of the agent's.

This is the original MinAtar's ``Environment.act`` (the MinAtar paper trains and evaluates with
``p = 0.1``): the last executed action starts at 0 (no-op, index 0 of every MinAtar game's minimal
action set) when the env is built and is never reset, so it carries over an episode's end;
``reset`` here is a fresh env, and starts it at 0 again. Stickiness is the env's: the agent's
chosen action is what the replay buffer stores.

The coin of a step is drawn from ``fold_in(key, STICKY_STREAM)`` of the key the step is given,
and the wrapped env gets that key unchanged: its own draws are the unwrapped env's, so with a
coin that never sticks the trajectory is the unwrapped one exactly. (``fold_in(key, i)`` equals
``split(key, n)[i]`` under JAX's partitionable threefry, so the stream number is far above any
count an env splits its key into.)
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

STICKY_STREAM = 0x5717C4
"""``fold_in`` data of the sticky coin's key (see the module docstring)."""


class StickyState(NamedTuple):
    """The wrapped env's state and the action it executed last (``i32[]``)."""

    env_state: Any
    last_action: jax.Array


class StickyActions:
    """A gymnax env whose ``step``/``step_env`` execute the last executed action with probability
    ``sticky_action_prob`` (a Python float in [0, 1), closed over: static); ``reset``/
    ``reset_env`` start the last action at 0. Everything else is the wrapped env's, with
    ``is_truncated`` reading the wrapped state."""

    def __init__(self, env, sticky_action_prob: float):
        if not 0.0 <= sticky_action_prob < 1.0:
            raise ValueError(f"sticky_action_prob={sticky_action_prob!r} is invalid: must be in "
                             "[0, 1)")
        if getattr(env, "legal_actions", None) is not None:
            raise ValueError(f"sticky_action_prob={sticky_action_prob!r} is invalid for "
                             f"{getattr(env, 'name', env)!r}: its legal actions depend on the "
                             "state, and a repeated action may be illegal where it repeats")
        self._env = env
        self.sticky_action_prob = sticky_action_prob

    def __getattr__(self, name):
        return getattr(self._env, name)

    def executed_action(self, key: jax.Array, state: StickyState, action) -> jax.Array:
        """``i32[]``: the last executed action with probability ``sticky_action_prob``, else
        ``action``; the coin is drawn from ``fold_in(key, STICKY_STREAM)``."""
        stick = jax.random.uniform(jax.random.fold_in(key, STICKY_STREAM)) < \
            self.sticky_action_prob
        return jnp.where(stick, state.last_action, jnp.asarray(action, jnp.int32))

    def reset(self, key, params=None):
        obs, state = self._env.reset(key, params)
        return obs, StickyState(state, jnp.int32(0))

    def reset_env(self, key, params):
        obs, state = self._env.reset_env(key, params)
        return obs, StickyState(state, jnp.int32(0))

    def step(self, key, state: StickyState, action, params=None):
        """gymnax's auto-resetting ``step``; the last action carries over a reset, as in the
        original MinAtar."""
        action = self.executed_action(key, state, action)
        obs, env_state, reward, terminated, truncated, info = self._env.step(
            key, state.env_state, action, params)
        return obs, StickyState(env_state, action), reward, terminated, truncated, info

    def step_env(self, key, state: StickyState, action, params):
        action = self.executed_action(key, state, action)
        obs, env_state, reward, done, info = self._env.step_env(key, state.env_state, action,
                                                                params)
        return obs, StickyState(env_state, action), reward, done, info

    def is_truncated(self, state: StickyState, params):
        return self._env.is_truncated(state.env_state, params)
