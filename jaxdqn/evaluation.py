"""Greedy evaluation: full episodes of the greedy policy on vectorised env copies.

One function serves both the evaluation after training (``evaluate``) and the one inside the
training scan (``make_greedy_episodes``, used by ``jaxdqn.train``): ``num_episodes`` env copies
step together in a ``lax.while_loop`` that stops when every episode has ended, or at the env's time
limit, whichever comes first. Episodes are not reset when they end (``env.step_env``, not gymnax's
auto-resetting ``step``), so a finished copy costs no reset draw and its later steps are masked.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

from jaxdqn.config import DQNConfig
from jaxdqn.envs import env_spec
from jaxdqn.policy import epsilon_greedy, greedy_action, make_acting_q_fn


class EpisodeStats(NamedTuple):
    """What greedy episodes did, one entry per episode."""

    returns: jax.Array  # f32[num_episodes]: undiscounted return
    lengths: jax.Array  # i32[num_episodes]: steps until the episode ended
    truncated: jax.Array  # bool[num_episodes]: cut by the time limit (not terminated)


def make_greedy_episodes(config: DQNConfig, num_episodes: int,
                         epsilon: float = 0.0) -> Callable[..., EpisodeStats]:
    """A pure ``episodes(params, key, active=True) -> EpisodeStats`` of ``num_episodes`` greedy
    episodes; with ``active`` false (a traced bool) the episodes take no step (all zeros).

    With ``epsilon > 0`` (0.05 is the usual Atari/MinAtar test protocol) each action is instead
    uniform over the legal actions with probability ``epsilon``, drawn at step ``t`` from
    ``fold_in(split(step_key, max_steps)[t], 1)``; ``epsilon=0`` is the greedy program, unchanged.

    The policy is ``policy.greedy_action`` on ``policy.make_acting_q_fn(config)``: the same
    Q-values the agent acts on in training and in ``jaxdqn.load(...)``, over legal actions only.
    Keys: ``key`` splits into a
    reset key and a step key; step ``t`` of episode ``e`` uses
    ``split(split(split(step_key, max_steps)[t], num_episodes)[e])[0]``, the key gymnax's
    ``step`` hands ``step_env`` (envs that draw nothing never compute it). The env is the
    config's (``envs.env_spec``): with ``sticky_action_prob > 0`` it repeats its previous action
    as in training, each episode's starting at action 0 (``envs.sticky``).
    """
    if not isinstance(num_episodes, int) or num_episodes <= 0:
        raise ValueError(f"num_episodes={num_episodes!r} is invalid: must be an int > 0")
    if not 0.0 <= epsilon <= 1.0:
        raise ValueError(f"epsilon={epsilon!r} is invalid: must be in [0, 1]")
    spec = env_spec(config)
    env, env_params, max_steps = spec.env, spec.params, spec.max_steps
    legal_fn = spec.legal_fn  # None: every action legal
    q_fn = make_acting_q_fn(config)
    step_env = jax.vmap(env.step_env, in_axes=(0, 0, 0, None))
    is_truncated = jax.vmap(env.is_truncated, in_axes=(0, None))

    def episodes(params, key: jax.Array, active=True) -> EpisodeStats:
        reset_key, step_key = jax.random.split(key)
        obs, state = jax.vmap(env.reset, in_axes=(0, None))(
            jax.random.split(reset_key, num_episodes), env_params)
        step_keys = jax.random.split(step_key, max_steps)

        def running(carry):
            t, *_, alive, _ = carry
            return jnp.logical_and(jnp.logical_and(t < max_steps, alive.any()), active)

        def step(carry):
            t, obs, state, stats, alive, _ = carry
            legal = None if legal_fn is None else legal_fn(obs)
            if epsilon > 0:
                action = epsilon_greedy(jax.random.fold_in(step_keys[t], 1), q_fn(params, obs),
                                        epsilon, legal)
            else:
                action = greedy_action(q_fn(params, obs), legal)
            keys = jax.vmap(lambda k: jax.random.split(k)[0])(
                jax.random.split(step_keys[t], num_episodes))
            obs, state, reward, terminated, _ = step_env(keys, state, action, env_params)
            truncated = jnp.logical_and(is_truncated(state, env_params),
                                        jnp.logical_not(terminated))
            stats = EpisodeStats(
                returns=stats.returns + jnp.where(alive, reward.astype(jnp.float32), 0.0),
                lengths=stats.lengths + alive.astype(jnp.int32),
                truncated=jnp.logical_or(stats.truncated, jnp.logical_and(alive, truncated)),
            )
            alive = jnp.logical_and(alive, jnp.logical_not(jnp.logical_or(terminated, truncated)))
            return t + 1, obs, state, stats, alive, None

        stats = EpisodeStats(jnp.zeros((num_episodes,), jnp.float32),
                             jnp.zeros((num_episodes,), jnp.int32),
                             jnp.zeros((num_episodes,), bool))
        alive = jnp.ones((num_episodes,), bool)
        carry = jax.lax.while_loop(running, step, (0, obs, state, stats, alive, None))
        return carry[3]

    return episodes


def evaluate(config: DQNConfig, params, key: jax.Array, num_episodes: int = 100) -> jax.Array:
    """Returns ``f32[num_episodes]``: the undiscounted return of each greedy episode.

    Every episode runs to its end (termination or the env's time limit). Pure: jit or vmap over
    params and keys. ``evaluate_episodes`` also gives lengths and time-limit cuts.
    """
    return evaluate_episodes(config, params, key, num_episodes).returns


def evaluate_episodes(config: DQNConfig, params, key: jax.Array,
                      num_episodes: int = 100) -> EpisodeStats:
    """``EpisodeStats`` of ``num_episodes`` greedy episodes (see ``make_greedy_episodes``)."""
    if not isinstance(num_episodes, int) or num_episodes <= 0:
        raise ValueError(f"num_episodes={num_episodes!r} is invalid: must be an int > 0")
    return make_greedy_episodes(config, num_episodes)(params, key)


def start_state_value(config: DQNConfig, params, key: jax.Array,
                      num_states: int = 1000) -> jax.Array:
    """``f32[]``: the mean over ``num_states`` reset states of ``max_a Q(s, a)`` (over legal
    actions).

    What the network claims a fresh episode is worth, from the Q-values the agent acts on. On an
    env that pays 1 per step and is bootstrapped through its time limit (CartPole-v1), no policy
    is worth more than ``1 / (1 - gamma)``, and a policy that never fails is worth exactly that,
    so the ratio to it shows over- or under-estimation at a glance. Pure: jit or vmap over params
    and keys; reset state ``i`` comes from ``split(key, num_states)[i]``.
    """
    if num_states <= 0:
        raise ValueError(f"num_states={num_states!r} is invalid: must be > 0")
    spec = env_spec(config)
    obs, _ = jax.vmap(spec.env.reset, in_axes=(0, None))(jax.random.split(key, num_states),
                                                         spec.params)
    q = make_acting_q_fn(config)(params, obs)
    if spec.legal_fn is not None:
        q = jnp.where(spec.legal_fn(obs), q, -jnp.inf)
    return jnp.max(q, axis=-1).mean()
