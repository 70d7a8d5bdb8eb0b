"""Exploration: where epsilon decays (the seed's linear schedule) and epsilon-greedy actions."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def epsilon_at(step, start_epsilon, end_epsilon, exploration_fraction, total_timesteps):
    """The seed's ``linear_schedule``: ``start + (end - start) * min(step / (fraction * total), 1)``.

    Every argument may be a traced value, so one compiled program serves a grid of schedules.
    Where ``fraction * total`` is a whole number this equals ``optax.linear_schedule``.
    """
    duration = jnp.asarray(exploration_fraction, jnp.float32) * total_timesteps
    progress = jnp.minimum(jnp.asarray(step, jnp.float32) / duration, 1.0)
    return start_epsilon + (end_epsilon - start_epsilon) * progress


def epsilon_greedy(key: jax.Array, q_values: jax.Array, epsilon) -> jax.Array:
    """Actions ``i32[...]`` for ``q_values: f32[..., num_actions]``.

    Each row independently takes a uniformly random action with probability ``epsilon`` and the
    greedy one (lowest index among ties, as ``argmax``) otherwise.
    """
    batch_shape, num_actions = q_values.shape[:-1], q_values.shape[-1]
    greedy = jnp.argmax(q_values, axis=-1).astype(jnp.int32)
    # One draw for both coins (each random call is its own threefry loop on XLA:CPU). u has 2^23
    # equally likely values, so floor(u * n) is exactly uniform when n is a power of two.
    u = jax.random.uniform(key, (2, *batch_shape))
    random = jnp.minimum((u[1] * num_actions).astype(jnp.int32), num_actions - 1)
    return jnp.where(u[0] < epsilon, random, greedy)


def greedy_action(q_values: jax.Array) -> jax.Array:
    """``i32[...]``: the action of highest Q-value in each row of ``q_values: f32[..., A]``
    (lowest index among ties, as ``argmax``)."""
    return jnp.argmax(q_values, axis=-1).astype(jnp.int32)


def make_acting_q_fn(config):
    """The Q-values the agent acts on: ``q(params, obs[..., *obs_shape]) -> f32[..., A]``.

    The one place that turns a run's params into acting Q-values, used by training's
    epsilon-greedy, greedy evaluation (during and after training) and ``jaxdqn.load``. One network
    acts on its own Q-values; params with a member axis (``config.num_members > 1``) act on the
    members combined: the minimum for maxmin, else the mean (the sum's argmax, as Double
    Q-learning acts on Q_A + Q_B).
    """
    from jaxdqn.networks import make_q_fn  # networks imports config and envs; keep this light

    q_fn = make_q_fn(config)
    if config.num_members == 1:
        return q_fn
    combine = jnp.min if config.estimator == "maxmin" else jnp.mean

    def acting_q(params, obs):
        return combine(jax.vmap(q_fn, in_axes=(0, None))(params, obs), axis=0)

    return acting_q
